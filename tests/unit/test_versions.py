"""Version routing (fnagent/agent/versions.py) as bookkeeping: no agent, no driver.

Async only because containers and waiters hold anyio events."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fnagent.agent.calllogs import OutputRouter
from fnagent.agent.httpclient import UnixHTTPConnection
from fnagent.agent.slots import HotContainer, SlotQueue, State, Waiter
from fnagent.agent.sockdir import SocketDir
from fnagent.agent.versions import Moves, Versions
from fnagent.models import Fn

pytestmark = pytest.mark.anyio

_names = (f"c{n}" for n in itertools.count())


def make_fn(image: str = "fn/echo:1", **fields: Any) -> Fn:
    values: dict[str, Any] = dict(id="fn1", name="echo", app_id="app1", app_name="app")
    values.update(fields)
    return Fn(image=image, **values)


def versions(bound: int = 10) -> Versions:
    return Versions(min_hot_bound=lambda fn: bound)


def container(queue: SlotQueue, *, idle: bool = True) -> HotContainer:
    """A launched container of ``queue`` (objects only: nothing is made on disk)."""
    name = next(_names)
    socket_dir = SocketDir(f"/nonexistent/{name}")
    made = HotContainer(
        name=name,
        fn=queue.fn,
        socket_dir=socket_dir,
        router=OutputRouter(name, {}),
        connection=UnixHTTPConnection(socket_dir.listener),
    )
    queue.containers.add(made)
    if idle:
        queue.release(made, 0.0)
    else:
        made.state = State.BUSY
    return made


def routed_queue(table: Versions, fn: Fn) -> SlotQueue:
    routed = table.route(fn)
    if isinstance(routed, Moves):
        assert routed.queue is not None
        return routed.queue
    return routed


async def test_a_first_call_makes_the_queue_then_calls_get_it_without_moves() -> None:
    table, fn = versions(), make_fn()
    first = table.route(fn)
    assert isinstance(first, Moves) and first.queue is not None
    assert (first.prepare, first.doom, first.fill) == (None, [], None)
    assert table.route(fn) is first.queue, "the usual case is the queue itself"
    assert table.serving_version("fn1") == fn.version_key


async def test_a_new_image_is_prepared_once_while_the_old_version_serves() -> None:
    table, old = versions(), make_fn("fn/echo:1")
    queue = routed_queue(table, old)
    new = make_fn("fn/echo:2")
    moves = table.route(new)
    assert isinstance(moves, Moves)
    assert (moves.queue, moves.prepare) == (queue, new)
    again = table.route(new)
    assert isinstance(again, Moves) and again.prepare is None, "one pull at a time"
    assert table.serving_version("fn1") == old.version_key


async def test_prepared_switches_and_the_old_version_drains() -> None:
    table, old = versions(), make_fn("fn/echo:1")
    queue = routed_queue(table, old)
    queue.min_hot = 3
    idle, busy = container(queue), container(queue, idle=False)
    new = make_fn("fn/echo:2")
    table.route(new)
    moves = table.prepared(new)
    assert moves is not None and moves.queue is not None
    assert moves.doom == [idle] and idle.doomed and not queue.idle
    assert not busy.doomed, "a busy container finishes its call"
    assert queue.draining and moves.fill is moves.queue
    assert moves.queue.min_hot == 3 and table.serving_version("fn1") == new.version_key
    assert table.route(new) is moves.queue


async def test_the_minimum_carries_over_within_the_new_bound() -> None:
    table, old = versions(bound=1), make_fn("fn/echo:1")
    routed_queue(table, old).min_hot = 3
    moves = table.route(make_fn("fn/echo:1", memory_mb=512))  # same image: switches at once
    assert isinstance(moves, Moves) and moves.queue is not None
    assert moves.queue.min_hot == 1


async def test_a_late_pull_does_not_switch_back_to_an_older_version() -> None:
    table, v1 = versions(), make_fn("fn/echo:1")
    routed_queue(table, v1)
    v2, v3 = make_fn("fn/echo:2"), make_fn("fn/echo:3")
    table.route(v2)
    table.route(v3)
    assert table.prepared(v2) is None
    assert table.serving_version("fn1") == v1.version_key
    assert table.prepared(v3) is not None
    assert table.serving_version("fn1") == v3.version_key


async def test_a_failed_pull_is_recorded_and_retried_only_after_may_retry() -> None:
    table, v1, v2 = versions(), make_fn("fn/echo:1"), make_fn("fn/echo:2")
    routed_queue(table, v1)
    table.route(v2)
    table.prepare_failed(v2, "pull access denied")
    assert table.update_errors == {"fn1": "pull access denied"}
    moves = table.route(v2)
    assert isinstance(moves, Moves) and moves.prepare is None
    table.may_retry(v2)
    moves = table.route(v2)
    assert isinstance(moves, Moves) and moves.prepare == v2
    table.prepared(v2)
    assert table.update_errors == {}


async def test_a_draining_version_routed_to_again_serves_again() -> None:
    table, v1 = versions(), make_fn("fn/echo:1")
    old = routed_queue(table, v1)
    container(old, idle=False)  # keeps the draining queue in the table
    table.route(make_fn("fn/echo:1", memory_mb=256))
    assert old.draining
    moves = table.route(v1)
    assert isinstance(moves, Moves) and moves.queue is old and not old.draining


async def test_settling_sends_stranded_waiters_on_and_drops_the_empty_queue() -> None:
    table, v1 = versions(), make_fn("fn/echo:1")
    old = routed_queue(table, v1)
    busy = container(old, idle=False)
    table.route(make_fn("fn/echo:1", memory_mb=256))
    waiter = Waiter()
    old.waiters.append(waiter)
    moves = table.settle(old)
    assert moves is not None and (moves.retry, moves.dropped) == ([], []), "the busy one serves"
    old.discard(busy)  # its last container died mid-call: nothing here serves the waiter
    moves = table.settle(old)
    assert moves is not None
    assert (moves.retry, moves.deleted, moves.dropped) == ([waiter], [], [old])
    assert not old.waiters and old not in list(table.queues)


async def test_forget_drains_every_queue_and_fails_stranded_waiters() -> None:
    table, v1 = versions(), make_fn("fn/echo:1")
    queue = routed_queue(table, v1)
    queue.min_hot = 2
    idle = container(queue)
    waiter = Waiter()
    queue.waiters.append(waiter)
    moves = table.forget("fn1")
    assert moves.doom == [idle] and queue.min_hot == 0
    assert (moves.deleted, moves.retry, moves.dropped) == ([waiter], [], [])
    assert table.serving_version("fn1") is None
    queue.discard(idle)  # its life task removed it: the queue is settled again, and dropped
    settled = table.settle(queue)
    assert settled is not None and settled.dropped == [queue] and len(table) == 0


async def test_settling_a_serving_queue_does_nothing() -> None:
    table = versions()
    assert table.settle(routed_queue(table, make_fn())) is None
