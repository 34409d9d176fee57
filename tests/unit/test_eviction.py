"""The eviction choice (fnagent/agent/eviction.py) over plain queues: no agent, no driver."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from fnagent.agent.eviction import greedy_dual, least_recently_used
from fnagent.keepalive import GreedyDual


@dataclass(eq=False)
class Idle:
    idle_since: float
    doomed: bool = False


@dataclass(eq=False)
class Queue:
    idle: list[Idle] = field(default_factory=list)


def test_the_least_recently_used_idle_container_of_another_queue() -> None:
    old, newer, oldest_kept = Idle(1.0), Idle(2.0), Idle(0.5)
    keep = Queue([oldest_kept])
    assert least_recently_used([keep, Queue([newer, old])], keep) is old


def test_doomed_containers_and_the_queue_that_needs_room_are_skipped() -> None:
    keep = Queue([Idle(0.0)])
    assert least_recently_used([keep, Queue([Idle(1.0, doomed=True)])], keep) is None
    assert least_recently_used([], keep) is None


def test_ties_go_to_the_first_found() -> None:
    first, second = Idle(1.0), Idle(1.0)
    assert least_recently_used([Queue([first]), Queue([second])], None) is first


@given(st.lists(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=5), max_size=5))
def test_the_choice_is_the_minimum_over_the_candidates(
    shape: list[list[tuple[float, bool]]],
) -> None:
    queues = [Queue([Idle(t, d) for t, d in idle]) for idle in shape]
    keep = queues[0] if queues else None
    candidates = [c for q in queues if q is not keep for c in q.idle if not c.doomed]
    victim = least_recently_used(queues, keep)
    if not candidates:
        assert victim is None
    else:
        assert victim is min(candidates, key=lambda c: c.idle_since)


def test_greedy_dual_evicts_the_lowest_priority_not_the_least_recently_used() -> None:
    """FaasCache's order: a fn called often keeps its container over one called once, even when
    its container has been idle longer; never-used containers (pre-warms) go first."""
    priorities: GreedyDual[Idle] = GreedyDual()
    often, once, keep_me = Idle(1.0), Idle(5.0), Idle(0.0)
    for _ in range(5):
        priorities.used(often, fn="often", cost_s=0.2, memory_mb=128)
    priorities.used(once, fn="once", cost_s=0.2, memory_mb=128)
    keep = Queue([keep_me])
    choose = greedy_dual(priorities)
    queues = [keep, Queue([often]), Queue([once])]
    assert least_recently_used(queues, keep) is often
    assert choose(queues, keep) is once
    fresh = Idle(9.0)
    assert choose([*queues, Queue([fresh])], keep) is fresh
    assert choose([keep, Queue([Idle(1.0, doomed=True)])], keep) is None
