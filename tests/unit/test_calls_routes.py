"""The calls routes in process: calls invoked through the server's app on the fake driver are
recorded by the write-behind recorder into an in-memory store, then listed, looked up and their
logs read; pagination, filters, 404s and bad filters; a caller that goes away is cancelled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drivers.fake import ProgramContext
from fnagent.agent import Agent
from fnagent.ids import new_id
from fnagent.records import Recorder
from fnagent.server import calls
from fnagent.server.app import ServerConfig, ServerState
from fnagent.server.metrics import Metrics
from fnagent.server.openapi import document
from fnagent.store import SQLiteStore
from fnagent.store.calls import CallRecord
from fnagent.testing.fakefn import Answer, Request
from tests.apitest import request
from tests.helpers import poll
from tests.unit.helpers import handler_of, running

pytestmark = pytest.mark.anyio


async def behave(request: Request, ctx: ProgramContext) -> Answer:
    what = request.body.decode()
    await ctx.stdout.write(f"out: {what}\n".encode())
    await ctx.stderr.write(f"err: {what}\n".encode())
    if what == "fail":
        return Answer(status=502)
    if what == "hang":
        await ctx.sleep(30)
    return Answer(body=b"done " + request.body)


@dataclass
class Server:
    state: ServerState
    agent: Agent
    recorder: Recorder
    fn_id: str
    app_id: str

    async def get(self, path: str, **headers: str) -> tuple[int, dict[bytes, bytes], bytes]:
        path, _, query = path.partition("?")
        hdrs = [(k.encode(), v.encode()) for k, v in headers.items()]
        return await request(self.state, "GET", path, headers=hdrs, query=query.encode())

    async def json(self, path: str) -> tuple[int, Any]:
        status, _, body = await self.get(path)
        return status, json.loads(body)

    async def invoke(self, body: bytes) -> str:
        status, headers, _ = await request(self.state, "POST", f"/invoke/{self.fn_id}", body)
        assert status in (200, 502), status
        return headers[b"fn-call-id"].decode()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with SQLiteStore(":memory:") as store:
        app = await store.create_app({"name": "app"})
        fn = await store.create_fn({"app_id": app.id, "name": "fn", "image": "fn/echo"})
        async with running({"fn/echo": handler_of(behave)}) as (agent, _):
            async with Recorder(store, flush_interval_s=0.01) as recorder:
                state = ServerState(
                    config=ServerConfig(),
                    store=store,
                    agent=agent,
                    metrics=Metrics(lambda: {}),
                    recorder=recorder,
                )
                yield Server(state, agent, recorder, fn.id, app.id)


async def test_a_call_is_recorded_with_its_log(server: Server) -> None:
    call_id = await server.invoke(b"hello")
    # Looked up at once: served from the recorder's buffer until it is written.
    status, record = await server.json(f"/v2/fns/{server.fn_id}/calls/{call_id}")
    assert status == 200
    assert set(record) == {
        "id",
        "fn_id",
        "app_id",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "http_status",
        "error",
        "start",
        "detached",
        "attempts",
        "timings",
    }
    assert (record["id"], record["fn_id"], record["app_id"]) == (
        call_id,
        server.fn_id,
        server.app_id,
    )
    assert (record["status"], record["http_status"], record["error"]) == ("success", 200, None)
    assert (record["start"], record["detached"], record["attempts"]) == ("cold", False, 1)
    assert set(record["timings"]) == {"queued_ms", "start_ms", "exec_ms"}
    assert record["created_at"] <= record["started_at"] <= record["completed_at"]
    status, headers, log = await server.get(f"/v2/fns/{server.fn_id}/calls/{call_id}/log")
    assert status == 200 and headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"out: hello\n" in log and b"err: hello\n" in log
    await poll(lambda: server.recorder.written == 1, "the record written")
    assert server.recorder.buffered_record(call_id) is None
    assert await server.json(f"/v2/fns/{server.fn_id}/calls/{call_id}") == (200, record)
    status, headers, again = await server.get(f"/v2/fns/{server.fn_id}/calls/{call_id}/log")
    assert (status, again) == (200, log)
    failed = await server.invoke(b"fail")
    await poll(lambda: server.recorder.written == 2, "the record written")
    status, listing = await server.json(f"/v2/fns/{server.fn_id}/calls")
    assert status == 200 and [c["id"] for c in listing["items"]] == [failed, call_id]
    assert listing["items"][0]["status"] == "error"
    assert listing["items"][0]["error"] == "function failed"
    assert listing["items"][0]["start"] in ("hot", "thawed")  # frozen after 50 ms idle
    assert "next_cursor" not in listing


async def test_a_caller_that_goes_away_is_recorded_cancelled(server: Server) -> None:
    status, _, _ = await request(
        server.state, "POST", f"/invoke/{server.fn_id}", b"hang", disconnect=True
    )
    assert status == 0
    await poll(lambda: server.recorder.written == 1, "the record written")
    (record,), _ = await server.state.store.list_calls(server.fn_id)
    assert (record.status, record.http_status, record.error) == (
        "cancelled",
        None,
        "the caller went away before the call ended",
    )


async def seed(server: Server, count: int) -> list[CallRecord]:
    """``count`` calls, one a second from 2024-01-01, statuses cycling."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    statuses = ["success", "error", "timeout"]
    calls = [
        CallRecord(
            id=new_id(int((t0 + timedelta(seconds=n)).timestamp() * 1000)),
            fn_id=server.fn_id,
            app_id=server.app_id,
            status=statuses[n % 3],
            created_at=t0 + timedelta(seconds=n),
        )
        for n in range(count)
    ]
    await server.state.store.put_calls(calls, {})
    return calls[::-1]


async def test_calls_page_newest_first_and_filter(server: Server) -> None:
    newest_first = await seed(server, 45)
    base = f"/v2/fns/{server.fn_id}/calls"
    status, first = await server.json(base)
    assert status == 200 and [c["id"] for c in first["items"]] == [c.id for c in newest_first[:30]]
    status, second = await server.json(f"{base}?cursor={first['next_cursor']}")
    assert [c["id"] for c in second["items"]] == [c.id for c in newest_first[30:]]
    assert "next_cursor" not in second
    _, small = await server.json(f"{base}?per_page=10&status=error")
    assert [c["id"] for c in small["items"]] == [c.id for c in newest_first if c.status == "error"][
        :10
    ]
    from_time = int(datetime(2024, 1, 1, 0, 0, 40, tzinfo=UTC).timestamp())
    _, late = await server.json(f"{base}?from_time={from_time}&to_time={from_time + 2}")
    assert [c["created_at"] for c in late["items"]] == [
        "2024-01-01T00:00:42.000Z",
        "2024-01-01T00:00:41.000Z",
        "2024-01-01T00:00:40.000Z",
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "invalid status 'done': use one of queued, running, success, error,"),
        ("from_time=yesterday", "invalid from_time 'yesterday': must be Unix seconds"),
        ("to_time=-5", "invalid to_time '-5': must be Unix seconds"),
        ("to_time=1.5", "invalid to_time '1.5': must be Unix seconds"),
        ("from_time=99999999999999999999", "invalid from_time '99999999999999999999'"),
        ("per_page=many", "invalid per_page 'many': must be an integer"),
        ("cursor=%25%25", "invalid cursor '%%'"),
    ],
)
async def test_bad_filters_are_400_with_a_message(server: Server, query: str, message: str) -> None:
    status, body = await server.json(f"/v2/fns/{server.fn_id}/calls?{query}")
    assert status == 400 and body["message"].startswith(message), body


async def test_unknown_fns_calls_and_logs_are_404(server: Server) -> None:
    (call,) = await seed(server, 1)
    fn = server.fn_id
    for path, message in [
        ("/v2/fns/nope/calls", "Fn not found"),
        (f"/v2/fns/nope/calls/{call.id}", "Fn not found"),
        (f"/v2/fns/nope/calls/{call.id}/log", "Fn not found"),
        (f"/v2/fns/{fn}/calls/nope", "Call not found"),
        (f"/v2/fns/{fn}/calls/nope/log", "Call log not found"),
        (f"/v2/fns/{fn}/calls/{call.id}/log", "Call log not found"),
    ]:
        assert await server.json(path) == (404, {"message": message}), path


async def test_calls_routes_want_the_management_token(server: Server) -> None:
    server.state.config = ServerConfig(token="s3cret")
    (call,) = await seed(server, 1)
    for path in (
        f"/v2/fns/{server.fn_id}/calls",
        f"/v2/fns/{server.fn_id}/calls/{call.id}",
        f"/v2/fns/{server.fn_id}/calls/{call.id}/log",
    ):
        status, _, body = await server.get(path)
        assert (status, json.loads(body)) == (
            401,
            {"message": "Invalid authentication credentials"},
        )
        status, _, _ = await server.get(path, authorization="Bearer s3cret")
        assert status != 401


async def test_deleting_the_fn_deletes_its_calls(server: Server) -> None:
    await seed(server, 3)
    status, _, _ = await request(server.state, "DELETE", f"/v2/fns/{server.fn_id}")
    assert status == 204
    assert await server.json(f"/v2/fns/{server.fn_id}/calls") == (404, {"message": "Fn not found"})


def test_the_openapi_document_has_the_calls_routes() -> None:
    paths = document()["paths"]
    for path, method, _ in calls.ROUTES:
        assert method.lower() in paths[path], path
    listed = paths["/v2/fns/{fn_id}/calls"]["get"]
    names = {p["name"] for p in listed["parameters"]}
    assert names == {"fn_id", "cursor", "per_page", "status", "from_time", "to_time"}


async def test_metrics_count_start_kinds_cold_starts_and_queue_waits(server: Server) -> None:
    await server.invoke(b"one")
    await server.invoke(b"two")
    status, _, body = await server.get("/metrics")
    text = body.decode()
    assert status == 200
    assert 'fnagent_calls_by_start_total{start="cold"} 1.0' in text
    assert "fnagent_cold_start_seconds_count 1.0" in text
    assert "fnagent_call_queue_wait_seconds_count 2.0" in text
    assert "fnagent_call_records_dropped_total 0.0" in text
