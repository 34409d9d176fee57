"""Fn's v2 management API: apps, fns, triggers (and, beyond Fn, a fn's scale).

Create and update answer 200 with the entity, delete 204; list answers ``{"items": [...],
"next_cursor": ...}``. Validation, merge-on-update and conflicts are the store's (Fn's rules);
this layer checks JSON shapes, adds Fn's endpoint annotations to responses, keeps the invoke
cache honest, and tells the agent when functions change or go.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fnagent.errors import InvalidInputError
from fnagent.server.invoke import agent_fn
from fnagent.server.state import ServerState, check_token, read_json

INVOKE_ANNOTATION = "fnproject.io/fn/invokeEndpoint"
TRIGGER_ANNOTATION = "fnproject.io/trigger/httpEndpoint"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _page(request: Request) -> tuple[str | None, int]:
    cursor = request.query_params.get("cursor") or None
    text = request.query_params.get("per_page", "")
    if not text:
        return cursor, DEFAULT_PER_PAGE
    try:
        per_page = int(text)
    except ValueError:
        raise InvalidInputError(f"invalid per_page {text!r}: must be an integer") from None
    # Fn treats out-of-range sizes as the default or the maximum rather than failing.
    if per_page <= 0:
        return cursor, DEFAULT_PER_PAGE
    return cursor, min(per_page, MAX_PER_PAGE)


def _listing(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    body: dict[str, Any] = {"items": items}
    if next_cursor:
        body["next_cursor"] = next_cursor
    return JSONResponse(body)


def _typed(document: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``document[name]`` when present and of ``kind``; None when absent or null."""
    value = document.get(name)
    if value is None:
        return None
    # bool is an int in Python, never a valid size or timeout in JSON terms.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = getattr(kind, "__name__", str(kind))
        raise InvalidInputError(f"invalid {name}: expected {_JSON_NAMES.get(expected, expected)}")
    return value


_JSON_NAMES = {"str": "a string", "int": "an integer", "dict": "an object"}


def _string_map(document: dict[str, Any], name: str) -> dict[str, str] | None:
    value: dict[str, Any] | None = _typed(document, name, dict)
    if value is not None and not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputError(f"invalid {name}: values must be strings")
    return value


def routes(state: ServerState) -> list[Route]:
    store = state.store
    changed = state.changed

    async def fn_json(request: Request, record: Any) -> dict[str, Any]:
        document: dict[str, Any] = record.to_json()
        document.setdefault("annotations", {})
        document["annotations"] = {
            **document["annotations"],
            INVOKE_ANNOTATION: f"{_base_url(request)}/invoke/{record.id}",
        }
        return document

    async def trigger_json(request: Request, trigger: Any, app_name: str | None = None) -> Any:
        document: dict[str, Any] = trigger.to_json()
        if app_name is None:
            app_name = (await store.get_app(trigger.app_id)).name
        document["annotations"] = {
            **(document.get("annotations") or {}),
            # A URL: names and sources in any script are percent-encoded (UTF-8).
            TRIGGER_ANNOTATION: f"{_base_url(request)}/t/{quote(app_name + trigger.source)}",
        }
        return document

    # -- apps ---------------------------------------------------------------------------------

    async def list_apps(request: Request) -> Response:
        check_token(state, request)
        cursor, per_page = _page(request)
        apps, next_cursor = await store.list_apps(
            cursor=cursor, per_page=per_page, name=request.query_params.get("name") or None
        )
        return _listing([app.to_json() for app in apps], next_cursor)

    async def create_app(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        app = await store.create_app(
            name=_typed(body, "name", str) or "",
            config=_string_map(body, "config"),
            annotations=_typed(body, "annotations", dict),
            syslog_url=_typed(body, "syslog_url", str),
            shape=_typed(body, "shape", str),
        )
        changed()
        return JSONResponse(app.to_json())

    async def get_app(request: Request) -> Response:
        check_token(state, request)
        return JSONResponse((await store.get_app(request.path_params["app_id"])).to_json())

    async def update_app(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        _string_map(body, "config")
        _typed(body, "annotations", dict)
        app = await store.update_app(request.path_params["app_id"], body)
        changed()
        await _refresh_app_fns(app.id)
        return JSONResponse(app.to_json())

    async def delete_app(request: Request) -> Response:
        check_token(state, request)
        app_id = request.path_params["app_id"]
        fns = await _all_fns(app_id)
        await store.delete_app(app_id)
        changed()
        for record in fns:
            state.agent.forget(record.id)
        return Response(status_code=204)

    async def _all_fns(app_id: str) -> list[Any]:
        found: list[Any] = []
        cursor = None
        while True:
            page, cursor = await store.list_fns(
                app_id=app_id, cursor=cursor, per_page=MAX_PER_PAGE, name=None
            )
            found.extend(page)
            if not cursor:
                return found

    async def _refresh_app_fns(app_id: str) -> None:
        """App config is part of every fn's containers: pre-pull / roll each fn forward."""
        app = await store.get_app(app_id)
        for record in await _all_fns(app_id):
            await state.agent.update(agent_fn(app, record))

    # -- fns ----------------------------------------------------------------------------------

    async def list_fns(request: Request) -> Response:
        check_token(state, request)
        app_id = request.query_params.get("app_id")
        if not app_id:
            raise InvalidInputError("Missing app ID")
        cursor, per_page = _page(request)
        fns, next_cursor = await store.list_fns(
            app_id=app_id,
            cursor=cursor,
            per_page=per_page,
            name=request.query_params.get("name") or None,
        )
        return _listing([await fn_json(request, f) for f in fns], next_cursor)

    async def create_fn(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        record = await store.create_fn(
            app_id=_typed(body, "app_id", str) or "",
            name=_typed(body, "name", str) or "",
            image=_typed(body, "image", str) or "",
            memory=_typed(body, "memory", int) or 0,
            timeout=_typed(body, "timeout", int) or 0,
            idle_timeout=_typed(body, "idle_timeout", int) or 0,
            config=_string_map(body, "config"),
            annotations=_typed(body, "annotations", dict),
            shape=_typed(body, "shape", str),
        )
        changed()
        return JSONResponse(await fn_json(request, record))

    async def get_fn(request: Request) -> Response:
        check_token(state, request)
        record = await store.get_fn(request.path_params["fn_id"])
        return JSONResponse(await fn_json(request, record))

    async def update_fn(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        for name in ("memory", "timeout", "idle_timeout"):
            _typed(body, name, int)
        for name in ("image", "name", "app_id"):
            _typed(body, name, str)
        _string_map(body, "config")
        _typed(body, "annotations", dict)
        record = await store.update_fn(request.path_params["fn_id"], body)
        changed()
        app = await store.get_app(record.app_id)
        await state.agent.update(agent_fn(app, record))
        return JSONResponse(await fn_json(request, record))

    async def delete_fn(request: Request) -> Response:
        check_token(state, request)
        fn_id = request.path_params["fn_id"]
        await store.delete_fn(fn_id)
        changed()
        state.agent.forget(fn_id)
        return Response(status_code=204)

    async def get_scale(request: Request) -> Response:
        check_token(state, request)
        record = await store.get_fn(request.path_params["fn_id"])
        counts = state.agent.containers(record.id)
        return JSONResponse({**counts, "min_hot": state.agent.min_hot(record.id)})

    async def set_scale(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        min_hot = _typed(body, "min_hot", int)
        if min_hot is None or min_hot < 0:
            raise InvalidInputError("min_hot must be an integer >= 0")
        record = await store.get_fn(request.path_params["fn_id"])
        app = await store.get_app(record.app_id)
        state.agent.scale(agent_fn(app, record), min_hot)
        counts = state.agent.containers(record.id)
        return JSONResponse({**counts, "min_hot": min_hot})

    # -- triggers -----------------------------------------------------------------------------

    async def list_triggers(request: Request) -> Response:
        check_token(state, request)
        app_id = request.query_params.get("app_id")
        if not app_id:
            raise InvalidInputError("Missing app ID")
        cursor, per_page = _page(request)
        triggers, next_cursor = await store.list_triggers(
            app_id=app_id,
            fn_id=request.query_params.get("fn_id") or None,
            cursor=cursor,
            per_page=per_page,
            name=request.query_params.get("name") or None,
        )
        app_name = (await store.get_app(app_id)).name if triggers else None
        items = [await trigger_json(request, t, app_name) for t in triggers]
        return _listing(items, next_cursor)

    async def create_trigger(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        trigger = await store.create_trigger(
            app_id=_typed(body, "app_id", str) or "",
            fn_id=_typed(body, "fn_id", str) or "",
            name=_typed(body, "name", str) or "",
            type=_typed(body, "type", str) or "",
            source=_typed(body, "source", str) or "",
            annotations=_typed(body, "annotations", dict),
        )
        changed()
        return JSONResponse(await trigger_json(request, trigger))

    async def get_trigger(request: Request) -> Response:
        check_token(state, request)
        trigger = await store.get_trigger(request.path_params["trigger_id"])
        return JSONResponse(await trigger_json(request, trigger))

    async def update_trigger(request: Request) -> Response:
        check_token(state, request)
        body = await read_json(request, state.config.max_api_body_bytes)
        for name in ("name", "type", "source", "app_id", "fn_id"):
            _typed(body, name, str)
        _typed(body, "annotations", dict)
        trigger = await store.update_trigger(request.path_params["trigger_id"], body)
        changed()
        return JSONResponse(await trigger_json(request, trigger))

    async def delete_trigger(request: Request) -> Response:
        check_token(state, request)
        await store.delete_trigger(request.path_params["trigger_id"])
        changed()
        return Response(status_code=204)

    return [
        Route("/v2/apps", list_apps, methods=["GET"]),
        Route("/v2/apps", create_app, methods=["POST"]),
        Route("/v2/apps/{app_id}", get_app, methods=["GET"]),
        Route("/v2/apps/{app_id}", update_app, methods=["PUT"]),
        Route("/v2/apps/{app_id}", delete_app, methods=["DELETE"]),
        Route("/v2/fns", list_fns, methods=["GET"]),
        Route("/v2/fns", create_fn, methods=["POST"]),
        Route("/v2/fns/{fn_id}", get_fn, methods=["GET"]),
        Route("/v2/fns/{fn_id}", update_fn, methods=["PUT"]),
        Route("/v2/fns/{fn_id}", delete_fn, methods=["DELETE"]),
        Route("/v2/fns/{fn_id}/scale", get_scale, methods=["GET"]),
        Route("/v2/fns/{fn_id}/scale", set_scale, methods=["PUT"]),
        Route("/v2/triggers", list_triggers, methods=["GET"]),
        Route("/v2/triggers", create_trigger, methods=["POST"]),
        Route("/v2/triggers/{trigger_id}", get_trigger, methods=["GET"]),
        Route("/v2/triggers/{trigger_id}", update_trigger, methods=["PUT"]),
        Route("/v2/triggers/{trigger_id}", delete_trigger, methods=["DELETE"]),
    ]
