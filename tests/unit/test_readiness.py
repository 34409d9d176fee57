"""The start timeout's allowance (fnagent/agent/readiness.py) on plain numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fnagent.agent.readiness import MAX_START_STRETCH, start_allowance


def test_a_start_is_allowed_its_timeout_plus_its_cpu_wait_up_to_the_stretch_limit() -> None:
    assert start_allowance(timeout_s=5, cpu_wait_s=None) == 5
    assert start_allowance(timeout_s=5, cpu_wait_s=0) == 5
    assert start_allowance(timeout_s=5, cpu_wait_s=12.5) == 17.5
    assert start_allowance(timeout_s=5, cpu_wait_s=1000) == 5 * MAX_START_STRETCH


@given(
    timeout_s=st.floats(min_value=0.001, max_value=600),
    wait=st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_the_start_allowance_is_between_the_timeout_and_the_stretch_limit(
    timeout_s: float, wait: float | None
) -> None:
    allowed = start_allowance(timeout_s=timeout_s, cpu_wait_s=wait)
    assert timeout_s <= allowed <= timeout_s * MAX_START_STRETCH
