"""The minimum hot count on the fake driver: its bounds, launches that never run as one
synchronous loop, and lowering it cancelling launches that have not started."""

from __future__ import annotations

import anyio
import pytest

from drivers.errors import InvalidInputError
from fnagent.agent.admission import Budget
from fnagent.agent.launch import MIN_HOT_LAUNCHES_AT_ONCE
from fnagent.testing.clock import ManualClock
from fnagent.testing.fakefn import http_function
from tests.helpers import poll
from tests.unit.helpers import MIB, make_call, make_fn, running

pytestmark = pytest.mark.anyio


async def test_min_hot_over_the_setting_is_refused_with_the_bound() -> None:
    async with running({"fn/echo": http_function()}, max_min_hot=10) as (agent, driver):
        fn = make_fn(memory_mb=64)
        with pytest.raises(InvalidInputError) as raised:
            agent.scale(fn, 11)
        assert raised.value.status == 400
        assert "at most 10" in raised.value.message
        assert "FN_MAX_MIN_HOT" in raised.value.message
        assert agent.min_hot("fn1") == 0
        await anyio.sleep(0.05)
        assert driver.containers == {}, "a refused minimum launches nothing"


async def test_min_hot_that_admission_can_never_fit_is_refused() -> None:
    budget = Budget(memory_bytes=1024 * MIB, cpu_mcpus=4000)
    async with running({"fn/echo": http_function()}, budget=budget, max_min_hot=1000) as (
        agent,
        _,
    ):
        fn = make_fn(memory_mb=128)
        for huge in (9, 20_000, 4611686018427387904):
            with pytest.raises(InvalidInputError) as raised:
                agent.scale(fn, huge)
            assert "at most 8" in raised.value.message
            assert "1024 MiB" in raised.value.message
        cpu_bound = make_fn(memory_mb=64, cpus_mcpus=1000)
        with pytest.raises(InvalidInputError, match="at most 4"):
            agent.scale(cpu_bound, 5)


async def test_a_large_allowed_min_hot_returns_at_once_and_launches_a_few_at_a_time() -> None:
    clock = ManualClock()
    budget = Budget(memory_bytes=100_000 * MIB, cpu_mcpus=4000)
    async with running(
        {"fn/echo": http_function()}, budget=budget, clock=clock, max_min_hot=1000
    ) as (agent, driver):
        fn = make_fn(memory_mb=64)
        agent.scale(fn, 1000)
        counts = agent.containers("fn1")
        assert counts["starting"] <= MIN_HOT_LAUNCHES_AT_ONCE, "no synchronous launch loop"
        assert agent.min_hot("fn1") == 1000
        await poll(lambda: agent.containers("fn1")["running"] >= 6, "launches go on by themselves")
        agent.scale(fn, 0)
        await poll(lambda: agent.containers("fn1")["starting"] == 0, "launches stop")
        launched = len(driver.containers)
        await anyio.sleep(0.05)
        assert len(driver.containers) == launched, "no launch after the minimum went to zero"
        assert launched < 1000


async def test_lowering_min_hot_cancels_launches_that_have_not_started() -> None:
    async with running({"fn/echo": http_function()}, max_min_hot=100) as (agent, driver):
        driver.create_delay_s = 0.2
        fn = make_fn(memory_mb=64)
        agent.scale(fn, 20)
        agent.scale(fn, 1)
        await poll(lambda: agent.containers("fn1")["starting"] == 0, "the started launches end")
        await anyio.sleep(0.05)
        assert len(driver.containers) <= MIN_HOT_LAUNCHES_AT_ONCE
        counts = agent.containers("fn1")
        # Idle for FN_FREEZE_IDLE_MSECS, the kept container may be frozen by now.
        assert counts["running"] + counts["frozen"] >= 1


async def test_the_default_cpus_limit_every_container_and_count_in_the_budget() -> None:
    budget = Budget(memory_bytes=100_000 * MIB, cpu_mcpus=1000)
    async with running({"fn/echo": http_function()}, budget=budget, default_cpu_mcpus=250) as (
        agent,
        driver,
    ):
        fn = make_fn(memory_mb=64)
        with pytest.raises(InvalidInputError, match="at most 4"):
            agent.scale(fn, 5)
        result = await agent.submit(make_call(fn))
        assert result.status == 200
        (container,) = driver.containers.values()
        assert container.options["HostConfig"]["CpuQuota"] == 25_000
        # A fn's own CPUs win over the default.
        own = make_fn(id="fn2", memory_mb=64, cpus_mcpus=500)
        assert (await agent.submit(make_call(own))).status == 200
        quotas = sorted(c.options["HostConfig"]["CpuQuota"] for c in driver.containers.values())
        assert quotas == [25_000, 50_000]
