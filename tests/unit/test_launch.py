"""The launch policy (fnagent/agent/launch.py) on plain numbers: no agent, no driver."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fnagent.agent.admission import Budget
from fnagent.agent.launch import (
    DEFAULT_LAUNCH_ESTIMATE_S,
    LAUNCH_MIN_IDLE_CPU,
    MIN_HOT_LAUNCHES_AT_ONCE,
    cpus_have_room,
    launch_patience,
    launches_for_waiters,
    launches_towards_minimum,
    min_hot_bound,
)

MIB = 1024 * 1024
counts = st.integers(min_value=0, max_value=200)
times = st.none() | st.floats(min_value=0.0001, max_value=100)


def test_patience_is_zero_when_nothing_is_known_or_nothing_serves() -> None:
    known: dict[str, Any] = dict(patience_s=0.02, waiters=1, launch_time_s=0.5)
    assert launch_patience(serving=0, call_time_s=0.001, **known) == 0
    assert launch_patience(serving=2, call_time_s=None, **known) == 0
    assert launch_patience(serving=2, call_time_s=0.001, **known) == 0.02
    assert launch_patience(serving=2, call_time_s=0.001, **{**known, "patience_s": 0}) == 0


def test_slow_calls_launch_at_once_short_ones_wait() -> None:
    # 4 waiters on 2 containers, 0.3 s each: 0.6 s expected, longer than a 0.5 s launch.
    slow: dict[str, Any] = dict(patience_s=0.02, waiters=4, serving=2, launch_time_s=0.5)
    assert launch_patience(call_time_s=0.3, **slow) == 0
    assert launch_patience(call_time_s=0.2, **slow) == 0.02
    # With no launch seen yet, one is assumed to take DEFAULT_LAUNCH_ESTIMATE_S.
    unknown: dict[str, Any] = dict(patience_s=0.02, waiters=1, serving=1, launch_time_s=None)
    assert launch_patience(call_time_s=DEFAULT_LAUNCH_ESTIMATE_S, **unknown) == 0
    assert launch_patience(call_time_s=DEFAULT_LAUNCH_ESTIMATE_S / 2, **unknown) == 0.02


def test_cpus_have_room_unless_the_host_is_nearly_full() -> None:
    assert cpus_have_room(None)
    assert cpus_have_room(LAUNCH_MIN_IDLE_CPU)
    assert not cpus_have_room(LAUNCH_MIN_IDLE_CPU / 2)


def test_a_launch_per_waiter_without_history() -> None:
    numbers: dict[str, Any] = dict(serving=0, draining=False, call_time_s=None, launch_time_s=None)
    assert launches_for_waiters(waiters=5, starting=0, **numbers) == 5
    assert launches_for_waiters(waiters=5, starting=2, **numbers) == 3
    assert launches_for_waiters(waiters=5, starting=0, **{**numbers, "draining": True}) == 0


def test_scaling_from_zero_with_short_calls_starts_what_serves_the_waiters_in_one_launch() -> None:
    numbers: dict[str, Any] = dict(serving=0, draining=False, launch_time_s=0.5, starting=0)
    assert launches_for_waiters(waiters=5, call_time_s=0.001, **numbers) == 1
    assert launches_for_waiters(waiters=5, call_time_s=0.2, **numbers) == 2  # ceil(5*0.2/0.5)
    assert launches_for_waiters(waiters=5, call_time_s=0.2, use_history=False, **numbers) == 5
    # Containers serving: the waiters' patience decides, not this.
    serving: dict[str, Any] = {**numbers, "serving": 1}
    assert launches_for_waiters(waiters=5, call_time_s=0.001, **serving) == 5


def test_with_containers_serving_and_the_cpus_full_one_launch_at_a_time() -> None:
    numbers: dict[str, Any] = dict(draining=False, call_time_s=1.0, launch_time_s=0.5)
    assert launches_for_waiters(waiters=5, starting=0, serving=1, cpus_full=True, **numbers) == 1
    assert launches_for_waiters(waiters=5, starting=1, serving=1, cpus_full=True, **numbers) == 0
    assert launches_for_waiters(waiters=5, starting=0, serving=1, **numbers) == 5
    # Scaling from zero is not held: no container would serve the waiters.
    assert launches_for_waiters(waiters=5, starting=0, serving=0, cpus_full=True, **numbers) == 5


def test_background_waiters_count_as_one_launch_at_a_time() -> None:
    numbers: dict[str, Any] = dict(serving=0, draining=False, call_time_s=None, launch_time_s=None)
    assert launches_for_waiters(waiters=5, starting=0, background=5, **numbers) == 1
    assert launches_for_waiters(waiters=5, starting=1, background=5, **numbers) == 0
    # Waiting callers still get a launch each; the background ones share one.
    assert launches_for_waiters(waiters=5, starting=0, background=3, **numbers) == 3


queue_numbers = st.fixed_dictionaries(
    {
        "waiters": counts,
        "starting": counts,
        "serving": counts,
        "draining": st.booleans(),
        "call_time_s": times,
        "launch_time_s": times,
        "use_history": st.booleans(),
        "cpus_full": st.booleans(),
        "background": counts,
    }
)


@given(queue_numbers)
def test_launches_never_outnumber_the_waiters(numbers: dict[str, Any]) -> None:
    count = launches_for_waiters(**numbers)
    waiters, starting = numbers["waiters"], numbers["starting"]
    assert count >= 0
    assert starting + count <= max(waiters, starting), "never more starting than waiters"
    if numbers["draining"]:
        assert count == 0
    elif numbers["serving"] and numbers["cpus_full"]:
        assert starting + count <= max(1, starting), "one at a time on full CPUs"
        if waiters and not starting:
            assert count == 1, "waiters with none starting still get a launch"
    elif numbers["background"] >= waiters:
        assert starting + count <= max(1, starting), "background waiters: one at a time"
        if waiters and not starting:
            assert count == 1, "background waiters with none starting still get a launch"
    elif waiters > starting + max(0, numbers["background"] - 1):
        assert count >= 1, "a waiter beyond those starting always gets a launch"


@given(min_hot=counts, launched=counts, starting=st.integers(min_value=0, max_value=5))
def test_the_minimum_keeps_at_most_the_cap_under_way(
    min_hot: int, launched: int, starting: int
) -> None:
    count = launches_towards_minimum(min_hot=min_hot, launched=launched, starting=starting)
    assert count >= 0
    assert starting + count <= max(starting, MIN_HOT_LAUNCHES_AT_ONCE)
    assert launched + starting + count <= max(min_hot, launched + starting)
    if launched + starting < min_hot and starting < MIN_HOT_LAUNCHES_AT_ONCE:
        assert count >= 1, "a missing container with room under the cap starts"


def test_min_hot_bound_names_what_sets_it() -> None:
    budget = Budget(memory_bytes=1024 * MIB, cpu_mcpus=2000)
    assert min_hot_bound(memory_mb=128, cpus_mcpus=0, budget=budget, max_min_hot=4) == (
        4,
        "FN_MAX_MIN_HOT=4",
    )
    bound, why = min_hot_bound(memory_mb=512, cpus_mcpus=0, budget=budget, max_min_hot=4)
    assert (bound, "512 MiB each within the 1024 MiB memory" in why) == (2, True)
    bound, why = min_hot_bound(memory_mb=128, cpus_mcpus=1500, budget=budget, max_min_hot=4)
    assert (bound, "1500 milli-CPUs each within the 2000 milli-CPU" in why) == (1, True)
