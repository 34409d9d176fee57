"""Eviction: which idle container makes room when a launch does not fit the budget.

Beside ``admission`` as Fn keeps ``evictor.go`` beside ``resource.go``. A policy is a pure
choice over the queues: it names a victim and changes nothing; the agent takes the victim off
its queue's idle stack and removes it. ``least_recently_used`` is the policy today; another
(e.g. Greedy-Dual) is a function of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar


class IdleContainer(Protocol):
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
