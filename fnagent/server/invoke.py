"""Calling functions over HTTP: ``POST /invoke/{fn_id}`` and the trigger gateway
``/t/{app_name}/{source}`` (any method, Fn's gateway protocol).

Both read the body up to the request-size limit (413 beyond), run the call on the agent, and
answer with the function's response and ``Fn-Call-Id``. A caller that disconnects cancels its
call. Function definitions are cached in memory and dropped on every store write (this server
owns its store), so a hot invoke costs no database read.
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from drivers.errors import FnAgentError
from fnagent.agent import CallResult
from fnagent.models import Call, CallRequest, Fn
from fnagent.server.app import ServerState, check_token, error_response


class RequestTooLargeError(FnAgentError):
    status = 413
    default_message = "Request body too large"


def agent_fn(app: object, record: object) -> Fn:
    """The agent's view of a stored fn and its app (app config folded in)."""
    return Fn(
        id=record.id,  # type: ignore[attr-defined]
        name=record.name,  # type: ignore[attr-defined]
        app_id=app.id,  # type: ignore[attr-defined]
        app_name=app.name,  # type: ignore[attr-defined]
        image=record.image,  # type: ignore[attr-defined]
        memory_mb=record.memory,  # type: ignore[attr-defined]
        timeout_s=record.timeout,  # type: ignore[attr-defined]
        idle_timeout_s=record.idle_timeout,  # type: ignore[attr-defined]
        app_config=dict(app.config),  # type: ignore[attr-defined]
        config=dict(record.config),  # type: ignore[attr-defined]
        annotations=dict(record.annotations),  # type: ignore[attr-defined]
    )


async def fn_by_id(state: ServerState, fn_id: str) -> Fn:
    key = f"fn:{fn_id}"
    cached = state.cache.get(key)
    if cached is None:
        record = await state.store.get_fn(fn_id)
        app = await state.store.get_app(record.app_id)
        cached = state.cache[key] = agent_fn(app, record)
    assert isinstance(cached, Fn)
    return cached


async def fn_by_trigger(state: ServerState, app_name: str, source: str) -> Fn:
    key = f"t:{app_name}:{source}"
    cached = state.cache.get(key)
    if cached is None:
        app, record, _ = await state.store.find_http_trigger(app_name, source)
        cached = state.cache[key] = agent_fn(app, record)
    assert isinstance(cached, Fn)
    return cached


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or RequestTooLargeError as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if limit and declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"Request body too large: over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit and size > limit:
            raise RequestTooLargeError(f"Request body too large: over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def run_call(state: ServerState, request: Request, call: Call) -> Response:
    """Submit ``call``; cancel it when the caller goes away; answer with its result."""
    result: CallResult | None = None
    with anyio.CancelScope() as scope:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        # A bare asyncio task, not a task group: this runs for every invoke, and the watcher
        # only ever waits; it is cancelled below whatever happens.
        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        try:
            result = await state.agent.submit(call)
        finally:
            watcher.cancel()
    if result is None:  # the caller disconnected; nobody reads this
        return Response(status_code=499)
    state.metrics.observe(call.fn.id, result.status, result.start, result.duration_s)
    response = Response(content=result.body, status_code=result.status)
    response.raw_headers.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in result.headers
        if name.lower() != "content-length"
    )
    response.raw_headers.append((b"fn-call-id", call.id.encode()))
    return response


def _headers(request: Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]


def routes(state: ServerState) -> list[Route]:
    limit = state.config.max_request_bytes

    async def invoke(request: Request) -> Response:
        if state.config.token_on_invoke:
            check_token(state, request)
        fn = await fn_by_id(state, request.path_params["fn_id"])
        body = await read_body(request, limit)
        call = Call(
            fn=fn,
            request=CallRequest(
                method=request.method, url=str(request.url), headers=_headers(request), body=body
            ),
        )
        return await run_call(state, request, call)

    async def trigger(request: Request) -> Response:
        if state.config.token_on_invoke:
            check_token(state, request)
        source = "/" + request.path_params["source"]
        fn = await fn_by_trigger(state, request.path_params["app_name"], source)
        body = await read_body(request, limit)
        call = Call(
            fn=fn,
            trigger=True,
            request=CallRequest(
                method=request.method, url=str(request.url), headers=_headers(request), body=body
            ),
        )
        return await run_call(state, request, call)

    async def wrong_method(request: Request) -> Response:
        return error_response(405, "Method not allowed", {"Allow": "POST"})

    any_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return [
        Route("/invoke/{fn_id}", invoke, methods=["POST"]),
        Route("/invoke/{fn_id}", wrong_method, methods=[m for m in any_method if m != "POST"]),
        Route("/t/{app_name}/{source:path}", trigger, methods=any_method),
    ]
