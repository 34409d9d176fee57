"""Fn's v2 management API: apps, fns, triggers (and, beyond Fn, a fn's scale).

Create and update answer 200 with the entity, delete 204; list answers ``{"items": [...],
"next_cursor": ...}``. Bodies go to the store as sent: validation, merge-on-update, paging
and conflicts are the store's (Fn's rules, in ``fnagent.store.models``), and its errors are
rendered as they are. This layer reads JSON, adds Fn's endpoint annotations to responses,
and hands every committed change to ``fnagent.server.sync.apply_changes`` (the invoke
cache and the agent's versions follow it).

One module-level function per route, each taking the server's state and the request;
``routes`` binds them to the state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fnagent.agent import KeepAliveView, PrewarmView
from fnagent.errors import InvalidInputError
from fnagent.server.invoke import load_fn
from fnagent.server.logs import follow_logs
from fnagent.server.state import Handler, ServerState, check_token, read_json
from fnagent.server.sync import apply_changes
from fnagent.store.changes import Change
from fnagent.store.models import FnRecord, Trigger, format_timestamp, utcnow

INVOKE_ANNOTATION = "fnproject.io/fn/invokeEndpoint"
TRIGGER_ANNOTATION = "fnproject.io/trigger/httpEndpoint"


def _base_url(state: ServerState, request: Request) -> str:
    """Where the endpoint annotations point: FN_PUBLIC_LB_URL when set (the front door, not
    this agent), else the URL the request came to."""
    return state.config.public_lb_url or str(request.base_url).rstrip("/")


async def _body(state: ServerState, request: Request) -> dict[str, Any]:
    return await read_json(request, state.config.max_api_body_bytes)


def page_arguments(request: Request) -> dict[str, Any]:
    """The list arguments of the query: ``cursor``, ``per_page`` (the store clamps it) and
    ``name``."""
    text = request.query_params.get("per_page", "")
    try:
        per_page = int(text) if text else None
    except ValueError:
        raise InvalidInputError(f"invalid per_page {text!r}: must be an integer") from None
    return {
        "cursor": request.query_params.get("cursor") or None,
        "per_page": per_page,
        "name": request.query_params.get("name") or None,
    }


def _listing(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    body: dict[str, Any] = {"items": items}
    if next_cursor:
        body["next_cursor"] = next_cursor
    return JSONResponse(body)


def _fn_json(state: ServerState, request: Request, record: FnRecord) -> dict[str, Any]:
    document = record.to_json()
    document["annotations"] = {
        **document.get("annotations", {}),
        INVOKE_ANNOTATION: f"{_base_url(state, request)}/invoke/{record.id}",
    }
    return document


def _trigger_json(
    state: ServerState, request: Request, trigger: Trigger, app_name: str
) -> dict[str, Any]:
    document = trigger.to_json()
    document["annotations"] = {
        **document.get("annotations", {}),
        # A URL: names and sources in any script are percent-encoded (UTF-8).
        TRIGGER_ANNOTATION: f"{_base_url(state, request)}/t/{quote(app_name + trigger.source)}",
    }
    return document


async def _one_trigger_json(state: ServerState, request: Request, trigger: Trigger) -> Response:
    app = await state.store.get_app(trigger.app_id)
    return JSONResponse(_trigger_json(state, request, trigger, app.name))


# --- apps -------------------------------------------------------------------------------------


async def list_apps(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    apps, next_cursor = await state.store.list_apps(**page_arguments(request))
    return _listing([app.to_json() for app in apps], next_cursor)


async def create_app(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app = await state.store.create_app(await _body(state, request))
    await apply_changes(state, [Change("apps", "insert", app.id, app.id)])
    return JSONResponse(app.to_json())


async def get_app(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    return JSONResponse((await state.store.get_app(request.path_params["app_id"])).to_json())


async def update_app(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    body = await _body(state, request)
    app = await state.store.update_app(request.path_params["app_id"], body)
    # App config is part of every fn's containers: each fn the agent runs rolls forward.
    await apply_changes(state, [Change("apps", "update", app.id, app.id)])
    return JSONResponse(app.to_json())


async def delete_app(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app_id = request.path_params["app_id"]
    await state.store.delete_app(app_id)
    await apply_changes(state, [Change("apps", "delete", app_id, app_id)])
    return Response(status_code=204)


# --- fns --------------------------------------------------------------------------------------


async def list_fns(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app_id = request.query_params.get("app_id", "")
    fns, next_cursor = await state.store.list_fns(app_id=app_id, **page_arguments(request))
    return _listing([_fn_json(state, request, record) for record in fns], next_cursor)


async def create_fn(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    record = await state.store.create_fn(await _body(state, request))
    await apply_changes(state, [Change("fns", "insert", record.id, record.app_id)])
    return JSONResponse(_fn_json(state, request, record))


async def get_fn(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    record = await state.store.get_fn(request.path_params["fn_id"])
    return JSONResponse(_fn_json(state, request, record))


async def update_fn(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    body = await _body(state, request)
    record = await state.store.update_fn(request.path_params["fn_id"], body)
    await apply_changes(state, [Change("fns", "update", record.id, record.app_id)])
    return JSONResponse(_fn_json(state, request, record))


async def delete_fn(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    fn_id = request.path_params["fn_id"]
    await state.store.delete_fn(fn_id)
    # The app id only matters to an app's changes.
    await apply_changes(state, [Change("fns", "delete", fn_id, "")])
    return Response(status_code=204)


def _scale_json(state: ServerState, fn_id: str, min_hot: int) -> dict[str, Any]:
    """A fn's containers, its minimum hot count, its keep-alive per version and its next
    planned pre-warm (absent when none)."""
    views, prewarm = state.agent.keepalive(fn_id)
    now = utcnow()
    out: dict[str, Any] = {
        **state.agent.containers(fn_id),
        "min_hot": min_hot,
        "keepalive": [_keepalive_json(view, now) for view in views],
    }
    if prewarm is not None:
        out["prewarm"] = _prewarm_json(prewarm, now)
    return out


def _keepalive_json(view: KeepAliveView, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": view.version,
        "serving": view.serving,
        "policy": view.policy,
        "learned": view.learned,
        "representative": view.representative,
        "idle_samples": view.idle_samples,
        "keepalive_s": round(view.keepalive_s, 3),
    }
    if view.unload_in_s is not None:
        out["unload_in_s"] = round(view.unload_in_s, 3)
        out["unload_at"] = format_timestamp(now + timedelta(seconds=view.unload_in_s))
    return out


def _prewarm_json(prewarm: PrewarmView, now: datetime) -> dict[str, Any]:
    return {
        "version": prewarm.version,
        "at": format_timestamp(now + timedelta(seconds=prewarm.in_s)),
        "in_s": round(prewarm.in_s, 3),
        "keep_s": round(prewarm.keep_s, 3),
    }


async def get_scale(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    record = await state.store.get_fn(request.path_params["fn_id"])
    return JSONResponse(_scale_json(state, record.id, state.agent.min_hot(record.id)))


async def set_scale(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    min_hot = (await _body(state, request)).get("min_hot")
    # bool is an int in Python, never in JSON.
    if not isinstance(min_hot, int) or isinstance(min_hot, bool) or min_hot < 0:
        raise InvalidInputError("min_hot must be an integer >= 0")
    record = await state.store.get_fn(request.path_params["fn_id"])
    app = await state.store.get_app(record.app_id)
    state.agent.scale(await load_fn(state, app, record), min_hot)
    return JSONResponse(_scale_json(state, record.id, min_hot))


# --- triggers ---------------------------------------------------------------------------------


async def list_triggers(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app_id = request.query_params.get("app_id", "")
    triggers, next_cursor = await state.store.list_triggers(
        app_id=app_id, fn_id=request.query_params.get("fn_id") or None, **page_arguments(request)
    )
    app_name = (await state.store.get_app(app_id)).name if triggers else ""
    return _listing([_trigger_json(state, request, t, app_name) for t in triggers], next_cursor)


async def create_trigger(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    trigger = await state.store.create_trigger(await _body(state, request))
    await apply_changes(state, [Change("triggers", "insert", trigger.id, trigger.app_id)])
    return await _one_trigger_json(state, request, trigger)


async def get_trigger(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    trigger = await state.store.get_trigger(request.path_params["trigger_id"])
    return await _one_trigger_json(state, request, trigger)


async def update_trigger(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    body = await _body(state, request)
    trigger = await state.store.update_trigger(request.path_params["trigger_id"], body)
    await apply_changes(state, [Change("triggers", "update", trigger.id, trigger.app_id)])
    return await _one_trigger_json(state, request, trigger)


async def delete_trigger(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    trigger_id = request.path_params["trigger_id"]
    await state.store.delete_trigger(trigger_id)
    await apply_changes(state, [Change("triggers", "delete", trigger_id, "")])
    return Response(status_code=204)


ROUTES: list[tuple[str, str, Handler]] = [
    ("/v2/apps", "GET", list_apps),
    ("/v2/apps", "POST", create_app),
    ("/v2/apps/{app_id}", "GET", get_app),
    ("/v2/apps/{app_id}", "PUT", update_app),
    ("/v2/apps/{app_id}", "DELETE", delete_app),
    ("/v2/fns", "GET", list_fns),
    ("/v2/fns", "POST", create_fn),
    ("/v2/fns/{fn_id}", "GET", get_fn),
    ("/v2/fns/{fn_id}", "PUT", update_fn),
    ("/v2/fns/{fn_id}", "DELETE", delete_fn),
    ("/v2/fns/{fn_id}/scale", "GET", get_scale),
    ("/v2/fns/{fn_id}/scale", "PUT", set_scale),
    ("/v2/fns/{fn_id}/logs", "GET", follow_logs),
    ("/v2/triggers", "GET", list_triggers),
    ("/v2/triggers", "POST", create_trigger),
    ("/v2/triggers/{trigger_id}", "GET", get_trigger),
    ("/v2/triggers/{trigger_id}", "PUT", update_trigger),
    ("/v2/triggers/{trigger_id}", "DELETE", delete_trigger),
]
"""Every management route: path, method, handler."""
