"""Detached calls in process: the 202 path of /invoke and /t (and its 400/404 answers), and the
dispatcher's state machine on an in-memory store (queued -> running -> done; retries with
backoff; an expired lease; a restart taking its calls back; drain; callbacks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest

from fnagent.agent import CallResult
from fnagent.config import DetachedConfig
from fnagent.errors import (
    FnAgentError,
    FunctionTimeoutError,
    NotFoundError,
    ServerBusyError,
    StartTimeoutError,
)
from fnagent.models import Call, Fn
from fnagent.server.callback import check_callback_url, post_callback
from fnagent.server.detached import Dispatcher, Submitter
from fnagent.server.invoke import agent_fn
from fnagent.store import SQLiteStore
from fnagent.store import queue as q
from fnagent.store.queue import QueuedCall
from fnagent.testing.fakefn import Answer, Request
from fnagent.testing.store_conformance import FakeClock, app_fn_trigger, queued_call
from tests.apitest import make_state, request
from tests.helpers import poll
from tests.unit.helpers import handler_of, running

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:", clock=FakeClock()) as opened:
        yield opened


# --- the 202 path --------------------------------------------------------------------------


async def test_a_detached_invoke_answers_202_once_the_call_is_queued(store: SQLiteStore) -> None:
    app, fn, _ = await app_fn_trigger(store)
    state = make_state(store)
    headers = [
        (b"fn-invoke-type", b"detached"),
        (b"fn-callback-url", b"http://127.0.0.1:9/done?x=1"),
        (b"content-type", b"text/plain"),
    ]
    status, answer, body = await request(
        state, "POST", f"/invoke/{fn.id}", b"payload", headers=headers, query=b"q=1"
    )
    assert (status, body, answer[b"content-length"]) == (202, b"", b"0")
    row = await store.get_queued_call(answer[b"fn-call-id"].decode())
    assert (row.fn_id, row.app_id, row.trigger, row.status) == (fn.id, app.id, False, q.QUEUED)
    assert (row.method, row.url, row.body) == (
        "POST",
        f"http://127.0.0.1:8080/invoke/{fn.id}?q=1",
        b"payload",
    )
    assert row.callback_url == "http://127.0.0.1:9/done?x=1"
    # The function gets the caller's headers, but not where the caller wants the result.
    assert ("fn-invoke-type", "detached") in row.headers
    assert ("content-type", "text/plain") in row.headers
    assert not any(name == "fn-callback-url" for name, _ in row.headers)


async def test_a_detached_trigger_call_is_queued_with_its_method(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    state = make_state(store)
    status, answer, _ = await request(
        state, "PUT", "/t/app/t", b"x", headers=[(b"fn-invoke-type", b"Detached")]
    )
    assert status == 202
    row = await store.get_queued_call(answer[b"fn-call-id"].decode())
    assert (row.fn_id, row.trigger, row.method, row.callback_url) == (fn.id, True, "PUT", None)


async def test_unknown_fns_and_triggers_are_404_never_202(store: SQLiteStore) -> None:
    await app_fn_trigger(store)
    state = make_state(store)
    detached = [(b"fn-invoke-type", b"detached")]
    for path, message in [
        ("/invoke/nope", "Fn not found"),
        ("/t/app/nope", "Trigger not found"),
        ("/t/nope/t", "App not found"),
    ]:
        status, _, body = await request(state, "POST", path, headers=detached)
        assert (status, json.loads(body)) == (404, {"message": message})
    assert await store.count_queued() == 0


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([(b"fn-invoke-type", b"async")], "invalid Fn-Invoke-Type 'async'"),
        ([(b"fn-invoke-type", b"detached"), (b"fn-callback-url", b"ftp://h/x")], "http://"),
        ([(b"fn-invoke-type", b"detached"), (b"fn-callback-url", b"http:///x")], "no host"),
        ([(b"fn-invoke-type", b"detached"), (b"fn-callback-url", b"/relative")], "http://"),
        ([(b"fn-invoke-type", b"detached"), (b"fn-callback-url", b"http://h:99999/")], "range"),
        ([(b"fn-invoke-type", b"detached"), (b"fn-callback-url", b"http://h/\xff")], "ASCII"),
    ],
)
async def test_bad_detached_headers_are_400_with_a_message(
    store: SQLiteStore, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    _, fn, _ = await app_fn_trigger(store)
    status, _, body = await request(make_state(store), "POST", f"/invoke/{fn.id}", headers=headers)
    assert status == 400 and message in json.loads(body)["message"]
    assert await store.count_queued() == 0


async def test_a_detached_body_over_the_limit_is_413_and_not_queued(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    state = make_state(store, max_request_bytes=4)
    status, _, _ = await request(
        state, "POST", f"/invoke/{fn.id}", b"12345", headers=[(b"fn-invoke-type", b"detached")]
    )
    assert status == 413 and await store.count_queued() == 0


def test_callback_urls_are_checked() -> None:
    assert (
        check_callback_url("https://example.com:8443/cb?a=b") == "https://example.com:8443/cb?a=b"
    )
    assert check_callback_url("http://[::1]:9/") == "http://[::1]:9/"


# --- the dispatcher --------------------------------------------------------------------------


@dataclass
class Observed:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: dict[str, tuple[int, int, str | None]] = field(default_factory=dict)
    """By call id: the attempt, HTTP status and error message it finished with."""

    def queued(
        self, call_id: str, fn: Fn, at: float, *, created_at: float, attempts: int = 0
    ) -> None:
        self.events.append(("queued", call_id, at))

    def running(self, call_id: str, fn: Fn, attempt: int, at: float, *, created_at: float) -> None:
        self.events.append(("running", call_id, attempt))

    def finished(
        self,
        call_id: str,
        fn: Fn | None,
        attempt: int,
        result: CallResult,
        *,
        created_at: float,
    ) -> None:
        self.events.append(("finished", call_id, attempt, result.status))
        error = result.error.message if result.error is not None else None
        self.outcomes[call_id] = (attempt, result.status, error)


class ScriptedAgent:
    """Answers each call with the next of ``answers`` (a status, or an error), then 200;
    waits for ``gate`` first when one is set."""

    def __init__(self, *answers: int | FnAgentError) -> None:
        self.answers = list(answers)
        self.calls: list[Call] = []
        self.gate: anyio.Event | None = None

    async def submit(self, call: Call) -> CallResult:
        self.calls.append(call)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, FnAgentError):
            return CallResult(call_id=call.id, status=answer.status, error=answer)
        return CallResult(
            call_id=call.id,
            status=answer,
            headers=[("Content-Type", "text/plain")],
            body=b"done " + call.request.body,
        )


class Clock:
    """Unix seconds the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


FAST = DetachedConfig(poll_ms=10, backoff_ms=1000, max_attempts=3, lease_ms=30_000)


def make_dispatcher(
    store: SQLiteStore,
    agent: Submitter,
    *,
    clock: Callable[[], float] | None = None,
    owner: str = "me",
    config: DetachedConfig = FAST,
    observer: Observed | None = None,
    hot: Callable[[], set[str]] | None = None,
) -> Dispatcher:
    async def lookup(fn_id: str) -> Fn:
        record = await store.get_fn(fn_id)
        return agent_fn(await store.get_app(record.app_id), record)

    return Dispatcher(
        store=store,
        agent=agent,
        lookup=lookup,
        config=config,
        owner=owner,
        observer=observer if observer is not None else Observed(),
        clock=clock or Clock(),
        hot=hot,
    )


@asynccontextmanager
async def dispatching(
    store: SQLiteStore, agent: Submitter, **kwargs: Any
) -> AsyncIterator[Dispatcher]:
    async with make_dispatcher(store, agent, **kwargs) as dispatcher:
        yield dispatcher


async def row_when(
    store: SQLiteStore, call_id: str, check: Callable[[QueuedCall], bool], what: str
) -> QueuedCall:
    found: list[QueuedCall] = []

    async def probe() -> bool:
        found[:] = [await store.get_queued_call(call_id)]
        return check(found[0])

    with anyio.fail_after(5):
        while not await probe():
            await anyio.sleep(0.005)
    assert found, what
    return found[0]


def is_(status: str) -> Callable[[QueuedCall], bool]:
    return lambda row: row.status == status


async def finished(dispatcher: Dispatcher, call_id: str) -> tuple[int, int, str | None]:
    """Once the call finished: the attempt, HTTP status and error it finished with (as its
    record has them); it has left the queue."""
    observer = dispatcher.observer
    assert isinstance(observer, Observed)
    await poll(lambda: call_id in observer.outcomes, f"{call_id} finished")
    with pytest.raises(NotFoundError, match="Call not found"):
        await dispatcher.store.get_queued_call(call_id)
    return observer.outcomes[call_id]


async def test_a_call_goes_queued_running_done_through_the_agent(store: SQLiteStore) -> None:
    """On the real agent and the fake driver: the same path as a sync call."""
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id, body=b"hello"))
    observed = Observed()

    async def echo(request: Request, ctx: Any) -> Answer:
        return Answer(body=b"echo " + request.body)

    async with running({"fnproject/hello": handler_of(echo)}) as (agent, _):
        async with dispatching(store, agent, observer=observed) as dispatcher:
            assert await finished(dispatcher, "c1") == (1, 200, None)
    assert [e[0] for e in observed.events] == ["running", "finished"]
    assert observed.events[1] == ("finished", "c1", 1, 200)


async def test_a_busy_host_is_retried_with_backoff_then_the_call_fails(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id, at=1000.0))
    agent = ScriptedAgent(ServerBusyError(), ServerBusyError(), ServerBusyError())
    clock, observed = Clock(1000.0), Observed()
    async with dispatching(store, agent, clock=clock, observer=observed) as dispatcher:
        row = await row_when(store, "c1", lambda r: r.attempts == 1 and r.status == q.QUEUED, "")
        assert row.not_before == 1001.0  # backoff_ms after the first run
        assert row.last_error == "503 Timed out - server too busy"
        clock.now = 1000.9
        dispatcher.notify()
        await anyio.sleep(0.05)
        assert len(agent.calls) == 1  # not due yet
        clock.now = 1001.0
        dispatcher.notify()
        row = await row_when(store, "c1", lambda r: r.attempts == 2 and r.status == q.QUEUED, "")
        assert row.not_before == 1003.0  # doubled
        clock.now = 1003.0
        dispatcher.notify()
        gave_up = "gave up after 3 attempts: 503 Timed out - server too busy"
        assert await finished(dispatcher, "c1") == (3, 503, gave_up)
    assert [e[0] for e in observed.events] == ["running", "queued"] * 2 + ["running", "finished"]


async def test_a_call_that_never_got_a_container_is_retried_a_failed_start_is_not(
    store: SQLiteStore,
) -> None:
    # Detached calls start containers one at a time: a wait past the call's timeout is the
    # host's, the function never saw the call. A container that did not listen is the
    # function's, and would fail again.
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("waited", fn_id=fn.id, at=1000.0))
    await store.enqueue_call(queued_call("broken", fn_id=fn.id, at=1000.5))
    waited = FunctionTimeoutError("Timed out waiting for a container")
    agent = ScriptedAgent(waited, StartTimeoutError("Container initialization timed out"))
    clock = Clock(1001.0)
    async with dispatching(store, agent, clock=clock) as dispatcher:
        assert (await finished(dispatcher, "broken"))[:2] == (1, 504)
        row = await row_when(store, "waited", is_(q.QUEUED), "the wait queued again")
        assert row.last_error == "504 Timed out waiting for a container"
        clock.now = row.not_before
        dispatcher.notify()
        assert (await finished(dispatcher, "waited"))[:2] == (2, 200)


async def test_a_function_answering_429_through_a_trigger_is_retried(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id, trigger=True))
    answers = ["429", "200"]

    async def busy_once(request: Request, ctx: Any) -> Answer:
        return Answer(headers={"Fn-Http-Status": answers.pop(0)}, body=b"ok")

    clock = Clock()
    async with running({"fnproject/hello": handler_of(busy_once)}) as (agent, _):
        async with dispatching(store, agent, clock=clock) as dispatcher:
            row = await row_when(
                store, "c1", lambda r: r.attempts == 1 and r.status == q.QUEUED, ""
            )
            assert row.last_error == "the function answered 429"
            clock.now += 1
            dispatcher.notify()
            assert (await finished(dispatcher, "c1"))[:2] == (2, 200)


async def test_a_dead_servers_call_runs_again_when_its_lease_expires(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id))
    await store.lease_calls(owner="dead", limit=1, now=1000.0, lease_s=30)
    agent, clock = ScriptedAgent(), Clock(1010.0)
    async with dispatching(store, agent, clock=clock) as dispatcher:
        await anyio.sleep(0.05)
        assert agent.calls == []  # still the dead server's
        clock.now = 1030.0
        dispatcher.notify()
        assert (await finished(dispatcher, "c1"))[0] == 2


async def test_on_a_shared_store_calls_of_hot_fns_go_first_others_after_the_delay(
    store: SQLiteStore,
) -> None:
    _, cold, _ = await app_fn_trigger(store)
    _, hot, _ = await app_fn_trigger(store, "2")
    await store.enqueue_call(queued_call("cold", fn_id=cold.id, at=1000.0))
    await store.enqueue_call(queued_call("hot", fn_id=hot.id, at=1000.0))
    agent, clock = ScriptedAgent(), Clock(1001.0)
    config = DetachedConfig(poll_ms=10, prefer_hot_ms=5000)
    async with dispatching(
        store, agent, clock=clock, config=config, hot=lambda: {hot.id}
    ) as dispatcher:
        await finished(dispatcher, "hot")
        # Left for an agent that has its fn hot, until it waited the preference's delay.
        assert (await store.get_queued_call("cold")).status == q.QUEUED
        clock.now = 1005.0
        await finished(dispatcher, "cold")
    assert [call.id for call in agent.calls] == ["hot", "cold"]


async def test_a_restart_takes_its_own_running_calls_back_at_once(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id))
    await store.lease_calls(owner="me", limit=1, now=1000.0, lease_s=300)
    async with dispatching(store, ScriptedAgent(), clock=Clock(1001.0)) as dispatcher:
        assert (await finished(dispatcher, "c1"))[0] == 2


async def test_a_call_of_a_deleted_fn_fails_with_the_reason(store: SQLiteStore) -> None:
    await store.enqueue_call(queued_call("c1", fn_id="gone"))
    agent = ScriptedAgent()
    async with dispatching(store, agent) as dispatcher:
        assert await finished(dispatcher, "c1") == (1, 404, "Fn not found")
    assert agent.calls == []


async def test_at_most_concurrency_calls_run_and_stop_leaves_the_queued_ones(
    store: SQLiteStore,
) -> None:
    _, fn, _ = await app_fn_trigger(store)
    for i in range(5):
        await store.enqueue_call(queued_call(f"c{i}", fn_id=fn.id, at=1000.0 + i))
    agent = ScriptedAgent()
    agent.gate = anyio.Event()
    config = DetachedConfig(poll_ms=10, concurrency=2)
    async with dispatching(store, agent, clock=Clock(2000.0), config=config) as dispatcher:
        await poll(lambda: len(agent.calls) == 2, "two calls running")
        await anyio.sleep(0.05)
        assert len(agent.calls) == 2
        dispatcher.stop()  # SIGTERM: no new lease; the running ones finish
        agent.gate.set()
        await poll(lambda: not dispatcher.running, "the running calls done")
    for call_id in ("c0", "c1"):
        await finished(dispatcher, call_id)
    statuses = [(await store.get_queued_call(f"c{i}")).status for i in range(2, 5)]
    assert statuses == [q.QUEUED] * 3


async def test_a_call_still_running_after_the_drain_runs_again_next_start(
    store: SQLiteStore,
) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id))
    agent = ScriptedAgent()
    agent.gate = anyio.Event()  # never set: the call outlives the drain
    config = DetachedConfig(poll_ms=10, drain_ms=50)
    async with dispatching(store, agent, config=config):
        await poll(lambda: agent.calls, "the call running")
    assert (await store.get_queued_call("c1")).status == q.RUNNING
    async with dispatching(store, ScriptedAgent(), config=config) as dispatcher:
        assert (await finished(dispatcher, "c1"))[0] == 2


# --- callbacks -----------------------------------------------------------------------------


@asynccontextmanager
async def receiver(status: int = 200) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP receiver on 127.0.0.1: its URL and the raw requests it got."""
    got: list[bytes] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += await stream.receive()
            got.append(head + b"\r\n\r\n" + body)
            await stream.send(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/hook?k=v", got
        tg.cancel_scope.cancel()


async def test_a_callback_gets_the_result_and_the_call_id(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    async with receiver() as (url, got):
        await store.enqueue_call(queued_call("c1", fn_id=fn.id, body=b"x", callback_url=url))
        async with dispatching(store, ScriptedAgent()):
            await poll(lambda: got, "the callback")
    head, _, body = got[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hook?k=v HTTP/1.1"
    for line in ["Fn-Call-Id: c1", "Fn-Call-Status: success", "Fn-Http-Status: 200"]:
        assert line in lines
    assert "Content-Type: text/plain" in lines and body == b"done x"


async def test_a_failed_calls_callback_carries_the_error(store: SQLiteStore) -> None:
    async with receiver() as (url, got):
        await store.enqueue_call(queued_call("c2", fn_id="gone", callback_url=url))
        async with dispatching(store, ScriptedAgent()):
            await poll(lambda: got, "the callback")
    head, _, body = got[0].partition(b"\r\n\r\n")
    assert b"Fn-Call-Status: error" in head and b"Fn-Http-Status: 404" in head
    assert json.loads(body) == {"message": "Fn not found"}


async def test_a_failing_callback_changes_nothing_and_blocks_no_call(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    config = DetachedConfig(poll_ms=10, concurrency=1, callback_timeout_ms=5000, drain_ms=50)
    async with hanging_receiver() as url:
        for i in range(3):
            await store.enqueue_call(queued_call(f"c{i}", fn_id=fn.id, callback_url=url))
        async with dispatching(store, ScriptedAgent(), config=config) as dispatcher:
            # One call at a time, and each one's callback hangs: the calls still all finish.
            for i in range(3):
                await finished(dispatcher, f"c{i}")
            assert dispatcher.callbacks == 3


@asynccontextmanager
async def hanging_receiver() -> AsyncIterator[str]:
    """A receiver that reads requests and never answers."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/"
        tg.cancel_scope.cancel()


async def test_a_callback_is_retried_then_given_up() -> None:
    async with receiver(status=503) as (url, got):
        status = await post_callback(url, headers=[], body=b"", timeout_s=1, attempts=2)
    assert (status, len(got)) == (None, 2)
    refused = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = refused.extra(anyio.abc.SocketAttribute.local_port)
    await refused.aclose()
    url = f"http://127.0.0.1:{port}/"
    assert await post_callback(url, headers=[], body=b"", timeout_s=1, attempts=1) is None


async def test_a_call_finishing_during_the_drain_still_calls_back(store: SQLiteStore) -> None:
    _, fn, _ = await app_fn_trigger(store)
    agent, gate = ScriptedAgent(), anyio.Event()
    agent.gate = gate
    async with receiver() as (url, got):
        await store.enqueue_call(queued_call("c1", fn_id=fn.id, callback_url=url))

        async def release() -> None:
            await anyio.sleep(0.05)
            gate.set()

        async with anyio.create_task_group() as tg:
            async with dispatching(store, agent) as dispatcher:
                await poll(lambda: agent.calls, "the call running")
                tg.start_soon(release)
            # Leaving it is SIGTERM's drain, with the call still running when it began.
        assert await finished(dispatcher, "c1") == (1, 200, None)
        assert len(got) == 1


async def test_a_bug_in_one_call_ends_neither_the_dispatcher_nor_other_calls(
    store: SQLiteStore,
) -> None:
    _, fn, _ = await app_fn_trigger(store)
    await store.enqueue_call(queued_call("c1", fn_id=fn.id, at=1000.0, body=b"boom"))
    await store.enqueue_call(queued_call("c2", fn_id=fn.id, at=1001.0))

    class Buggy(ScriptedAgent):
        async def submit(self, call: Call) -> CallResult:
            if call.request.body == b"boom":
                raise RuntimeError("a bug")
            return await super().submit(call)

    async with dispatching(store, Buggy(), clock=Clock(2000.0)) as dispatcher:
        await finished(dispatcher, "c2")
    # Left leased: it runs again when the lease expires.
    assert (await store.get_queued_call("c1")).status == q.RUNNING
