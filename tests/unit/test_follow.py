"""Following a fn's log lines: the hub's bounded buffers, and the route's server-sent events,
400 without follow=true, 404, auth, and its end when the client goes away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fnagent.agent.calllogs import LogLine
from fnagent.agent.follow import Dropped, FollowHub
from fnagent.errors import ServerBusyError
from fnagent.store import SQLiteStore
from tests.apitest import Client, StubAgent, exchange, http_scope, make_state

pytestmark = pytest.mark.anyio


def line(fn_id: str, data: bytes, call_id: str | None = "c1", stream: str = "stdout") -> LogLine:
    return LogLine(
        fn_id=fn_id, app_id="a1", call_id=call_id, stream=stream, data=data, container="k1"
    )


def test_a_follower_gets_its_fn_s_lines_in_order_and_no_other_fn_s() -> None:
    hub = FollowHub()
    with hub.subscribe("f1") as mine, hub.subscribe("f2") as theirs:
        hub.publish(line("f1", b"one"))
        hub.publish(line("f2", b"other"))
        hub.publish(line("f1", b"two", call_id=None, stream="stderr"))
        assert [(i.data, i.call_id, i.stream) for i in mine.take()] == [  # type: ignore[union-attr]
            (b"one", "c1", "stdout"),
            (b"two", None, "stderr"),
        ]
        assert [i.data for i in theirs.take()] == [b"other"]  # type: ignore[union-attr]
    assert repr(hub) == "<FollowHub fns=0 subscribers=0>", "leaving unsubscribes"
    hub.publish(line("f1", b"nobody follows"))  # costs nothing, keeps nothing


def test_a_slow_follower_loses_lines_with_a_marker_and_memory_stays_bounded() -> None:
    hub = FollowHub()
    with hub.subscribe("f1", max_lines=3, max_bytes=1000) as slow:
        for i in range(10):
            hub.publish(line("f1", b"line %d" % i))
        taken = slow.take()
        assert [getattr(i, "data", i) for i in taken] == [
            b"line 0",
            b"line 1",
            b"line 2",
            Dropped(7),
        ]
        hub.publish(line("f1", b"x" * 600))
        hub.publish(line("f1", b"y" * 600))  # over max_bytes
        assert [getattr(i, "data", i) for i in slow.take()] == [b"x" * 600, Dropped(1)]
        assert slow.take() == []


def test_followers_are_bounded() -> None:
    hub = FollowHub(max_subscribers=2)
    with hub.subscribe("f1"), hub.subscribe("f2"):
        with pytest.raises(ServerBusyError, match="too many log followers"):
            hub.subscribe("f1")
    with hub.subscribe("f1"):
        pass


async def test_next_waits_for_a_line() -> None:
    hub = FollowHub()
    with hub.subscribe("f1") as follower:
        async with anyio.create_task_group() as tg:
            got: list[Any] = []

            async def read() -> None:
                got.extend(await follower.next())

            tg.start_soon(read)
            await anyio.sleep(0.01)
            assert got == []
            hub.publish(line("f1", b"now"))
        assert [i.data for i in got] == [b"now"]


# -- the route ---------------------------------------------------------------------------------


@pytest.fixture
async def agent() -> StubAgent:
    return StubAgent()


@pytest.fixture
async def client(anyio_backend: str, agent: StubAgent) -> AsyncIterator[Client]:
    async with SQLiteStore(":memory:") as store:
        yield Client(make_state(store, agent, token="sekrit"))


AUTH = [(b"authorization", b"Bearer sekrit")]


async def make_fn(client: Client) -> str:
    status, app = await client.send(
        "POST", "/v2/apps", json.dumps({"name": "app"}).encode(), headers=AUTH
    )
    assert status == 200, app
    status, fn = await client.send(
        "POST",
        "/v2/fns",
        json.dumps({"app_id": app["id"], "name": "fn", "image": "fn/x"}).encode(),
        headers=AUTH,
    )
    assert status == 200, fn
    return str(fn["id"])


async def test_without_follow_the_route_says_what_to_use(client: Client) -> None:
    fn_id = await make_fn(client)
    for query in ("", "?follow=false", "?follow=1"):
        status, body = await client.send("GET", f"/v2/fns/{fn_id}/logs{query}", headers=AUTH)
        assert status == 400
        assert "follow=true" in body["message"]
        assert "/calls/{call_id}/log" in body["message"]


async def test_an_unknown_fn_is_404_and_the_token_is_needed(client: Client) -> None:
    status, body = await client.send("GET", "/v2/fns/nope/logs?follow=true", headers=AUTH)
    assert (status, body) == (404, {"message": "Fn not found"})
    fn_id = await make_fn(client)
    status, _ = await client.send("GET", f"/v2/fns/{fn_id}/logs?follow=true")
    assert status == 401


async def test_following_streams_events_until_the_client_goes_away(
    client: Client, agent: StubAgent
) -> None:
    fn_id = await make_fn(client)
    scope = http_scope("GET", f"/v2/fns/{fn_id}/logs", query=b"follow=true", headers=AUTH)
    sent: list[Any] = []

    async def publish() -> None:
        while repr(agent.follow) != "<FollowHub fns=1 subscribers=1>":
            await anyio.sleep(0.005)
        agent.follow.publish(line(fn_id, b"hello \xff", call_id="c1", stream="stderr"))
        agent.follow.publish(line("other", b"not mine"))
        agent.follow.publish(line(fn_id, b"between", call_id=None))

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish)
        sent = await exchange(client.app, scope, [b""], disconnect_after_s=0.3)
    start = sent[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert b"content-length" not in headers
    stream = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    events = [
        json.loads(chunk.split("data: ", 1)[1])
        for chunk in stream.split("\n\n")
        if chunk.startswith("event: line")
    ]
    assert events == [
        {"call_id": "c1", "stream": "stderr", "line": "hello \ufffd", "container": "k1"},
        {"call_id": None, "stream": "stdout", "line": "between", "container": "k1"},
    ]
    assert repr(agent.follow) == "<FollowHub fns=0 subscribers=0>", "the client went away"


def test_the_hub_says_which_fns_are_followed() -> None:
    hub = FollowHub()
    assert not hub.following("f1")
    with hub.subscribe("f1"):
        assert hub.following("f1")
        assert not hub.following("f2")
    assert not hub.following("f1")
