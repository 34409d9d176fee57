"""Races, leaks and bookkeeping of the agent's keep-alive wiring, on the fake driver with the
manual clock: pre-warms against deletes, version switches and shutdown; every before_call
paired with an after_call whatever the call's end; the per-version policy state dropped with
its version; a pre-warmed container that cannot be frozen."""

from __future__ import annotations

import time

import anyio
import pytest

from drivers.errors import DockerAPIError
from drivers.fake import FakeContainer, FakeCookie, FakeDriver
from fnagent.agent import Agent
from fnagent.agent.admission import Budget
from fnagent.agent.agent import _Retry
from fnagent.agent.httpclient import Response
from fnagent.agent.slots import HotContainer
from fnagent.keepalive import KeepAlivePolicy, Plan
from fnagent.models import MAX_CONCURRENCY_ANNOTATION, Call, Fn
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


async def begin_prewarm(agent: Agent, driver: FakeDriver, clock: ManualClock) -> None:
    """fn1 learned (so unloaded at once), then the clock at its pre-warm: its launch begun."""
    await learn(agent, clock, make_fn())
    await poll(lambda: driver.live() == [], "unloaded at once")
    clock.advance(1.8)
    await poll(lambda: len(driver.containers) == 2, "the pre-warm launching")


async def launch_prewarm(agent: Agent, driver: FakeDriver, clock: ManualClock) -> FakeContainer:
    """As ``begin_prewarm``, and then the pre-warmed container, launched, its freeze timer
    set (due 0.05 s on)."""
    await begin_prewarm(agent, driver, clock)
    await poll(lambda: len(driver.live()) == 1, "the pre-warm")
    await poll(lambda: clock.sleepers >= 1, "its freeze timer")
    (container,) = driver.live()
    return container


def in_flight(agent: Agent) -> list[int]:
    return [q.keepalive._in_flight for q in agent.queues if q.keepalive is not None]


async def test_a_version_switch_during_a_prewarm_launch_removes_the_prewarmed_container() -> None:
    clock = ManualClock()
    images = {"fn/echo": http_function()}
    async with running(images, clock=clock, keepalive=LEARN_FAST, start_delay_s=0.3) as (
        agent,
        driver,
    ):
        await begin_prewarm(agent, driver, clock)
        changed = make_fn(config={"V": "2"})  # the same image: switched at once
        assert (await agent.submit(make_call(changed))).status == 200
        await poll(lambda: len(agent.queues) == 1, "the old version dropped")
        assert agent.queues[0].key == changed.version_key
        await poll(lambda: len(driver.live()) == 1, "the pre-warmed container removed")
        views, prewarm = agent.keepalive("fn1")
        assert [v.version for v in views] == [changed.version_key]


async def test_shutdown_during_a_prewarm_launch_leaves_nothing() -> None:
    clock = ManualClock()
    images = {"fn/echo": http_function()}
    async with running(images, clock=clock, keepalive=LEARN_FAST, start_delay_s=0.3) as (
        agent,
        driver,
    ):
        await begin_prewarm(agent, driver, clock)
    assert driver.live() == []


async def test_many_fns_created_called_and_deleted_leave_no_keepalive_state() -> None:
    """Each fn learns a pre-warm plan, then is deleted: no queue, policy, priority or
    pre-warm timer of any of them stays."""
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        for n in range(40):
            await learn(agent, clock, make_fn(id=f"fn{n}"))
            assert agent.keepalive(f"fn{n}")[1] is not None, "a pre-warm is planned"
            agent.forget(f"fn{n}")
        await poll(lambda: driver.live() == [], "every container removed")
        await poll(lambda: len(agent.queues) == 0, "every version dropped")
        await poll(lambda: clock.sleepers == 0, "no pre-warm timer left")
        assert repr(agent.priorities).endswith("containers=0>")
        assert not agent.priorities._frequency


async def test_before_and_after_call_stay_paired_on_429_timeouts_and_cancellation() -> None:
    hold = Hold()
    clock = ManualClock()
    async with running({"fn/echo": hold.program}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        _,
    ):
        fn = make_fn(annotations={MAX_CONCURRENCY_ANNOTATION: 1})
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(fn, b"hold"))
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the one container busy")
            # max-concurrency 1: a second call waits, then gets 429.
            call = make_call(fn)
            call.deadline = time.monotonic() + 0.05
            result = await agent.submit(call)
            assert result.status == 429
            assert in_flight(agent) == [1]
            # A call cancelled while it waits.
            with anyio.move_on_after(0.05):
                await agent.submit(make_call(fn))
            assert in_flight(agent) == [1]
            hold.gate.set()
        assert in_flight(agent) == [0]
        # A call cancelled mid-call (its container is doomed).
        hold.gate = anyio.Event()
        with anyio.move_on_after(0.05):
            await agent.submit(make_call(fn, b"hold"))
        assert in_flight(agent) == [0]
        hold.gate.set()


async def test_a_prewarmed_container_that_cannot_be_frozen_still_serves_and_goes_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(self: FakeCookie) -> None:
        raise DockerAPIError("unable to freeze")

    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        await launch_prewarm(agent, driver, clock)
        monkeypatch.setattr(FakeCookie, "freeze", refuse)  # before its freeze timer fires
        clock.advance(0.06)
        await poll(lambda: agent.queues[0].idle[0].freeze_failed, "the freeze refused")
        assert agent.containers("fn1") == {"running": 1, "frozen": 0, "starting": 0}
        clock.advance(0.6)
        result = await agent.submit(make_call(make_fn(), b"x"))
        assert (result.status, result.start) == (200, "warm")
        assert len(driver.containers) == 2


async def test_a_prewarmed_container_that_cannot_be_thawed_is_removed_and_the_call_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(self: FakeCookie) -> None:
        raise DockerAPIError("unable to thaw")

    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        prewarmed = await launch_prewarm(agent, driver, clock)
        clock.advance(0.06)
        await poll(lambda: prewarmed.state == "paused", "frozen")
        monkeypatch.setattr(FakeCookie, "unfreeze", refuse)
        clock.advance(0.6)
        result = await agent.submit(make_call(make_fn(), b"x"))
        assert (result.status, result.body, result.start) == (200, b"x", "cold")
        await poll(lambda: prewarmed.state == "removed", "the frozen one removed")
        assert in_flight(agent) == [0]


class Scripted(KeepAlivePolicy):
    """The real policy's bookkeeping, with the plans a test gives (one per call's end)."""

    def __init__(self, plans: list[Plan]) -> None:
        super().__init__(LEARN_FAST, fallback_s=30.0)
        self.plans = plans

    def after_call(self, now: float) -> Plan:
        super().after_call(now)
        return self.plans.pop(0)


async def test_a_container_idle_when_its_prewarm_is_due_is_kept_as_the_prewarm() -> None:
    """A plan for a version that still has an idle container when its pre-warm is due (say a
    second concurrent call's container): no launch, and that container stands in for the
    pre-warm, kept until the pre-warm's unload time, not removed at its own earlier one."""
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        driver,
    ):
        fn = make_fn()
        t = clock.now()  # the fake's calls take no clock time: the call ends at t
        policy = Scripted([Plan(unload_at=t + 10, prewarm_at=t + 5, prewarm_unload_at=t + 20)])
        agent.scale(fn, 0)  # routes the fn: its queue exists before its first call
        queue = agent.versions.serving("fn1")
        assert queue is not None
        queue.keepalive = policy
        assert (await agent.submit(make_call(fn))).status == 200
        (container,) = driver.live()
        await poll(lambda: clock.sleepers >= 2, "the idle and pre-warm timers")
        clock.advance(0.06)
        await poll(lambda: container.state == "paused", "frozen")
        clock.advance(5.0 - 0.06)
        await poll(lambda: queue.prewarm is None, "the pre-warm due")
        await anyio.sleep(0.02)
        assert driver.live() == [container], "no launch: a container is idle"
        clock.advance(5.5)  # past the idle container's own unload time
        await anyio.sleep(0.05)
        assert driver.live() == [container], "kept for the predicted call"
        policy.plans.append(Plan(unload_at=clock.now()))
        result = await agent.submit(make_call(fn))
        assert (result.status, result.start) == (200, "thawed")
        assert len(driver.containers) == 1


async def test_a_prewarm_takes_no_room_a_launch_is_waiting_for() -> None:
    """Room for 512 MiB: b's busy container holds 256, c's call wants 384 and waits for room.
    a's pre-warm (128) would fit in what is free, but c waits for that room: no pre-warm."""
    hold = Hold()
    clock = ManualClock()
    images = {"fn/a": http_function(), "fn/b": hold.program, "fn/c": http_function()}
    async with running(
        images, clock=clock, keepalive=LEARN_FAST, budget=Budget(512 * MIB, 2000)
    ) as (agent, driver):
        fn_a = make_fn("fn/a", id="a", memory_mb=128)
        fn_b = make_fn("fn/b", id="b", memory_mb=256)
        fn_c = make_fn("fn/c", id="c", memory_mb=384)
        await learn(agent, clock, fn_a)
        await poll(lambda: driver.live() == [], "a unloaded at once")
        results = []

        async def call(fn: Fn, body: bytes) -> None:
            results.append((fn.id, (await agent.submit(make_call(fn, body))).status))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, fn_b, b"hold")
            await poll(lambda: agent.containers("b")["running"] == 1, "b busy")
            tg.start_soon(call, fn_c, b"x")
            await poll(lambda: any(q.admission_blocked for q in agent.queues), "c waiting for room")
            clock.advance(1.8)  # a's pre-warm is due
            await anyio.sleep(0.05)
            assert agent.containers("a") == {"running": 0, "frozen": 0, "starting": 0}
            hold.gate.set()
            await poll(lambda: len(results) == 2 or clock.sleepers > 0, "b done")
            while len(results) < 2:
                clock.advance(0.5)  # c's wait for room, evicting b's idle container
                await anyio.sleep(0.01)
        assert sorted(results) == [("b", 200), ("c", 200)]


async def test_a_call_retried_on_another_container_is_one_call_to_its_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing reached the first container (it went away): the call goes to another one of
    the same version. The policy hears one call (one idle time), not a call that ended and
    another that started at once (an idle time of 0 s that never happened)."""
    exchange = Agent._exchange
    failures = [1]

    async def flaky(self: Agent, container: HotContainer, call: Call) -> Response:
        if failures:
            failures.pop()
            self._doom(container)
            raise _Retry()
        return await exchange(self, container, call)

    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock, keepalive=LEARN_FAST) as (
        agent,
        _,
    ):
        fn = make_fn()
        assert (await agent.submit(make_call(fn))).status == 200
        clock.advance(KEEPALIVE_IDLE_S)
        monkeypatch.setattr(Agent, "_exchange", flaky)
        assert (await agent.submit(make_call(fn))).status == 200
        assert not failures
        (queue,) = agent.queues
        assert queue.keepalive is not None
        assert queue.keepalive.histogram.samples == 1
        assert in_flight(agent) == [0]
