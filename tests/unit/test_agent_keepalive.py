"""The agent carries out the keep-alive policy (fnagent/keepalive.py) on the fake driver with the
manual clock: unload at the planned time, pre-warm (launch, freeze, thaw for the call), the
idle_timeout bound, the fixed policy, Greedy-Dual eviction, and cancellation."""

from __future__ import annotations

import anyio
import pytest

from drivers.fake import FakeContainer, FakeDriver, ProgramContext
from fnagent.agent.admission import Budget
from fnagent.config import KeepAliveConfig
from fnagent.testing.clock import ManualClock
from fnagent.testing.fakefn import http_function
from tests.helpers import poll
from tests.unit.helpers import (
    KEEPALIVE_IDLE_S,
    LEARN_FAST,
    MIB,
    Hold,
    learn,
    make_call,
    make_fn,
    running,
)

pytestmark = pytest.mark.anyio


async def settled(clock: ManualClock, sleepers: int) -> None:
    await poll(lambda: clock.sleepers >= sleepers, f"{sleepers} timers")


def live(driver: FakeDriver) -> list[FakeContainer]:
    return driver.live()


async def test_a_learned_plan_unloads_at_once_prewarms_frozen_and_the_call_thaws_it() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        fn = make_fn()
        await learn(agent, clock, fn)
        # Three idle times of 2.5 s: the plan removes the idle container at once.
        await poll(lambda: live(driver) == [], "the container unloaded at once")
        clock.advance(1.7)
        await anyio.sleep(0.02)
        assert live(driver) == [], "no pre-warm before its time"
        clock.advance(0.1)
        await poll(lambda: len(live(driver)) == 1, "the pre-warm at 1.8 s")
        (prewarmed,) = live(driver)
        await settled(clock, 1)
        clock.advance(0.06)
        await poll(lambda: prewarmed.state == "paused", "the pre-warmed container frozen")
        clock.advance(KEEPALIVE_IDLE_S - 1.8 - 0.06)
        result = await agent.submit(make_call(fn, b"again"))
        assert (result.status, result.body, result.start) == (200, b"again", "thawed")
        assert live(driver) == [prewarmed]


async def test_a_prewarmed_container_no_call_takes_goes_at_the_planned_time() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn())
        await poll(lambda: live(driver) == [], "unloaded at once")
        clock.advance(1.8)
        await poll(lambda: len(live(driver)) == 1, "the pre-warm")
        await settled(clock, 1)
        clock.advance(0.06)
        await poll(lambda: live(driver)[0].state == "paused", "frozen")
        await settled(clock, 1)
        clock.advance(3.3 - 1.8 - 0.06 - 0.01)
        await anyio.sleep(0.02)
        assert len(live(driver)) == 1, "kept until 3.3 s after the call"
        clock.advance(0.02)
        await poll(lambda: live(driver) == [], "removed at 3.3 s")


async def test_before_the_histogram_decides_the_container_lives_for_idle_timeout() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn(), calls=3)  # two idle times: not yet representative
        await settled(clock, 1)
        clock.advance(29.9)
        await anyio.sleep(0.02)
        assert len(live(driver)) == 1
        clock.advance(0.2)
        await poll(lambda: live(driver) == [], "removed after idle_timeout")


async def test_the_fixed_policy_keeps_every_container_for_idle_timeout() -> None:
    clock = ManualClock()
    config = KeepAliveConfig(policy="fixed", min_samples=3)
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=config) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn(), calls=6)
        (container,) = live(driver)
        await settled(clock, 1)
        clock.advance(10)  # past any pre-warm the adaptive policy would plan
        await anyio.sleep(0.02)
        assert live(driver) == [container], "no pre-warm: still the one container"
        clock.advance(20.1)
        await poll(lambda: live(driver) == [], "removed after idle_timeout")
        assert len(driver.containers) == 1


async def test_an_idle_timeout_the_user_set_bounds_a_learned_keepalive() -> None:
    """Idle times of 0.5 s and one of 5.5 s: the paper keeps the container through the tail,
    6.6 s; the fn's idle_timeout of 3 s removes it at 3 s."""
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        fn = make_fn(idle_timeout_s=3)
        for idle_s in (0.0, 0.5, 0.5, 5.5, 0.5):
            clock.advance(idle_s)
            assert (await agent.submit(make_call(fn))).status == 200
        (container,) = live(driver)
        await settled(clock, 1)
        clock.advance(2.9)
        await anyio.sleep(0.02)
        assert container.state != "removed"
        clock.advance(0.2)
        await poll(lambda: container.state == "removed", "removed at the bound, 3 s")
        assert (await agent.submit(make_call(fn))).start == "cold"


async def test_deleting_the_fn_cancels_its_planned_prewarm() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn())
        await poll(lambda: live(driver) == [], "unloaded at once")
        agent.forget("fn1")
        clock.advance(5)
        await anyio.sleep(0.05)
        assert len(driver.containers) == 1, "no pre-warm after the delete"
        assert agent.keepalive("fn1") == ([], None)


async def test_shutdown_cancels_a_planned_prewarm_and_leaves_nothing() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn())
        await poll(lambda: live(driver) == [], "unloaded at once")
        assert agent.keepalive("fn1")[1] is not None, "a pre-warm is planned"
    assert live(driver) == []
    assert len(driver.containers) == 1


async def test_a_prewarm_launch_under_way_is_removed_when_the_fn_is_deleted() -> None:
    clock = ManualClock()
    images = {"fn/echo": http_function()}
    async with running(images, clock=clock, keepalive=LEARN_FAST, start_delay_s=0.3) as (
        agent,
        driver,
    ):
        await learn(agent, clock, make_fn())
        await poll(lambda: live(driver) == [], "unloaded at once")
        clock.advance(1.8)
        await poll(lambda: len(driver.containers) == 2, "the pre-warm launching")
        agent.forget("fn1")
        await poll(lambda: live(driver) == [], "the pre-warm removed")
        assert agent.containers("fn1") == {"running": 0, "frozen": 0, "starting": 0}


async def test_a_prewarm_that_does_not_fit_is_skipped_and_evicts_nothing() -> None:
    hold = Hold()
    clock = ManualClock()
    images = {"fn/a": http_function(), "fn/b": hold.program}
    async with running(
        images, clock=clock, keepalive=LEARN_FAST, budget=Budget(256 * MIB, 2000)
    ) as (agent, driver):
        fn_a = make_fn("fn/a", id="a", memory_mb=128)
        fn_b = make_fn("fn/b", id="b", memory_mb=256)
        await learn(agent, clock, fn_a)
        await poll(lambda: live(driver) == [], "a unloaded at once")
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(fn_b, b"hold"))
            await poll(lambda: agent.containers("b")["running"] == 1, "b busy, the budget full")
            clock.advance(1.8)
            await anyio.sleep(0.05)
            assert agent.containers("a") == {"running": 0, "frozen": 0, "starting": 0}
            assert len(driver.containers) == 2, "no pre-warm of a, b's busy container kept"
            hold.gate.set()
        assert agent.containers("b")["running"] + agent.containers("b")["frozen"] == 1


async def test_a_call_during_a_prewarm_launch_takes_the_prewarmed_container() -> None:
    clock = ManualClock()
    images = {"fn/echo": http_function()}
    async with running(images, clock=clock, keepalive=LEARN_FAST, start_delay_s=0.2) as (
        agent,
        driver,
    ):
        fn = make_fn()
        await learn(agent, clock, fn)
        await poll(lambda: live(driver) == [], "unloaded at once")
        clock.advance(1.8)
        await poll(lambda: len(driver.containers) == 2, "the pre-warm launching")
        result = await agent.submit(make_call(fn))
        assert result.status == 200
        assert len(driver.containers) == 2, "no second launch"


async def test_scale_view_shows_the_learned_keepalive_and_the_planned_prewarm() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        _,
    ):
        fn = make_fn()
        assert agent.keepalive("fn1") == ([], None)
        await learn(agent, clock, fn, calls=1)
        (view,), prewarm = agent.keepalive("fn1")
        assert (view.version, view.serving, view.policy) == (fn.version_key, True, "adaptive")
        assert (view.learned, view.representative, view.idle_samples) == (False, False, 0)
        assert view.keepalive_s == 30.0
        assert prewarm is None
        clock.advance(KEEPALIVE_IDLE_S)
        await learn(agent, clock, fn, calls=3)
        (view,), prewarm = agent.keepalive("fn1")
        assert (view.learned, view.representative, view.idle_samples) == (True, True, 3)
        assert view.keepalive_s == 0.0
        assert view.unload_in_s == 0.0
        assert prewarm is not None
        assert prewarm.version == fn.version_key
        assert prewarm.in_s == pytest.approx(1.8)
        assert prewarm.keep_s == pytest.approx(1.5)


async def test_under_memory_pressure_the_idle_container_evicted_is_greedy_duals_choice() -> None:
    """Room for two: fn a called five times, then fn b once; fn c's launch evicts b (called
    least), though a's container has been idle longer (the old choice)."""
    images = {"fn/a": http_function(), "fn/b": http_function(), "fn/c": http_function()}
    clock = ManualClock()
    async with running(images, clock=clock, budget=Budget(512 * MIB, 2000)) as (agent, _):
        fn_a, fn_b, fn_c = (make_fn(f"fn/{n}", id=n, memory_mb=256) for n in "abc")
        for _ in range(5):
            assert (await agent.submit(make_call(fn_a))).status == 200
        clock.advance(1)
        assert (await agent.submit(make_call(fn_b))).status == 200
        assert (await agent.submit(make_call(fn_c))).status == 200
        assert agent.containers("a")["running"] + agent.containers("a")["frozen"] == 1
        assert agent.containers("b") == {"running": 0, "frozen": 0, "starting": 0}


async def test_a_prewarm_that_fails_to_start_is_forgotten_and_no_call_gets_its_error() -> None:
    """The pre-warmed container exits before it listens: nothing is said to anybody, and the
    next call launches a container of its own."""
    serve = http_function()
    launches: list[int] = []

    async def program(ctx: ProgramContext) -> int:
        launches.append(1)
        if len(launches) == 2:  # the pre-warm
            return 3
        return await serve(ctx)

    clock = ManualClock()
    async with running({"fn/echo": program}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        fn = make_fn()
        await learn(agent, clock, fn)
        await poll(lambda: live(driver) == [], "unloaded at once")
        clock.advance(1.8)
        await poll(lambda: len(launches) == 2, "the pre-warm launched")
        await poll(lambda: agent.containers("fn1")["starting"] == 0, "the pre-warm gone")
        assert agent.queues[0].launch_failures == 0, "a failed pre-warm backs nothing off"
        clock.advance(0.7)
        result = await agent.submit(make_call(fn, b"after"))
        assert (result.status, result.body, result.start) == (200, b"after", "cold")
