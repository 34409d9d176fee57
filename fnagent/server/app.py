"""The ASGI app of ``fnagent serve``: Fn's v2 API, invoke, HTTP triggers, ping, version,
health, metrics, stats, the OpenAPI document of what is implemented, and the page at /ui.

Errors are JSON ``{"message": ...}`` everywhere; every ``FnAgentError`` carries its status, so
one handler maps them all.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fnagent.config import ServerConfig
from fnagent.errors import FnAgentError
from fnagent.server import api, calls, invoke, openapi, runapi, secrets, ui
from fnagent.server.state import (
    RETRY_AFTER,
    ServerState,
    bind_routes,
    check_token,
    error_response,
    error_response_for,
)
from fnagent.server.stats import stats

logger = logging.getLogger(__name__)

# ServerConfig and ServerState are the app's inputs: named here so a caller needs one import.
__all__ = ["ServerConfig", "ServerState", "create_app"]


def create_app(state: ServerState) -> invoke.InvokeApp:
    """Invoke and triggers served as raw ASGI (the hot path), the rest by Starlette."""

    async def ping(request: Request) -> Response:
        return JSONResponse({"goto": "https://github.com/fnproject/fn", "hello": "world!"})

    async def version(request: Request) -> Response:
        return JSONResponse({"version": state.version})

    async def health(request: Request) -> Response:
        """200 while the Docker daemon answers, else 503 with its error; both carry the
        containers and pool slots by state. Like ping, it needs no token."""
        report: dict[str, Any] = {"status": "ok", "docker": "up", **state.metrics.state()}
        try:
            await state.agent.driver.ping()
        except FnAgentError as exc:
            report.update(status="unavailable", docker="down", message=exc.message)
            return JSONResponse(report, status_code=503, headers=RETRY_AFTER)
        return JSONResponse(report)

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        check_token(state, request)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi.document())

    routes = [
        Route("/", ping, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/v2/stats", partial(stats, state), methods=["GET"]),
        *bind_routes(state, api.ROUTES),
        *ui.routes(state),
        *bind_routes(state, calls.ROUTES),
        *bind_routes(state, secrets.ROUTES),
    ]

    async def fn_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FnAgentError)
        return error_response_for(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_response(404, "Path not found")
        if exc.status_code == 405:
            return error_response(405, "Method not allowed", dict(exc.headers or {}))
        return error_response(exc.status_code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error", extra={"path": request.url.path})
        return error_response(500, "internal server error")

    starlette = Starlette(
        routes=routes,
        exception_handlers={
            FnAgentError: fn_error,
            HTTPException: http_error,
            Exception: unexpected,
        },
    )
    return invoke.InvokeApp(state, starlette, {runapi.RUN_PATH: runapi.serve_run})
