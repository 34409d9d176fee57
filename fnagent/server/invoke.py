"""Calling functions over HTTP: ``POST /invoke/{fn_id}`` and the trigger gateway
``/t/{app_name}/{source}`` (any method, Fn's gateway protocol).

Both read the body up to the request-size limit (413 beyond), run the call on the agent, and
answer with the function's response and ``Fn-Call-Id``. With ``Fn-Invoke-Type: detached``
they store the call in the store's queue instead and answer 202 with ``Fn-Call-Id`` once it
is committed; the dispatcher (fnagent/server/detached.py) runs it. A caller that disconnects
cancels its call. Function definitions are cached in memory and dropped on every store write
(this server owns its store), so a hot invoke costs no database read. A lookup caches what it
read only when no write came while it read; otherwise it reads again, so a fn deleted or
updated meanwhile is answered 404 or with its new definition, never kept stale in the cache.

These two routes are the hot path, so they are served as raw ASGI in front of Starlette
(``InvokeApp``): no middleware stack, router, Request or Response objects per call. Everything
else, and any path these routes would not match, goes to the Starlette app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio

from fnagent.agent import CallResult
from fnagent.errors import (
    FnAgentError,
    InvalidInputError,
    MethodNotAllowedError,
    RequestTooLargeError,
    UnauthorizedError,
)
from fnagent.ids import new_id
from fnagent.models import Call, CallRequest, Fn, SecretFile
from fnagent.records import start_kind
from fnagent.secretbox import digest
from fnagent.server.callback import check_callback_url
from fnagent.server.state import (
    ServerState,
    bearer_matches,
    error_response,
    error_response_for,
    retry_after,
)
from fnagent.store.models import App, FnRecord
from fnagent.store.queue import QueuedCall
from fnagent.store.secrets import missing_secret_message, secret_names

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawRoute = Callable[[ServerState, Scope, Receive, Send], Awaitable[None]]

INVOKE_PREFIX = "/invoke/"
TRIGGER_PREFIX = "/t/"
INVOKE_METHODS = ("POST",)
# When run_call starts watching for the caller going away.
WATCH_AFTER_S = 0.05
TRIGGER_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Reads of one lookup while writes keep coming; the last read is then served, not cached.
MAX_LOOKUP_READS = 3
JSON = b"application/json"


class ClientGone(Exception):
    """The caller disconnected before its request body arrived."""


def agent_fn(app: App, record: FnRecord, secrets: tuple[SecretFile, ...] = ()) -> Fn:
    """The agent's view of a stored fn and its app (app config folded in)."""
    return Fn(
        id=record.id,
        name=record.name,
        app_id=app.id,
        app_name=app.name,
        image=record.image,
        memory_mb=record.memory,
        timeout_s=record.timeout,
        idle_timeout_s=record.idle_timeout,
        app_config=dict(app.config),
        config=dict(record.config),
        annotations=dict(record.annotations),
        syslog_url=app.syslog_url,
        secrets=secrets,
    )


async def load_fn(state: ServerState, app: App, record: FnRecord) -> Fn:
    """``agent_fn`` with the secrets the fn names (``fnagent.io/secrets``), read from the
    store and opened with the server's key. 400 naming a secret the app lacks (the store's
    rules keep that from happening); SecretKeyError (500) when one does not open."""
    names = secret_names(record.annotations)
    if not names:
        return agent_fn(app, record)
    sealed = await state.store.get_sealed_secrets(app.id, names)
    found = {secret.name: secret for secret in sealed}
    files: list[SecretFile] = []
    for name in names:
        secret = found.get(name)
        if secret is None:
            raise InvalidInputError(missing_secret_message(name, app.name))
        value = state.secretbox.open(app.id, name, secret.sealed)
        files.append(SecretFile(name=name, value=value, digest=digest(secret.sealed)))
    return agent_fn(app, record, tuple(files))


async def fn_by_id(state: ServerState, fn_id: str) -> Fn:
    cached = state.cache.get(f"fn:{fn_id}")
    if cached is not None:
        assert isinstance(cached, Fn)
        return cached
    return await _read_through(state, f"fn:{fn_id}", partial(_read_fn, state, fn_id))


async def fn_by_trigger(state: ServerState, app_name: str, source: str) -> Fn:
    cached = state.cache.get(f"t:{app_name}:{source}")
    if cached is not None:
        assert isinstance(cached, Fn)
        return cached
    read = partial(_read_trigger, state, app_name, source)
    return await _read_through(state, f"t:{app_name}:{source}", read)


async def _read_fn(state: ServerState, fn_id: str) -> Fn:
    record = await state.store.get_fn(fn_id)
    return await load_fn(state, await state.store.get_app(record.app_id), record)


async def _read_trigger(state: ServerState, app_name: str, source: str) -> Fn:
    app, record, _ = await state.store.find_http_trigger(app_name, source)
    return await load_fn(state, app, record)


async def read_cached(state: ServerState, key: str) -> Fn:
    """What the cache entry ``key`` holds, read from the store now (NotFoundError when it is
    gone): ``fn:<id>``, or ``t:<app name>:<source>`` (an app name never holds ``:``)."""
    kind, _, rest = key.partition(":")
    if kind == "fn":
        return await _read_fn(state, rest)
    app_name, _, source = rest.partition(":")
    return await _read_trigger(state, app_name, source)


async def _read_through(state: ServerState, key: str, read: Callable[[], Awaitable[Fn]]) -> Fn:
    """``read()``, cached under ``key`` unless a store write came while it read (what it
    read may predate the write, whose cache drop came too early to remove it): then read
    again. NotFoundError when the fn (or its app or trigger) is gone."""
    for _ in range(MAX_LOOKUP_READS):
        writes = state.writes
        fn = await read()
        if state.writes == writes:
            state.cache[key] = fn
            return fn
    return fn


class InvokeApp:
    """The server's ASGI app: invoke and triggers served here, the rest by ``fallback``.

    Matches the paths Starlette's routes ``/invoke/{fn_id}`` and ``/t/{app_name}/{source:path}``
    would; a method a route does not take answers 405 with ``Allow``. Errors answer JSON
    ``{"message": ...}`` as the fallback's handlers do.
    """

    def __init__(
        self,
        state: ServerState,
        fallback: ASGIApp,
        raw_routes: Mapping[str, RawRoute] | None = None,
    ) -> None:
        self.state = state
        self.fallback = fallback
        self.raw_routes = dict(raw_routes or {})
        """Other routes served as raw ASGI, by exact path (e.g. ``/v2/run``, which streams
        both ways)."""
        self.tokens = state.config.invoke_tokens()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(INVOKE_PREFIX):
                fn_id = path[len(INVOKE_PREFIX) :]
                if fn_id and "/" not in fn_id:
                    await self._serve(scope, receive, send, fn_id, None)
                    return
            elif path.startswith(TRIGGER_PREFIX):
                app_name, slash, source = path[len(TRIGGER_PREFIX) :].partition("/")
                if app_name and slash:
                    await self._serve(scope, receive, send, app_name, "/" + source)
                    return
            elif (route := self.raw_routes.get(path)) is not None:
                await route(self.state, scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, name: str, source: str | None
    ) -> None:
        """``name`` is the fn id for invoke, the app name for a trigger (``source`` set)."""
        state = self.state
        trigger = source is not None
        received_at = datetime.now(UTC)
        try:
            allowed = TRIGGER_METHODS if trigger else INVOKE_METHODS
            if scope["method"] not in allowed:
                raise MethodNotAllowedError(allowed=allowed)
            raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
            if self.tokens:
                if not bearer_matches(raw_headers, self.tokens):
                    raise UnauthorizedError()
                # The token was ours to check; the function never sees it.
                raw_headers = [h for h in raw_headers if h[0] != b"authorization"]
            if source is None:
                fn = await fn_by_id(state, name)
            else:
                fn = await fn_by_trigger(state, name, source)
            detached, callback_url, raw_headers = invoke_options(raw_headers)
            body = await read_body(scope, receive, state.config.max_request_bytes)
            if detached:
                call_id = await enqueue(state, fn, trigger, scope, raw_headers, body, callback_url)
                await send_accepted(send, call_id)
                return
            call = Call(
                fn=fn,
                trigger=trigger,
                request=CallRequest(
                    method=scope["method"],
                    url=request_url(scope, raw_headers),
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers],
                    body=body,
                ),
            )
            result = await run_call(state, receive, call)
        except ClientGone:
            return
        except FnAgentError as exc:
            await error_response_for(exc)(scope, receive, send)
            return
        except Exception:
            logger.exception("unexpected error", extra={"path": scope["path"]})
            await error_response(500, "internal server error")(scope, receive, send)
            return
        recorder = state.recorder
        if result is None:  # the caller disconnected; nobody reads an answer
            if recorder is not None:
                recorder.finished(call, None, created_at=received_at)
            return
        state.metrics.observe(fn.id, result.status, result.start, result.duration_s)
        state.metrics.observe_start(start_kind(result.start), result.queued_s, result.start_s)
        try:
            await send_result(send, result, call.id)
        finally:
            # After the answer: the caller does not wait for its record.
            if recorder is not None:
                recorder.finished(call, result, created_at=received_at)


def invoke_options(
    headers: list[tuple[bytes, bytes]],
) -> tuple[bool, str | None, list[tuple[bytes, bytes]]]:
    """``Fn-Invoke-Type`` and ``Fn-Callback-Url``: whether the call is detached, its callback
    URL, and the headers the function gets (without ``Fn-Callback-Url``: the caller's to know,
    not the function's). 400 for another invoke type, or a callback URL that is not an
    http(s) URL; a callback URL on a sync call is an ordinary header."""
    invoke_type: bytes | None = None
    callback: bytes | None = None
    for name, value in headers:
        if name == b"fn-invoke-type":
            invoke_type = value
        elif name == b"fn-callback-url":
            callback = value
    if invoke_type is None or invoke_type.lower() == b"sync":
        return False, None, headers
    if invoke_type.lower() != b"detached":
        shown = invoke_type[:40].decode("latin-1")
        raise InvalidInputError(
            f"invalid Fn-Invoke-Type {shown!r}: use sync (the default) or detached"
        )
    if callback is None:
        return True, None, headers
    url = check_callback_url(callback.decode("latin-1"))
    return True, url, [h for h in headers if h[0] != b"fn-callback-url"]


async def enqueue(
    state: ServerState,
    fn: Fn,
    trigger: bool,
    scope: Scope,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    callback_url: str | None,
) -> str:
    """Store a detached call (durable when this returns) and wake the dispatcher; the call's
    id."""
    call_id = new_id()
    now = time.time()
    await state.store.enqueue_call(
        QueuedCall(
            id=call_id,
            fn_id=fn.id,
            app_id=fn.app_id,
            trigger=trigger,
            method=scope["method"],
            url=request_url(scope, headers),
            headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
            body=body,
            callback_url=callback_url,
            created_at=now,
        )
    )
    state.observer.queued(call_id, fn, now, created_at=now)
    if state.dispatcher is not None:
        state.dispatcher.notify()
    return call_id


async def send_accepted(send: Send, call_id: str) -> None:
    """202 with ``Fn-Call-Id`` and an empty body."""
    headers = [(b"content-length", b"0"), (b"fn-call-id", call_id.encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def request_url(scope: Scope, headers: list[tuple[bytes, bytes]]) -> str:
    """The URL as the caller sent it: its path still percent-encoded (the decoded path may
    hold characters no header can carry), the host from ``Host`` or the server's address."""
    host = ""
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host:
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    url = f"{scope['scheme']}://{host}{raw_path.decode('latin-1')}"
    return f"{url}?{query.decode('latin-1')}" if query else url


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, or RequestTooLargeError as soon as it passes ``limit`` bytes (0 = no
    limit); ClientGone when the caller disconnects first."""
    if limit:
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > limit:
                    raise RequestTooLargeError(f"Request body too large: over {limit} bytes")
                break
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if limit and size > limit:
            raise RequestTooLargeError(f"Request body too large: over {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def run_call(state: ServerState, receive: Receive, call: Call) -> CallResult | None:
    """Submit ``call``; cancel it when the caller goes away (then None).

    The caller is watched from WATCH_AFTER_S into the call: most calls are over by then,
    and a watcher task per call costs more than the rest of this function. A caller that
    leaves earlier is noticed then (or its answer is dropped)."""
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task[None] | None = None
    with anyio.CancelScope() as scope:

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        def start_watching() -> None:
            nonlocal watcher
            # A bare asyncio task, not a task group: the watcher only ever waits, and it is
            # cancelled below whatever happens.
            watcher = loop.create_task(watch_disconnect())

        timer = loop.call_later(WATCH_AFTER_S, start_watching)
        try:
            return await state.agent.submit(call)
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
    return None


def error_answer(error: FnAgentError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A failed call's headers and JSON body (``error.document()``: ``{"message": ...}``, and
    ``"stderr"`` for a container that failed to start); a 503 or 429 carries Retry-After
    (``state.retry_after``)."""
    body = json.dumps(error.document()).encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON)]
    seconds = retry_after(error)
    if seconds is not None:
        headers.append((b"retry-after", seconds.encode()))
    return headers, body


async def send_result(send: Send, result: CallResult, call_id: str) -> None:
    """The function's answer with ``Fn-Call-Id`` (headers as Starlette's Response sets them:
    Content-Length computed, except for statuses that have no body); for a failed call, the
    error's JSON body (``error_answer``)."""
    status = result.status
    if result.error is not None:
        error_headers, body = error_answer(result.error)
        error_headers.append((b"fn-call-id", call_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": error_headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers: list[tuple[bytes, bytes]] = []
    if not (status < 200 or status in (204, 304)):
        headers.append((b"content-length", str(len(result.body)).encode()))
    for name, value in result.headers:
        lowered = name.lower()
        if lowered != "content-length":
            headers.append((lowered.encode("latin-1"), value.encode("latin-1")))
    headers.append((b"fn-call-id", call_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": result.body})
