"""Per-fn limits on the fake driver: ``fnagent.io/max-concurrency`` (the gate's order and
deadline, 429 with Retry-After, the limit counted across versions, min_hot, eviction) and
``fnagent.io/init-timeout-ms`` (the start timeout for that fn)."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from drivers.fake import ProgramContext
from fnagent.agent import CallResult
from fnagent.agent.admission import Budget
from fnagent.agent.concurrency import Concurrency, limit_blocks, retry_after_s
from fnagent.agent.slots import SlotQueue
from fnagent.errors import InvalidInputError
from fnagent.models import Fn
from fnagent.server.invoke import error_answer
from fnagent.testing.fakefn import Answer, Request, http_function
from tests.helpers import poll
from tests.unit.helpers import MIB, Hold, handler_of, make_call, make_fn, message, running

pytestmark = pytest.mark.anyio

LIMIT = "fnagent.io/max-concurrency"
INIT = "fnagent.io/init-timeout-ms"


def limited(limit: Any = 1, **fields: Any) -> Fn:
    annotations = {LIMIT: limit, **fields.pop("annotations", {})}
    return make_fn(annotations=annotations, **fields)


def waiting(queue: SlotQueue, count: int) -> bool:
    return len(queue.waiters) == count


async def submit_into(agent: Any, call: Any, results: list[CallResult]) -> None:
    results.append(await agent.submit(call))


# -- the gate ---------------------------------------------------------------------------------


async def test_max_concurrency_1_serves_every_call_in_arrival_order_on_one_container() -> None:
    gate = anyio.Event()
    served: list[bytes] = []

    async def held(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"0":
            await gate.wait()
        served.append(request.body)
        return Answer(body=request.body)

    async with running({"fn/echo": handler_of(held)}) as (agent, driver):
        fn = limited(1)
        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_into, agent, make_call(fn, b"0"), results)
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the first call busy")
            (queue,) = agent.queues
            for i in range(1, 6):
                tg.start_soon(submit_into, agent, make_call(fn, str(i).encode()), results)
                # Arrival order: each call waits before the next one comes.
                await poll(functools.partial(waiting, queue, i), f"call {i} waiting")
            assert agent.containers("fn1") == {"running": 1, "frozen": 0, "starting": 0}
            gate.set()
        assert served == [str(i).encode() for i in range(6)]
        assert all(r.status == 200 for r in results)
        assert len(driver.containers) == 1


async def test_max_concurrency_n_keeps_at_most_n_containers_and_serves_all() -> None:
    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(0.05)
        return Answer(body=request.body)

    async with running({"fn/echo": handler_of(slow)}) as (agent, driver):
        # The `fn` CLI sends "2" for --annotation 'fnagent.io/max-concurrency="2"'.
        fn = limited("2")
        results: list[CallResult] = []
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, len(driver.live()))
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as outer:
            outer.start_soon(watch)
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(submit_into, agent, make_call(fn, str(i).encode()), results)
            outer.cancel_scope.cancel()
        assert sorted(r.body for r in results) == sorted(str(i).encode() for i in range(8))
        assert len(driver.containers) == 2
        assert most <= 2


async def test_a_call_that_waits_for_the_limit_until_its_deadline_is_429_with_retry_after() -> None:
    hold = Hold()
    async with running({"fn/echo": hold.program}) as (agent, driver):
        fn = limited(1, timeout_s=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.submit, make_call(limited(1), b"hold"))
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the first call busy")
            result = await agent.submit(make_call(fn, b"late"))
            assert agent.queues[0].waiters == type(agent.queues[0].waiters)()  # it left
            hold.gate.set()
        assert result.status == 429
        assert message(result) == "Too many requests submitted"
        assert result.error is not None
        headers, _ = error_answer(result.error)
        assert any(name == b"retry-after" and int(value) >= 1 for name, value in headers)
        assert len(driver.containers) == 1


async def test_a_call_whose_own_launch_is_slow_times_out_504_not_429() -> None:
    # The limit never held it back: its own container was starting.
    slow_start = http_function(listen_delay_s=10)
    async with running({"fn/echo": slow_start}, hot_start_timeout_ms=60_000) as (agent, _):
        result = await agent.submit(make_call(limited(1, timeout_s=1)))
        assert result.status == 504


async def test_the_limit_counts_the_draining_containers_of_an_old_version() -> None:
    gate = anyio.Event()

    async def config(request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"hold":
            await gate.wait()
        return Answer(body=ctx.task.env_vars.get("K", "-").encode())

    async with running({"fn/echo": handler_of(config)}) as (agent, driver):
        old, new = limited(1, config={"K": "a"}), limited(1, config={"K": "b"})
        results: list[CallResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_into, agent, make_call(old, b"hold"), results)
            await poll(lambda: agent.containers("fn1")["running"] == 1, "the old version busy")
            # Same image: the very next call switches to the new version; the old one drains.
            tg.start_soon(submit_into, agent, make_call(new, b"next"), results)
            await poll(lambda: agent.serving_version("fn1") == new.version_key, "the switch")
            queue = next(q for q in agent.queues if q.key == new.version_key)
            await poll(lambda: len(queue.waiters) == 1, "the new version's call waiting")
            await anyio.sleep(0.1)
            assert len(driver.containers) == 1, "the old version's container counts"
            gate.set()
        assert sorted((r.status, r.body) for r in results) == [(200, b"a"), (200, b"b")]
        assert len(driver.containers) == 2  # one after the other
        await poll(lambda: len(driver.live()) == 1, "the old container drained")


async def test_min_hot_above_max_concurrency_is_400() -> None:
    async with running({"fn/echo": http_function()}) as (agent, _):
        fn = limited(2)
        with pytest.raises(InvalidInputError, match=r"at most 2 \(fnagent.io/max-concurrency=2\)"):
            agent.scale(fn, 3)
        agent.scale(fn, 2)
        await poll(lambda: agent.containers("fn1")["frozen"] == 2, "two frozen containers")
        agent.scale(fn, 0)


async def test_an_update_lowering_max_concurrency_clamps_min_hot() -> None:
    async with running({"fn/echo": http_function()}) as (agent, driver):
        agent.scale(limited(3), 3)
        await poll(lambda: agent.containers("fn1")["frozen"] == 3, "three frozen containers")
        lowered = limited(1)
        assert (await agent.submit(make_call(lowered))).status == 200
        assert agent.min_hot("fn1") == 1
        await poll(lambda: len(driver.live()) == 1, "the old version's containers drained")
        agent.scale(lowered, 0)


async def test_a_kept_minimum_moves_to_a_new_version_within_the_limit() -> None:
    async with running({"fn/echo": http_function()}) as (agent, driver):
        old, new = limited(2, config={"K": "a"}), limited(2, config={"K": "b"})
        agent.scale(old, 2)
        await poll(lambda: agent.containers("fn1")["frozen"] == 2, "two frozen containers")
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, len(driver.live()))
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            assert (await agent.submit(make_call(new))).status == 200
            # The old version's two count until removed; then the minimum fills the new one.
            await poll(
                lambda: (
                    [len(q.containers) for q in agent.queues] == [2]
                    and agent.queues[0].key == new.version_key
                    and len(driver.live()) == 2
                ),
                "the minimum on the new version alone",
            )
            tg.cancel_scope.cancel()
        assert most <= 2
        assert agent.min_hot("fn1") == 2
        agent.scale(new, 0)


async def test_an_evicted_container_frees_its_place_under_the_limit() -> None:
    async def which(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(body=ctx.task.image.encode())

    images = {"fn/a": handler_of(which), "fn/b": handler_of(which)}
    async with running(images, budget=Budget(256 * MIB, 2000)) as (agent, driver):
        fn_a = limited(1, image="fn/a", id="a", memory_mb=128, timeout_s=2)
        fn_b = make_fn("fn/b", id="b", memory_mb=256)
        assert (await agent.submit(make_call(fn_a))).status == 200  # a idle
        # b needs the whole budget: a's idle container is evicted for it.
        assert (await agent.submit(make_call(fn_b))).status == 200
        # a's place is free again once its container is gone: a's call launches (evicting b),
        # where a count that missed the eviction would hold it until its deadline (429).
        again = await agent.submit(make_call(fn_a))
        assert (again.status, again.body) == (200, b"fn/a")
        assert len(driver.containers) == 3


# -- the pure parts ---------------------------------------------------------------------------


def test_limit_blocks_only_a_waiter_no_launch_is_headed_for() -> None:
    # Waiters are served in order: the first ``starting`` get the launches under way.
    assert limit_blocks(position=0, starting=1, room=0) is False
    assert limit_blocks(position=1, starting=1, room=0) is True
    assert limit_blocks(position=0, starting=0, room=0) is True
    assert limit_blocks(position=3, starting=0, room=None) is False  # no limit
    assert limit_blocks(position=3, starting=0, room=1) is False  # room: not the limit


def test_retry_after_grows_with_the_queue_and_stays_bounded() -> None:
    assert retry_after_s(call_time_s=None, waiters=0, limit=1) == 1
    assert retry_after_s(call_time_s=2.0, waiters=3, limit=1) == 8
    assert retry_after_s(call_time_s=2.0, waiters=3, limit=4) == 2
    assert retry_after_s(call_time_s=1000.0, waiters=100, limit=1) == 60


def test_concurrency_counts_containers_per_fn() -> None:
    counts = Concurrency()
    fn, free = limited(2), make_fn(id="other")
    assert (counts.room(fn), counts.room(free)) == (2, None)
    counts.added(fn.id)
    counts.added(fn.id)
    counts.added(free.id)
    assert (counts.room(fn), counts.room(free), counts.existing(free.id)) == (0, None, 1)
    counts.removed(fn.id)
    assert counts.room(fn) == 1
    assert repr(counts) == "<Concurrency fns=2 containers=2>"


# -- fnagent.io/init-timeout-ms ---------------------------------------------------------------


async def test_init_timeout_annotation_lets_a_slow_starter_start() -> None:
    slow_start = http_function(listen_delay_s=0.5)
    async with running({"fn/echo": slow_start}, hot_start_timeout_ms=200) as (agent, _):
        assert (await agent.submit(make_call(make_fn(annotations={INIT: 3000})))).status == 200
        result = await agent.submit(make_call(make_fn(id="fn2", name="other")))
        assert result.status == 504
        assert "timed out after 0.2 s" in message(result)


async def test_init_timeout_annotation_can_shorten_the_start_timeout() -> None:
    slow_start = http_function(listen_delay_s=1)
    async with running({"fn/echo": slow_start}, hot_start_timeout_ms=5000) as (agent, _):
        result = await agent.submit(make_call(make_fn(annotations={INIT: "100"})))
        assert result.status == 504
        assert "timed out after 0.1 s" in message(result)


@pytest.mark.parametrize(
    ("annotations", "match"),
    [
        ({LIMIT: 0}, "fnagent.io/max-concurrency must be an integer >= 1"),
        ({LIMIT: "many"}, "fnagent.io/max-concurrency must be an integer >= 1"),
        ({INIT: 99}, "fnagent.io/init-timeout-ms must be an integer from 100 to 300000"),
        ({INIT: 300_001}, "fnagent.io/init-timeout-ms must be an integer from 100 to 300000"),
    ],
)
def test_a_fn_with_a_bad_limit_cannot_be_made(annotations: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        make_fn(annotations=annotations)
