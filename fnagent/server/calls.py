"""The calls routes: a fn's call records and each call's log.

``GET /v2/fns/{fn_id}/calls`` lists the fn's calls newest first (``{"items", "next_cursor"}``,
``per_page`` and ``cursor`` as the other lists; filters ``status``, ``from_time``,
``to_time`` in Unix seconds); ``GET /v2/fns/{fn_id}/calls/{call_id}`` is one call and
``.../log`` its log as ``text/plain``. They read the store; a call whose record still waits in
the recorder's buffer is served from there, so a call can be looked up as soon as it ended.
Management auth as the other /v2 routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fnagent.errors import InvalidInputError
from fnagent.server.state import Handler, ServerState, check_token
from fnagent.store.calls import CallFilter

TEXT_PLAIN = "text/plain; charset=utf-8"


def _per_page(request: Request) -> int | None:
    text = request.query_params.get("per_page", "")
    try:
        return int(text) if text else None
    except ValueError:
        raise InvalidInputError(f"invalid per_page {text[:40]!r}: must be an integer") from None


async def list_calls(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    where = CallFilter.from_query(request.query_params)
    calls, next_cursor = await state.store.list_calls(
        request.path_params["fn_id"],
        cursor=request.query_params.get("cursor") or None,
        per_page=_per_page(request),
        where=where,
    )
    body: dict[str, object] = {"items": [call.to_json() for call in calls]}
    if next_cursor:
        body["next_cursor"] = next_cursor
    return JSONResponse(body)


async def get_call(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    fn_id, call_id = request.path_params["fn_id"], request.path_params["call_id"]
    buffered = state.recorder.buffered_record(call_id) if state.recorder else None
    if buffered is not None and buffered[0].fn_id == fn_id:
        await state.store.get_fn(fn_id)  # 404 once the fn is gone
        return JSONResponse(buffered[0].to_json())
    return JSONResponse((await state.store.get_call(fn_id, call_id)).to_json())


async def get_call_log(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    fn_id, call_id = request.path_params["fn_id"], request.path_params["call_id"]
    buffered = state.recorder.buffered_record(call_id) if state.recorder else None
    if buffered is not None and buffered[0].fn_id == fn_id and buffered[1]:
        await state.store.get_fn(fn_id)
        return Response(buffered[1], media_type=TEXT_PLAIN)
    return Response(await state.store.get_call_log(fn_id, call_id), media_type=TEXT_PLAIN)


ROUTES: list[tuple[str, str, Handler]] = [
    ("/v2/fns/{fn_id}/calls", "GET", list_calls),
    ("/v2/fns/{fn_id}/calls/{call_id}", "GET", get_call),
    ("/v2/fns/{fn_id}/calls/{call_id}/log", "GET", get_call_log),
]
"""The calls routes: path, method, handler."""
