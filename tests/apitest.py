"""The management API in process: an ASGI client for the server's app and a stub agent that
records what the API told it. Unit tests build a ``ServerState`` on an in-memory store with
these; nothing listens on a socket and no container runs."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import anyio

from fnagent.agent.agent import KeepAliveView, PrewarmView
from fnagent.agent.follow import FollowHub
from fnagent.models import Fn
from fnagent.server import invoke
from fnagent.server.app import ServerConfig, ServerState, create_app
from fnagent.server.metrics import Metrics
from fnagent.store.base import Store

Answer = tuple[int, Any]


class StubAgent:
    """What the API calls on the agent, recorded: fns updated, forgotten and scaled."""

    def __init__(self) -> None:
        self.updated: list[Fn] = []
        self.forgotten: list[str] = []
        self.scaled: dict[str, int] = {}
        self.follow = FollowHub()
        self.keepalives: dict[str, tuple[list[KeepAliveView], PrewarmView | None]] = {}
        """fn id -> what ``keepalive`` answers (none learned unless a test says)."""
        self.running: dict[str, str] = {}
        """The fns it "runs" (fn id -> app id): only these are told of updates."""

    async def update(self, fn: Fn) -> None:
        self.updated.append(fn)

    def fn_apps(self) -> dict[str, str]:
        return dict(self.running)

    def forget(self, fn_id: str) -> None:
        self.forgotten.append(fn_id)

    def scale(self, fn: Fn, min_hot: int) -> None:
        self.scaled[fn.id] = min_hot

    def min_hot(self, fn_id: str) -> int:
        return self.scaled.get(fn_id, 0)

    def containers(self, fn_id: str | None = None) -> dict[str, int]:
        return {"running": 0, "frozen": 0, "starting": 0}

    def keepalive(self, fn_id: str) -> tuple[list[KeepAliveView], PrewarmView | None]:
        return self.keepalives.get(fn_id, ([], None))

    def containers_by_fn(self) -> dict[str, dict[str, int]]:
        return {
            fn_id: {"running": 0, "frozen": min_hot, "starting": 0}
            for fn_id, min_hot in self.scaled.items()
        }


def make_state(store: Store, agent: StubAgent | None = None, **config: Any) -> ServerState:
    return ServerState(
        config=ServerConfig(**config),
        store=store,
        agent=agent or StubAgent(),  # type: ignore[arg-type]  # a stub, not an Agent
        metrics=Metrics(lambda: {}),
    )


def http_scope(
    method: str,
    path: str,
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """An ASGI http scope as uvicorn gives it for a request to 127.0.0.1:8080."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5555),
        "root_path": "",
        "method": method,
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8080"), *(headers or [])],
    }


class Client:
    """Sends one request through the server's ASGI app; answers (status, JSON body)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.app = create_app(state)

    async def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        chunks: list[bytes] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Answer:
        path, _, query = path.partition("?")
        scope = http_scope(method, path, query=query.encode(), headers=headers)
        sent = await exchange(self.app, scope, chunks if chunks is not None else [body])
        raw = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], json.loads(raw) if raw else None

    async def json(self, method: str, path: str, document: Any) -> Answer:
        return await self.send(method, path, json.dumps(document).encode())


async def exchange(
    app: Any, scope: dict[str, Any], parts: list[bytes], *, disconnect_after_s: float | None = None
) -> list[MutableMapping[str, Any]]:
    """Run one request through an ASGI ``app``: the body in ``parts``, then the caller waits
    (or, after ``disconnect_after_s``, goes away); answers what the app sent, within 5 s."""
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]

    async def receive() -> MutableMapping[str, Any]:
        if messages:
            return messages.pop(0)
        if disconnect_after_s is not None:
            await anyio.sleep(disconnect_after_s)
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


async def request(
    state: ServerState,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    disconnect: bool = False,
    raw_path: bytes | None = None,
    query: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One raw ASGI request to the whole app (the invoke path included): status, headers and
    body. ``disconnect`` makes the caller go away once the invoke path watches for that."""
    scope = http_scope(method, path, raw_path=raw_path, query=query, headers=headers)
    after = invoke.WATCH_AFTER_S * 2 if disconnect else None
    sent = await exchange(create_app(state), scope, [body], disconnect_after_s=after)
    if not sent:
        return 0, {}, b""
    return (
        sent[0]["status"],
        dict(sent[0]["headers"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )
