"""The agent on the fake driver: slot selection, launches, idle timers, status table,
admission and eviction, updates, scale, shutdown."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from drivers.fake import FakeDriver, Program, ProgramContext
from fnagent.agent import Agent, CallResult
from fnagent.agent.admission import Budget
from fnagent.agent.agent import EXIT_REPORT_WAIT_S, UPDATE_RETRY_S
from fnagent.agent.calllogs import LogLine
from fnagent.agent.follow import FollowHub
from fnagent.agent.readiness import MAX_START_STRETCH
from fnagent.config import AgentConfig
from fnagent.models import Call, CallRequest
from fnagent.server.invoke import error_answer
from fnagent.testing.clock import ManualClock
from fnagent.testing.fakefn import Answer, Request, http_function
from tests.helpers import poll
from tests.unit.helpers import (
    MIB,
    ROOMY,
    Lines,
    handler_of,
    make_call,
    make_fn,
    message,
    running,
)

pytestmark = pytest.mark.anyio


async def submit_into(agent: Agent, call: Call, results: list[CallResult]) -> None:
    results.append(await agent.submit(call))


# -- slots and launches -----------------------------------------------------------------------


async def test_first_call_is_cold_then_warm_on_the_same_container() -> None:
    async with running({"fn/echo": http_function()}) as (agent, driver):
        fn = make_fn()
        first = await agent.submit(make_call(fn, b"one"))
        second = await agent.submit(make_call(fn, b"two"))
        assert (first.status, first.body, first.start) == (200, b"one", "cold")
        assert (second.status, second.body, second.start) == (200, b"two", "warm")
        assert len(driver.containers) == 1


async def test_concurrent_first_calls_never_start_more_containers_than_calls() -> None:
    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(0.2)
        return Answer(body=request.body)

    async with running({"fn/echo": handler_of(slow)}) as (agent, driver):
        fn = make_fn()
        results: list[CallResult] = []

        async def one(i: int) -> None:
            results.append(await agent.submit(make_call(fn, str(i).encode())))

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(one, i)
        assert sorted(r.body for r in results) == [str(i).encode() for i in range(5)]
        assert all(r.status == 200 for r in results)
        assert 1 <= len(driver.containers) <= 5


async def test_sequential_calls_reuse_one_container_and_lifo() -> None:
    async with running({"fn/echo": http_function()}) as (agent, driver):
        fn = make_fn()
        for _ in range(10):
            assert (await agent.submit(make_call(fn))).status == 200
        assert len(driver.containers) == 1


async def test_parallel_calls_launch_only_while_waiters_outnumber_containers() -> None:
    gate = anyio.Event()

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        await gate.wait()
        return Answer()

    async with running({"fn/echo": handler_of(held)}) as (agent, driver):
        fn = make_fn()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(agent.submit, make_call(fn))
            await poll(lambda: agent.containers("fn1")["running"] == 3, "3 busy containers")
            assert len(driver.containers) == 3
            gate.set()
        # All three are idle now: three more calls reuse them.
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(agent.submit, make_call(fn))
        assert len(driver.containers) == 3


def held_until(gate: anyio.Event) -> Program:
    """A function whose calls with the body "hold" answer once ``gate`` is set."""

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"hold":
            await gate.wait()
        return Answer()

    return handler_of(held)


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize(("host_idle", "containers"), [(0.5, 2), (0.05, 1)])
async def test_a_short_call_launches_after_its_patience_only_while_the_cpus_have_room(
    host_idle: float, containers: int, background: bool
) -> None:
    # Background waiters (detached calls) launch one at a time, each launch ready starting
    # the next, but only where a waiting caller would launch at once: short calls take the
    # busy containers as they free up, whoever waits for them.
    gate = anyio.Event()
    handler = held_until(gate)
    async with running({"fn/echo": handler}, host_idle=host_idle, hot_launch_patience_ms=20) as (
        agent,
        driver,
    ):
        fn = make_fn()
        assert (await agent.submit(make_call(fn, b""))).status == 200  # a short call is known
        (queue,) = agent.queues
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(fn, b"hold"))
            await poll(lambda: not queue.idle, "the container busy")
            queue.launch_time_s = 0.5  # a real launch: far longer than a call
            for _ in range(3):
                call = Call(fn=fn, request=CallRequest(body=b"hold"), background=background)
                tg.start_soon(agent.submit, call)
            await poll(
                lambda: len(queue.waiters) == 3 or len(driver.containers) > 1,
                "three waiters or a second container",
            )
            await anyio.sleep(0.2)  # well past their patience, and a launch
            assert len(driver.containers) == containers
            gate.set()
        assert len(driver.containers) == containers


@pytest.mark.parametrize(("host_idle", "containers"), [(0.5, 5), (0.05, 2)])
async def test_slow_calls_launch_at_once_but_one_at_a_time_while_the_cpus_are_full(
    host_idle: float, containers: int
) -> None:
    # On full CPUs a launch per waiter starts a burst whose starts starve each other and
    # every other fn's (seen under load: 14 at once, a cold fn's start then took 29 s).
    gate = anyio.Event()
    async with running({"fn/echo": held_until(gate)}, host_idle=host_idle) as (agent, driver):
        fn = make_fn()
        assert (await agent.submit(make_call(fn, b""))).status == 200
        (queue,) = agent.queues
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(fn, b"hold"))
            await poll(lambda: not queue.idle, "the container busy")
            # Known slow calls next to a launch: waiting would take longer than launching.
            queue.call_time_s, queue.launch_time_s = 1.0, 0.1
            for _ in range(4):
                tg.start_soon(agent.submit, make_call(fn, b"hold"))
            await poll(lambda: len(driver.containers) == containers, f"{containers} containers")
            await anyio.sleep(0.2)
            assert len(driver.containers) == containers
            gate.set()
        assert len(driver.containers) == containers


@pytest.mark.parametrize(("background", "at_once"), [(True, 1), (False, 4)])
async def test_background_calls_start_their_containers_one_at_a_time(
    background: bool, at_once: int
) -> None:
    # Detached calls (Call.background) have no caller waiting: a burst of them must not start
    # a launch each while the server is busiest accepting them. Each launch ready starts the
    # next while they wait, until each has a container; waiting callers launch at once.
    gate = anyio.Event()
    async with running({"fn/echo": held_until(gate)}, start_delay_s=0.02) as (agent, driver):
        fn = make_fn()
        most_starting = 0

        async def watch_launches() -> None:
            nonlocal most_starting
            while True:
                for queue in agent.queues:
                    most_starting = max(most_starting, queue.starting)
                await anyio.sleep(0.002)

        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_launches)
            async with anyio.create_task_group() as calls:
                for _ in range(4):
                    call = Call(fn=fn, request=CallRequest(body=b"hold"), background=background)
                    calls.start_soon(submit_into, agent, call, results)
                await poll(lambda: len(driver.containers) == 4, "a container for each call")
                gate.set()
            tg.cancel_scope.cancel()
        assert [result.status for result in results] == [200] * 4
        assert most_starting == at_once
        # Nobody waited for those launches: the driver may start them the cheaper way.
        assert [c.background for c in driver.containers.values()] == [background] * 4


async def test_scaling_from_zero_with_short_calls_known_starts_one_container() -> None:
    entered, gate = anyio.Event(), anyio.Event()

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"hold":
            entered.set()
            await gate.wait()
        return Answer()

    async with running({"fn/echo": handler_of(held)}) as (agent, driver):
        fn = make_fn()
        assert (await agent.submit(make_call(fn, b""))).status == 200
        (queue,) = agent.queues
        queue.launch_time_s = 0.5  # a real launch: far longer than a call
        # Its caller goes away mid-call: the container is doomed and serves no more.
        with anyio.CancelScope() as gone:
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent.submit, make_call(fn, b"hold"))
                await entered.wait()
                gone.cancel()
        gate.set()
        assert queue.serving == 0
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(agent.submit, make_call(fn, b""))
        assert len(driver.containers) == 2, "one new container served all five"


# -- idle policy (controllable clock) ---------------------------------------------------------


async def test_idle_container_is_frozen_then_thawed_then_removed() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock) as (agent, driver):
        fn = make_fn(idle_timeout_s=30)
        assert (await agent.submit(make_call(fn))).start == "cold"
        (container,) = driver.containers.values()
        await poll(lambda: clock.sleepers == 1, "the idle timer")
        clock.advance(0.06)
        await poll(lambda: container.state == "paused", "the freeze")
        thawed = await agent.submit(make_call(fn, b"again"))
        assert (thawed.status, thawed.body, thawed.start) == (200, b"again", "thawed")
        assert container.state == "running"
        await poll(lambda: clock.sleepers == 1, "the idle timer")
        clock.advance(0.06)
        await poll(lambda: container.state == "paused", "the second freeze")
        await poll(lambda: clock.sleepers == 1, "the removal timer")
        clock.advance(30)
        await poll(lambda: container.state == "removed", "the removal after idle_timeout")
        assert agent.containers("fn1") == {"running": 0, "frozen": 0, "starting": 0}


async def test_minimum_hot_count_keeps_frozen_containers() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock) as (agent, driver):
        fn = make_fn(idle_timeout_s=1)
        agent.scale(fn, 2)
        await poll(lambda: agent.containers("fn1")["running"] == 2, "two pre-warmed")
        await poll(lambda: clock.sleepers == 2, "idle timers")
        clock.advance(0.06)
        await poll(lambda: agent.containers("fn1")["frozen"] == 2, "both frozen")
        clock.advance(100)
        await anyio.sleep(0.05)
        assert agent.containers("fn1")["frozen"] == 2, "the minimum is kept past idle_timeout"
        agent.scale(fn, 0)
        await poll(lambda: driver.live() == [], "scaled to zero: both idle past idle_timeout")


async def test_minimum_hot_count_backs_off_while_the_daemon_is_down_then_recovers() -> None:
    clock = ManualClock()
    async with running({"fn/echo": http_function()}, clock=clock) as (agent, driver):
        fn = make_fn()
        driver.available = False
        agent.scale(fn, 1)
        await poll(lambda: clock.sleepers == 1, "a delayed relaunch after the failure")
        await anyio.sleep(0.05)
        assert driver.prepare_attempts == 1, "no relaunch before the backoff passes"
        clock.advance(0.1)
        await poll(lambda: driver.prepare_attempts == 2, "one relaunch after 0.1 s")
        await poll(lambda: clock.sleepers == 1, "the next relaunch is delayed too")
        clock.advance(0.1)
        await anyio.sleep(0.05)
        assert driver.prepare_attempts == 2, "the delay doubles"
        result = await agent.submit(make_call(fn))
        assert result.status == 503 and "cannot connect to the Docker daemon" in message(result)
        driver.available = True
        clock.advance(2)
        await poll(lambda: agent.containers("fn1")["running"] == 1, "warm again")
        assert (await agent.submit(make_call(fn))).status == 200


# -- the status table -------------------------------------------------------------------------


async def test_function_502_and_504_keep_the_container() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(status=int(request.body))

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        fn = make_fn()
        failed = await agent.submit(make_call(fn, b"502"))
        assert (failed.status, message(failed)) == (502, "function failed")
        timed = await agent.submit(make_call(fn, b"504"))
        assert (timed.status, message(timed)) == (504, "Timed out")
        assert len(driver.live()) == 1


async def test_another_status_is_invalid_and_removes_the_container() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(status=418)

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        result = await agent.submit(make_call(make_fn()))
        assert result.status == 502
        assert message(result).startswith("invalid function response")
        await poll(lambda: driver.live() == [], "the container removed")


async def test_crash_mid_call_is_502_and_the_next_call_gets_a_new_container() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(exit_code=1) if request.body == b"crash" else Answer(body=b"fine")

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        fn = make_fn()
        crashed = await agent.submit(make_call(fn, b"crash"))
        assert (crashed.status, message(crashed)) == (502, "error receiving function response")
        after = await agent.submit(make_call(fn, b"ok"))
        assert (after.status, after.body, after.start) == (200, b"fine", "cold")
        assert len(driver.containers) == 2


async def test_a_function_hanging_up_mid_call_is_502_at_once() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(hang_up=request.body == b"hang up")

    async with running({"fn/echo": handler_of(answer)}) as (agent, _):
        fn = make_fn()
        started = time.monotonic()
        dropped = await agent.submit(make_call(fn, b"hang up"))
        assert (dropped.status, message(dropped)) == (502, "error receiving function response")
        assert time.monotonic() - started < EXIT_REPORT_WAIT_S / 2, "it waited for an exit report"
        assert (await agent.submit(make_call(fn, b"ok"))).status == 200


async def test_call_timeout_is_504_and_removes_the_container() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(10)
        return Answer()

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        fn = make_fn(timeout_s=1)
        result = await agent.submit(make_call(fn))
        assert (result.status, message(result)) == (504, "Timed out")
        await poll(lambda: driver.live() == [], "the container removed")


async def test_response_over_the_limit_is_502_and_the_container_is_kept() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=b"x" * int(request.body))

    async with running({"fn/echo": handler_of(answer)}, max_response_size_bytes=1000) as (
        agent,
        driver,
    ):
        fn = make_fn()
        big = await agent.submit(make_call(fn, b"5000"))
        assert (big.status, message(big)) == (502, "function response body too large")
        small = await agent.submit(make_call(fn, b"10"))
        assert (small.status, small.body) == (200, b"x" * 10)
        assert len(driver.containers) == 1


async def test_not_listening_in_time_is_504_and_the_container_removed() -> None:
    slow_start = http_function(listen_delay_s=10)
    async with running({"fn/echo": slow_start}, hot_start_timeout_ms=200) as (agent, driver):
        result = await agent.submit(make_call(make_fn()))
        assert result.status == 504
        assert "Container initialization timed out" in message(result)
        await poll(lambda: driver.live() == [], "the container removed")


async def test_a_start_the_host_starved_of_cpu_is_not_a_504() -> None:
    # Its processes waited for a CPU 80% of the time: listening after 1 s is 0.2 s of its own
    # start-up, within the 0.5 s timeout.
    starved = http_function(listen_delay_s=1.0)
    async with running({"fn/echo": starved}, hot_start_timeout_ms=500, cpu_wait_share=0.8) as (
        agent,
        _,
    ):
        result = await agent.submit(make_call(make_fn(), b"served"))
    assert (result.status, result.body) == (200, b"served")


@pytest.mark.parametrize(
    ("timeout_ms", "share", "least_s"),
    [
        # Its own share of the time (20%) reaches the 0.3 s timeout at 1.5 s.
        (300, 0.8, 1.4),
        # Waiting for a CPU all along (e.g. more busy threads of its own than CPUs) never
        # ends its own timeout: the stretch limit does.
        (100, 1.0, 0.1 * MAX_START_STRETCH),
    ],
)
async def test_a_starved_start_that_never_listens_is_still_a_504_with_the_hint(
    timeout_ms: int, share: float, least_s: float
) -> None:
    never_listens = http_function(listen_delay_s=60)
    async with running(
        {"fn/echo": never_listens}, hot_start_timeout_ms=timeout_ms, cpu_wait_share=share
    ) as (agent, driver):
        began = anyio.current_time()
        result = await agent.submit(make_call(make_fn()))
        took = anyio.current_time() - began
        assert result.status == 504
        assert f"Container initialization timed out after {timeout_ms / 1000:g} s" in message(
            result
        )
        assert "FN_LISTENER" in message(result)
        assert least_s <= took < least_s + 5, took
        await poll(lambda: driver.live() == [], "the container removed")


async def test_a_start_timeout_fails_no_call_another_starting_container_then_serves() -> None:
    # Under load a cold start can outlast FN_HOT_START_TIMEOUT_MSECS while a second launch of
    # the fn, started later, becomes ready: the waiting calls go to that one, no 504.
    never_listens = http_function(listen_delay_s=60)
    listens = http_function()
    first_gone = anyio.Event()
    started: list[str] = []

    async def program(ctx: ProgramContext) -> int:
        started.append(ctx.task.id)
        if len(started) == 1:
            try:
                return await never_listens(ctx)
            finally:
                first_gone.set()  # removed after its start timeout
        await first_gone.wait()
        return await listens(ctx)

    async with running({"fn/echo": program}, hot_start_timeout_ms=2000) as (agent, driver):
        fn = make_fn()
        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_into, agent, make_call(fn, b"one"), results)
            await poll(lambda: len(started) == 1, "the first container started")
            # The second call comes later, so its container's own start timeout ends later.
            await anyio.sleep(0.5)
            tg.start_soon(submit_into, agent, make_call(fn, b"two"), results)
        assert sorted((r.status, r.body) for r in results) == [(200, b"one"), (200, b"two")]
        assert len(started) == 2


async def test_launches_that_never_listen_still_fail_every_waiting_call_with_the_hint() -> None:
    slow_start = http_function(listen_delay_s=60)
    async with running({"fn/echo": slow_start}, hot_start_timeout_ms=200) as (agent, driver):
        fn = make_fn()
        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            for body in (b"one", b"two", b"three"):
                tg.start_soon(submit_into, agent, make_call(fn, body), results)
        assert [r.status for r in results] == [504, 504, 504]
        assert all("Container initialization timed out" in message(r) for r in results)
        await poll(lambda: driver.live() == [], "the containers removed")


async def test_exit_before_listening_is_502() -> None:
    async with running({"fn/echo": http_function(exit_before=3)}) as (agent, driver):
        result = await agent.submit(make_call(make_fn()))
        assert result.status == 502
        assert "failed to initialize" in message(result)


def error_body(result: CallResult) -> dict[str, str]:
    assert result.error is not None, result
    _, body = error_answer(result.error)
    document: dict[str, str] = json.loads(body)
    return document


async def test_exit_before_listening_says_how_with_the_last_stderr_lines() -> None:
    async def crashes(ctx: ProgramContext) -> int:
        await ctx.stdout.write(b"on stdout\n")
        await ctx.stderr.write(b"".join(b"import error %d\n" % i for i in range(30)))
        return 7

    async with running({"fn/echo": crashes}) as (agent, _):
        result = await agent.submit(make_call(make_fn()))
    body = error_body(result)
    assert result.status == 502
    assert body["message"].startswith(
        "Container failed to initialize: exited with code 7 before listening; "
    )
    assert "FN_LISTENER" in body["message"], "the FDK hint stays"
    assert body["stderr"].splitlines() == [f"import error {i}" for i in range(10, 30)]
    assert result.logs == body["stderr"].encode(), "the same text is the call's log"


async def test_a_start_timeout_carries_the_stderr_printed_so_far() -> None:
    async def loads_forever(ctx: ProgramContext) -> int:
        await ctx.stderr.write(b"loading the model\n")
        await ctx.sleep(60)
        return 0

    async with running({"fn/echo": loads_forever}, hot_start_timeout_ms=300) as (agent, _):
        result = await agent.submit(make_call(make_fn()))
    body = error_body(result)
    assert result.status == 504
    assert "Container initialization timed out after 0.3 s" in body["message"]
    assert body["stderr"] == "loading the model\n"
    assert result.logs == b"loading the model\n"


async def test_missing_image_is_404() -> None:
    async with running({}, missing_images=["fn/missing"]) as (agent, _):
        result = await agent.submit(make_call(make_fn("fn/missing")))
        assert result.status == 404
        assert "pull access denied" in message(result)


async def test_logs_are_captured_and_capped() -> None:
    async def chatty(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.stderr.write(b"e" * int(request.body))
        return Answer()

    async with running({"fn/echo": handler_of(chatty)}, max_log_size_bytes=100) as (agent, _):
        fn = make_fn()
        small = await agent.submit(make_call(fn, b"10"))
        assert small.logs == b"e" * 10 + b"\n", "a call's last partial line ends the log"
        big = await agent.submit(make_call(fn, b"500"))
        assert big.logs.startswith(b"e" * 100)
        assert b"log truncated at 100 bytes" in big.logs


async def test_each_line_reaches_the_log_sink_with_its_call_and_stream() -> None:
    async def chatty(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.stdout.write(b"out " + request.body + b"\nhalf")
        await ctx.stderr.write(b"err " + request.body + b"\n")
        return Answer()

    lines = Lines()
    async with running({"fn/echo": handler_of(chatty)}, log_sink=lines) as (agent, _):
        fn = make_fn(syslog_url="udp://l:1")
        first = await agent.submit(make_call(fn, b"1"))
        second = await agent.submit(make_call(fn, b"2"))
        seen = [(x.call_id, x.stream, x.data) for x in lines]
        assert seen == [
            (first.call_id, "stdout", b"out 1"),
            (first.call_id, "stderr", b"err 1"),
            (first.call_id, "stdout", b"half"),  # the call's unfinished line, at its end
            (second.call_id, "stdout", b"out 2"),
            (second.call_id, "stderr", b"err 2"),
            (second.call_id, "stdout", b"half"),
        ]
        assert {x.fn.syslog_url if x.fn else "no fn" for x in lines} == {"udp://l:1"}
        # The app's syslog_url changed (the server then calls update): the fn's containers
        # tag what they print with the new definition at once, without a call.
        assert make_fn(syslog_url=None).version_key == fn.version_key  # no new containers
        await agent.update(make_fn(syslog_url=None))
        (container,) = [c for q in agent.queues for c in q.containers]
        container.router.stdout.write(b"between calls\n")
        last = lines[-1]
        assert (last.call_id, last.fn and last.fn.syslog_url) == (None, None)


class PublishedHub(FollowHub):
    """A follow hub that keeps every line published to it."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[LogLine] = []

    def publish(self, line: LogLine) -> None:
        self.published.append(line)
        super().publish(line)


async def test_lines_are_built_only_for_a_follower_or_a_sink_that_wants_them() -> None:
    async def chatty(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.stdout.write(b"out " + request.body + b"\n")
        return Answer()

    lines = Lines(wanted=lambda fn: bool(fn.syslog_url))
    async with running({"fn/echo": handler_of(chatty)}, log_sink=lines) as (agent, _):
        agent.follow = hub = PublishedHub()
        fn = make_fn()
        alone = await agent.submit(make_call(fn, b"1"))
        assert alone.logs == b"out 1\n"
        assert (lines, hub.published) == ([], []), "nobody wanted the line: none was built"
        with hub.subscribe(fn.id) as follower:
            followed = await agent.submit(make_call(fn, b"2"))
            taken = [x for x in follower.take() if isinstance(x, LogLine)]
        assert [(x.call_id, x.data) for x in taken] == [(followed.call_id, b"out 2")]
        assert lines == [], "the sink does not want this fn's lines"


# -- trigger protocol -------------------------------------------------------------------------


async def test_trigger_headers_are_wrapped_and_unwrapped() -> None:
    seen: dict[str, str] = {}

    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        seen.update(request.headers)
        return Answer(
            status=200,
            headers={"Fn-Http-Status": "201", "Fn-Http-H-X-Out": "o", "Content-Type": "text/plain"},
            body=b"made",
        )

    async with running({"fn/echo": handler_of(answer)}) as (agent, _):
        call = make_call(
            make_fn(),
            b"{}",
            method="PUT",
            url="http://h/t/app/hook?q=1",
            headers=[
                ("X-In", "i"),
                ("Content-Type", "application/json"),
                ("Connection", "keep-alive"),
                ("Fn-Call-Id", "spoofed"),
            ],
        )
        call.trigger = True
        result = await agent.submit(call)
    assert result.status == 201
    assert ("X-Out", "o") in result.headers and ("Content-Type", "text/plain") in result.headers
    assert seen["fn-http-h-x-in"] == "i"
    assert seen["content-type"] == "application/json"
    assert seen["fn-intent"] == "httprequest"
    assert seen["fn-http-method"] == "PUT"
    assert seen["fn-http-request-url"] == "http://h/t/app/hook?q=1"
    assert seen["fn-call-id"] == call.id
    assert "fn-http-h-connection" not in seen  # hop-by-hop: never forwarded
    assert seen["fn-deadline"].endswith("Z")


# -- admission --------------------------------------------------------------------------------


async def test_memory_that_can_never_fit_is_400() -> None:
    async with running({"fn/echo": http_function()}, budget=Budget(256 * MIB, 2000)) as (agent, _):
        result = await agent.submit(make_call(make_fn(memory_mb=512)))
        assert result.status == 400
        assert "can give functions at most 256 MiB" in message(result)


async def test_full_budget_evicts_idle_containers_of_other_functions() -> None:
    images = {"fn/a": http_function(), "fn/b": http_function()}
    async with running(images, budget=Budget(256 * MIB, 2000)) as (agent, driver):
        fn_a = make_fn("fn/a", id="a", memory_mb=256)
        fn_b = make_fn("fn/b", id="b", memory_mb=256)
        assert (await agent.submit(make_call(fn_a))).status == 200
        result = await agent.submit(make_call(fn_b))
        assert result.status == 200
        assert agent.containers("a")["running"] + agent.containers("a")["frozen"] == 0


async def test_no_room_until_the_deadline_is_503_with_retry_after() -> None:
    gate = anyio.Event()

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        await gate.wait()
        return Answer()

    images = {"fn/a": handler_of(held), "fn/b": http_function()}
    async with running(images, budget=Budget(256 * MIB, 2000)) as (agent, _):
        fn_a = make_fn("fn/a", id="a", memory_mb=256)
        fn_b = make_fn("fn/b", id="b", memory_mb=256, timeout_s=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(fn_a))
            await poll(lambda: agent.containers("a")["running"] == 1, "a busy")
            result = await agent.submit(make_call(fn_b))
            gate.set()
        assert result.status == 503
        assert message(result) == "Timed out - server too busy"
        assert result.error is not None
        assert (b"retry-after", b"15") in error_answer(result.error)[0]


# -- updates ----------------------------------------------------------------------------------


async def test_update_pre_pulls_while_the_old_version_serves_then_drains() -> None:
    async def v1(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=b"v1")

    async def v2(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=b"v2")

    images = {"fn/app:1": handler_of(v1), "fn/app:2": handler_of(v2)}
    async with running(images, pull_delay_s=0.3) as (agent, driver):
        old, new = make_fn("fn/app:1"), make_fn("fn/app:2")
        assert (await agent.submit(make_call(old))).body == b"v1"
        # The new version's first calls are served by v1 while fn/app:2 is pulled.
        during = await agent.submit(make_call(new))
        assert (during.status, during.body) == (200, b"v1")
        await poll(lambda: "fn/app:2" in driver.pulls, "the pre-pull")
        await poll(lambda: agent.serving_version("fn1") == new.version_key, "the switch")
        after = await agent.submit(make_call(new))
        assert (after.status, after.body) == (200, b"v2")
        await poll(lambda: len(driver.live()) == 1, "the old container drained")


async def test_a_config_change_serves_the_very_next_call() -> None:
    async def config(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=ctx.task.env_vars.get("K", "-").encode())

    async with running({"fn/echo": handler_of(config)}, pull_delay_s=0.3) as (agent, driver):
        assert (await agent.submit(make_call(make_fn(config={"K": "v1"})))).body == b"v1"
        # Same image: nothing to pull, so no call is left to the old configuration.
        assert (await agent.submit(make_call(make_fn(config={"K": "v2"})))).body == b"v2"
        await poll(lambda: len(driver.live()) == 1, "the old container drained")


async def test_a_late_pre_pull_does_not_switch_back_to_an_older_version() -> None:
    images = {f"fn/app:{n}": handler_of(_answering(f"v{n}".encode())) for n in (1, 2)}
    async with running(images, pull_delay_s=0.3) as (agent, driver):
        first, pulled = make_fn("fn/app:1"), make_fn("fn/app:2")
        assert (await agent.submit(make_call(first))).body == b"v1"
        await agent.update(pulled)  # starts pulling fn/app:2
        newest = make_fn("fn/app:1", config={"K": "v3"})
        await agent.update(newest)  # same image as serving: switches now
        await poll(lambda: "fn/app:2" in driver.pulls, "the pre-pull")
        await anyio.sleep(0.05)
        assert agent.serving_version("fn1") == newest.version_key


def _answering(body: bytes) -> Callable[[Request, ProgramContext], Any]:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=body)

    return answer


async def test_failed_update_keeps_the_old_version_and_reports_why() -> None:
    async with running({"fn/app:1": http_function()}, missing_images=["fn/app:2"]) as (agent, _):
        old, new = make_fn("fn/app:1"), make_fn("fn/app:2")
        assert (await agent.submit(make_call(old))).status == 200
        assert (await agent.submit(make_call(new))).status == 200
        await poll(lambda: "fn1" in agent.update_errors, "the failure recorded")
        assert "pull access denied" in agent.update_errors["fn1"]
        assert (await agent.submit(make_call(new))).status == 200


async def test_the_update_retry_waits_on_the_agent_clock() -> None:
    clock = ManualClock()
    images = {"fn/app:1": http_function()}
    async with running(images, missing_images=["fn/app:2"], clock=clock) as (agent, driver):
        tried: list[str] = []
        ensure_image = driver.ensure_image

        async def counting(image: str) -> None:
            if image == "fn/app:2":
                tried.append(image)
            await ensure_image(image)

        driver.ensure_image = counting  # type: ignore[method-assign]
        old, new = make_fn("fn/app:1"), make_fn("fn/app:2")
        assert (await agent.submit(make_call(old))).status == 200
        assert (await agent.submit(make_call(new))).status == 200
        await poll(lambda: "fn1" in agent.update_errors, "the failure recorded")
        assert (await agent.submit(make_call(new))).status == 200
        assert tried == ["fn/app:2"], "no retry before UPDATE_RETRY_S"
        clock.advance(UPDATE_RETRY_S)
        with anyio.fail_after(5):  # retried in no real time
            while len(tried) < 2:
                await agent.update(new)
                await anyio.sleep(0.005)
        assert tried == ["fn/app:2"] * 2


async def test_call_and_launch_durations_are_on_the_agent_clock() -> None:
    clock = ManualClock()

    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        clock.advance(2.5)
        return Answer()

    async with running({"fn/echo": handler_of(slow)}, clock=clock) as (agent, _):
        result = await agent.submit(make_call(make_fn()))
        assert result.status == 200 and result.duration_s == 2.5


async def test_a_config_round_trip_during_a_call_serves_the_next_calls() -> None:
    gate = anyio.Event()

    async def config(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"slow":
            await gate.wait()
        return Answer(body=ctx.task.env_vars.get("K", "-").encode())

    async with running({"fn/echo": handler_of(config)}) as (agent, driver):
        a, b = make_fn(config={"K": "a"}, timeout_s=2), make_fn(config={"K": "b"}, timeout_s=2)
        slow: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_into, agent, make_call(a, b"slow"), slow)
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the slow call running")
            await agent.update(b)
            await agent.update(a)  # back to a while the slow call still runs on a
            during = await agent.submit(make_call(a, b"quick"))
            gate.set()
        assert (during.status, during.body) == (200, b"a"), during.body
        assert (slow[0].status, slow[0].body) == (200, b"a")
        for _ in range(3):
            after = await agent.submit(make_call(a))
            assert (after.status, after.body) == (200, b"a"), after.body


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("update", (200, "b")),
        ("forget", (404, "the function was deleted while the call waited for a container")),
    ],
)
async def test_a_drained_version_whose_containers_died_sends_its_waiters_on_and_goes(
    change: str, expected: tuple[int, str]
) -> None:
    gate = anyio.Event()

    async def config(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"crash":
            await gate.wait()
            return Answer(exit_code=1)
        return Answer(body=ctx.task.env_vars.get("K", "-").encode())

    async with running({"fn/echo": handler_of(config)}, hot_launch_patience_ms=60_000) as (
        agent,
        driver,
    ):
        a, b = make_fn(config={"K": "a"}, timeout_s=2), make_fn(config={"K": "b"}, timeout_s=2)
        assert (await agent.submit(make_call(a))).status == 200  # a short call is known
        (old,) = agent.queues
        old.launch_time_s = 0.5  # a real launch: far longer than a call, so the next call waits
        waited: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(a, b"crash"))
            await poll(lambda: not old.idle, "the container busy")
            tg.start_soon(submit_into, agent, make_call(a, b"wait"), waited)
            await poll(lambda: len(old.waiters) == 1, "a waiter on a")
            # a drains (b serves the fn, or it was deleted): its container serves the waiter
            if change == "update":
                await agent.update(b)
            else:
                agent.forget(a.id)
            gate.set()  # ... but dies instead
        got = waited[0]
        assert (got.status, got.body.decode() if got.status == 200 else message(got)) == expected
        await poll(
            lambda: old.key not in {q.key for q in agent.queues}, "the drained queue dropped"
        )


async def test_forgetting_a_fn_lets_its_calls_finish_then_removes_its_containers() -> None:
    gate = anyio.Event()

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"hold":
            await gate.wait()
        return Answer(body=b"done")

    async with running({"fn/echo": handler_of(held)}) as (agent, driver):
        fn = make_fn()
        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_into, agent, make_call(fn, b"hold"), results)
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the call running")
            tg.start_soon(submit_into, agent, make_call(fn, b"hold"), results)  # one more busy
            await poll(lambda: agent.containers("fn1")["running"] == 2, "two calls running")
            agent.forget(fn.id)  # its fn or app was deleted
            await anyio.sleep(0.1)  # time for a wrong removal of the busy containers
            gate.set()
        assert [(r.status, r.body) for r in results] == [(200, b"done")] * 2
        await poll(lambda: driver.live() == [], "the containers removed after their calls")
        assert agent.queues == []


# -- shutdown ---------------------------------------------------------------------------------


async def test_leaving_lets_calls_in_flight_finish_and_refuses_new_ones() -> None:
    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(0.3)
        return Answer(body=b"done")

    results: list[CallResult] = []
    config = AgentConfig(
        instance_id="unit", iofs_path=tempfile.mkdtemp(prefix="fnagent-unit-"), iofs_size_bytes=0
    )
    async with FakeDriver(images={"fn/echo": handler_of(slow)}) as driver:
        agent = Agent(driver, config, budget=ROOMY, stop_grace_s=5)
        fn = make_fn()

        async def one() -> None:
            results.append(await agent.submit(make_call(fn)))

        async with anyio.create_task_group() as callers:
            async with agent:
                for _ in range(3):
                    callers.start_soon(one)
                await poll(lambda: agent.containers("fn1")["running"] == 3, "three busy")
            # Left: the three calls finished first, then every container was removed.
            assert [r.status for r in results] == [200, 200, 200]
            assert driver.live() == []
            late = await agent.submit(make_call(fn))
        assert late.status == 503


async def test_calls_longer_than_the_sampling_interval_carry_stats() -> None:
    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(float(request.body))
        return Answer()

    async with running({"fn/echo": handler_of(slow)}) as (agent, _):
        fn = make_fn(memory_mb=96)
        quick = await agent.submit(make_call(fn, b"0"))
        assert quick.stats == []
        long = await agent.submit(make_call(fn, b"1.3"))
        assert long.stats and long.stats[0].metrics["mem_usage"] == 96 * MIB


async def test_a_call_arriving_during_a_freeze_waits_for_it_and_thaws() -> None:
    clock = ManualClock()  # the idle timers never fire by themselves here
    async with running({"fn/echo": http_function()}, clock=clock) as (agent, driver):
        fn = make_fn()
        await agent.submit(make_call(fn))
        (container,) = driver.containers.values()
        (queue,) = agent.queues
        hot = queue.idle[-1]
        assert hot.cookie is not None
        # The idle policy mid-freeze: it holds the lock and Docker paused the container, but
        # the pause's answer (and so `frozen`) has not come back yet.
        await hot.lock.acquire()
        await hot.cookie.freeze()
        results: list[CallResult] = []

        async def submit() -> None:
            results.append(await agent.submit(make_call(fn, b"during")))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(submit)
                await anyio.sleep(0.05)
                assert not results
                hot.frozen = True
                hot.lock.release()
        assert (results[0].start, results[0].body) == ("thawed", b"during")
        assert container.state == "running"


# -- the socket root ------------------------------------------------------------------------


async def test_a_removed_socket_root_is_made_again_and_a_failed_one_leaks_no_start() -> None:
    async with running({"fn/echo": http_function()}) as (agent, _):
        shutil.rmtree(agent.socket_root)
        cold = await agent.submit(make_call(make_fn(id="fn1")))
        assert (cold.status, cold.start) == (200, "cold")
        # A root that cannot be made (a file stands there): that launch fails cleanly...
        shutil.rmtree(agent.socket_root)
        await anyio.Path(agent.socket_root).write_text("not a directory")
        failed = await agent.submit(make_call(make_fn(id="fn2", name="other")))
        assert failed.status == 500 and "cannot make the socket dir" in message(failed)
        await poll(lambda: agent.containers("fn2")["starting"] == 0, "no start left counted")
        # ...and once the root can be made again, the same fn serves.
        os.unlink(agent.socket_root)
        again = await agent.submit(make_call(make_fn(id="fn2", name="other")))
        assert again.status == 200, again.body
    assert not await anyio.Path(agent.socket_root).exists(), "a clean exit removes the socket root"


async def test_a_call_cancelled_while_its_container_thaws_leaves_no_container_busy() -> None:
    """A caller gone while its frozen container is being thawed: that container is doomed (it
    may be half-thawed), never left taken with nobody to release it."""
    async with running({"fn/echo": http_function()}, unfreeze_delay_s=0.5) as (agent, _):
        fn = make_fn()
        assert (await agent.submit(make_call(fn, b""))).status == 200
        (queue,) = agent.queues
        await poll(lambda: bool(queue.idle) and queue.idle[-1].frozen, "the container frozen")
        with anyio.move_on_after(0.1):
            await agent.submit(make_call(fn, b""))  # the caller goes away mid-thaw
        await poll(
            lambda: all(c in queue.idle or c.doomed for c in queue.containers),
            "no container taken and left busy",
        )
        assert (await agent.submit(make_call(fn, b""))).status == 200


# -- secrets ----------------------------------------------------------------------------------


async def test_a_fns_secrets_are_its_containers_files_and_a_new_value_a_new_container() -> None:
    from fnagent.models import SecretFile

    async def read_secret(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(
            body=ctx.files.get("/run/secrets/token", b"none") + b"|" + repr(ctx.env).encode()
        )

    async with running({"fn/echo": handler_of(read_secret)}) as (agent, driver):
        first = make_fn(secrets=(SecretFile(name="token", value=b"s3cr3t-1", digest="d1"),))
        result = await agent.submit(make_call(first))
        assert result.status == 200 and result.body.startswith(b"s3cr3t-1|")
        assert b"s3cr3t" not in result.body.partition(b"|")[2]  # not in the environment
        (container,) = driver.containers.values()
        assert "s3cr3t" not in repr(container.options)

        # A new value (a new digest) is a new version: a new container; the old one drains.
        second = make_fn(secrets=(SecretFile(name="token", value=b"s3cr3t-2", digest="d2"),))
        result = await agent.submit(make_call(second))
        assert result.status == 200 and result.body.startswith(b"s3cr3t-2|")
        assert result.start == "cold"
        await poll(lambda: len(driver.live()) == 1, "the old version drained")

        plain = make_fn(id="fn2", name="plain")
        result = await agent.submit(make_call(plain))
        assert result.body.startswith(b"none|")
