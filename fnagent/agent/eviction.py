"""Eviction: which idle container makes room when a launch does not fit the budget.

Beside ``admission`` as Fn keeps ``evictor.go`` beside ``resource.go``. A policy is a pure
choice over the queues: it names a victim and changes nothing; the agent takes the victim off
its queue's idle stack and removes it. The agent's policy is ``greedy_dual`` over the
priorities it keeps (FaasCache's Greedy-Dual, fnagent.keepalive: the agent counts each call's
container there, and each container evicted or gone); ``least_recently_used`` is the simpler
choice of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Protocol, TypeVar

from fnagent.keepalive import GreedyDual

MIN_COLD_START_S = 0.001
"""The cold-start cost of a version whose launches were not timed yet (or took no time on a
test's clock): never 0, so that how often a fn is called still orders its containers."""


class IdleContainer(Hashable, Protocol):
    @property
    def idle_since(self) -> float: ...

    @property
    def doomed(self) -> bool: ...


C = TypeVar("C", bound=IdleContainer)
C_co = TypeVar("C_co", bound=IdleContainer, covariant=True)


class IdleQueue(Protocol[C_co]):
    @property
    def idle(self) -> Sequence[C_co]: ...


EvictionPolicy = Callable[[Iterable[IdleQueue[C]], object], C | None]
"""(the queues, the queue that needs room) -> the idle container to evict, or None."""


def least_recently_used(queues: Iterable[IdleQueue[C]], keep: object) -> C | None:
    """The idle container, not already doomed, of a queue other than ``keep`` that has been
    idle the longest; None when there is none. Ties go to the earliest found."""
    victim: C | None = None
    for queue in queues:
        if queue is keep:
            continue
        for container in queue.idle:
            if container.doomed:
                continue
            if victim is None or container.idle_since < victim.idle_since:
                victim = container
    return victim


def _candidates(queues: Iterable[IdleQueue[C]], keep: object) -> list[C]:
    return [c for q in queues if q is not keep for c in q.idle if not c.doomed]


def greedy_dual(priorities: GreedyDual[C]) -> EvictionPolicy[C]:
    """The policy that evicts, of the idle containers not doomed of queues other than
    ``keep``, the one of lowest Greedy-Dual priority in ``priorities`` (never-used ones
    first); None when there is none. The caller keeps ``priorities`` up to date."""

    def choose(queues: Iterable[IdleQueue[C]], keep: object) -> C | None:
        order = priorities.order(_candidates(queues, keep))
        return order[0] if order else None

    return choose
