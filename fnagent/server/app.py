"""The ASGI app of ``fnagent serve``: Fn's v2 API, invoke, HTTP triggers, ping, version,
health, metrics and the OpenAPI document of what is implemented.

Errors are JSON ``{"message": ...}`` everywhere; every ``FnAgentError`` carries its status, so
one handler maps them all.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drivers.errors import FnAgentError
from fnagent.agent import RETRY_AFTER_S, Agent
from fnagent.server.metrics import Metrics
from fnagent.store.base import Store

if TYPE_CHECKING:
    from fnagent.server.invoke import InvokeApp

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_API_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_HEADER_TIMEOUT_S = 10.0
Handler = Callable[[Request], Awaitable[Response]]
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}
"""On every 503 the server answers itself, as the agent's call results carry it."""


class UnauthorizedError(FnAgentError):
    status = 401
    default_message = "Invalid authentication credentials"


class RequestTooLargeError(FnAgentError):
    status = 413
    default_message = "Request body too large"


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How the server listens and guards itself (FN_PORT, FN_MAX_REQUEST_SIZE, FN_TOKEN,
    FN_INVOKE_TOKEN and the bounds on what a client may send)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Bodies of /invoke and /t (0 = no limit)."""
    max_api_body_bytes: int = DEFAULT_MAX_API_BODY_BYTES
    """Bodies of every other route (the management API)."""
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """The request line and headers of one request, together."""
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    """From a connection's first byte (or its opening) until a request's headers are in."""
    token: str | None = None
    token_on_invoke: bool = False
    """Require the token on /invoke and /t too (management routes always require it when set)."""
    invoke_token: str | None = None
    """A token that may call /invoke and /t (and nothing else); setting it guards them."""

    def invoke_tokens(self) -> tuple[bytes, ...]:
        """The tokens /invoke and /t accept, as bytes; empty when they are not guarded."""
        tokens: list[str] = []
        if self.invoke_token:
            tokens.append(self.invoke_token)
        if self.token and (self.token_on_invoke or self.invoke_token):
            tokens.append(self.token)
        return tuple(token.encode() for token in tokens)


@dataclass(kw_only=True)
class ServerState:
    config: ServerConfig
    store: Store
    agent: Agent
    metrics: Metrics
    version: str = "0"
    cache: dict[str, Any] = field(default_factory=dict)
    """Function definitions for invoke and triggers (fnagent/server/invoke.py)."""
    writes: int = 0
    """Store writes so far: a lookup caches what it read only when none came in between."""

    def changed(self) -> None:
        """Call after every store write (once it committed): the cache is dropped."""
        self.writes += 1
        self.cache.clear()


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def bearer_matches(headers: list[tuple[bytes, bytes]], tokens: tuple[bytes, ...]) -> bool:
    """Whether the first ``Authorization`` header is ``Bearer <one of tokens>``.

    Bytes against bytes: the header as it came on the wire against each token's UTF-8 bytes,
    so a non-ASCII token matches a client that sends it in UTF-8."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            matched = False
            for token in tokens:
                # compare_digest: the time taken must not tell how much of a token was right;
                # every token is compared, so neither does which one matched.
                matched |= hmac.compare_digest(given, token)
            return matched and scheme.lower() == b"bearer"
    return False


def check_token(state: ServerState, request: Request) -> None:
    """Raise UnauthorizedError unless the request carries the management token (when one is
    configured)."""
    expected = state.config.token
    if expected and not bearer_matches(request.scope["headers"], (expected.encode(),)):
        raise UnauthorizedError()


def create_app(state: ServerState) -> InvokeApp:
    """Invoke and triggers served as raw ASGI (the hot path), the rest by Starlette."""
    from fnagent.server import api, invoke, openapi

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
        *api.routes(state),
    ]

    async def fn_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FnAgentError)
        headers = RETRY_AFTER if exc.status == 503 else None
        return error_response(exc.status, exc.message, headers)

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
    return invoke.InvokeApp(state, starlette)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or RequestTooLargeError as soon as it passes ``limit`` bytes (by its
    Content-Length, before reading, or while reading)."""
    too_large = RequestTooLargeError(f"Request body too large: over {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body (at most ``limit`` bytes, else 413) as a JSON object of valid
    Unicode; 400 with Fn's message otherwise, also for JSON Python's parser refuses (nesting
    past its recursion limit, integers of more than 4,300 digits) and lone surrogates."""
    from drivers.errors import InvalidInputError

    raw = await read_body(request, limit)
    try:
        document = json.loads(raw) if raw else None
        # A "\ud800" escape parses into a str no encoder, store or header takes.
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise InvalidInputError("Invalid JSON: the body holds text that is not Unicode") from None
    except RecursionError:
        raise InvalidInputError("Invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise InvalidInputError(f"Invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("Invalid JSON: the body must be a JSON object")
    return document
