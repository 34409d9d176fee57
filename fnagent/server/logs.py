"""Following a fn's log lines live: ``GET /v2/fns/{fn_id}/logs?follow=true``.

The answer is a stream of server-sent events (``text/event-stream``), one event per line a
container of the fn prints, as it comes::

    event: line
    data: {"call_id": "01J...", "stream": "stderr", "line": "...", "container": "..."}

``call_id`` is null for a line of no call (printed between calls). A reader too slow for the
lines loses some, and is told where: ``event: dropped`` with ``{"dropped": <count>}``. A
comment line (``: keep-alive``) comes every KEEPALIVE_S when nothing else does. The stream
ends when the client goes away. Without ``follow=true``: 400 (a call's stored log has its
own route, ``/v2/fns/{fn_id}/calls/{call_id}/log``).
"""

from __future__ import annotations

import json

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fnagent.agent.calllogs import LogLine
from fnagent.agent.follow import Dropped, Subscription
from fnagent.errors import InvalidInputError
from fnagent.server.state import ServerState, check_token

KEEPALIVE_S = 15.0
FOLLOW_ONLY = (
    "this route follows a fn's log lines as they come: add ?follow=true (a call's stored "
    "log is GET /v2/fns/{fn_id}/calls/{call_id}/log)"
)


async def follow_logs(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    if request.query_params.get("follow", "").lower() != "true":
        raise InvalidInputError(FOLLOW_ONLY)
    record = await state.store.get_fn(request.path_params["fn_id"])
    return EventStream(state.agent.follow.subscribe(record.id))


def event(item: LogLine | Dropped) -> bytes:
    """One server-sent event for a line or a drop marker."""
    if isinstance(item, Dropped):
        return b"event: dropped\ndata: " + json.dumps({"dropped": item.count}).encode() + b"\n\n"
    data = {
        "call_id": item.call_id,
        "stream": item.stream,
        "line": item.data.decode("utf-8", "replace"),
        "container": item.container,
    }
    return b"event: line\ndata: " + json.dumps(data).encode() + b"\n\n"


class EventStream(Response):
    """A subscription's lines as server-sent events, until the client goes away."""

    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription) -> None:
        super().__init__(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        # No Content-Length: the body has no end.
        self.raw_headers = [h for h in self.raw_headers if h[0] != b"content-length"]
        self.subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.subscription:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                try:
                    await self._stream(send)
                except OSError:  # the client went away while we wrote
                    pass
                tg.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b": following\n\n", "more_body": True})
        while True:
            items: list[LogLine | Dropped] = []
            with anyio.move_on_after(KEEPALIVE_S):
                items = await self.subscription.next()
            body = b"".join(event(item) for item in items) if items else b": keep-alive\n\n"
            await send({"type": "http.response.body", "body": body, "more_body": True})
