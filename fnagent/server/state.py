"""What every route of ``fnagent serve`` shares: the server's state, its token checks, bounded
body readers and JSON error responses. The routes (``api``, ``invoke``) and the app that
assembles them (``app``) import this module; it imports none of them."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fnagent.agent import Agent
from fnagent.config import ServerConfig
from fnagent.errors import (
    FnAgentError,
    InvalidInputError,
    MethodNotAllowedError,
    RequestTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
)
from fnagent.records import Recorder
from fnagent.secretbox import SecretBox
from fnagent.server.detached import CallObserver, Dispatcher, NoObserver
from fnagent.server.metrics import Metrics
from fnagent.store.base import Store

RETRY_AFTER_S = 15
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}
"""On every 503 the server answers, its own and a failed call's (fnagent/server/invoke.py)."""


@dataclass(kw_only=True)
class ServerState:
    config: ServerConfig
    store: Store
    agent: Agent
    metrics: Metrics
    version: str = "0"
    secretbox: SecretBox = field(default_factory=SecretBox.generate)
    """Seals secret values for the store and opens them for launches (``serve`` gives the
    key file's; the default, a new random key, suits a store that lives in memory)."""
    cache: dict[str, Any] = field(default_factory=dict)
    """Function definitions for invoke and triggers (fnagent/server/invoke.py)."""
    writes: int = 0
    """Store writes so far: a lookup caches what it read only when none came in between."""
    dispatcher: Dispatcher | None = None
    """Runs detached calls (fnagent/server/detached.py); None: they stay queued."""
    observer: CallObserver = field(default_factory=NoObserver)
    """Told when a detached call is queued (the dispatcher tells it the rest)."""
    recorder: Recorder | None = None
    """Where every call's record goes (fnagent.records); None: calls are not recorded."""

    def changed(self) -> None:
        """Call after every store write (once it committed): the cache is dropped."""
        self.writes += 1
        self.cache.clear()


Handler = Callable[[ServerState, Request], Awaitable[Response]]
"""A management route's handler: the server's state and the request."""


def bind_routes(state: ServerState, table: Sequence[tuple[str, str, Handler]]) -> list[Route]:
    """Starlette routes for a table of (path, method, handler), each handler bound to
    ``state``."""
    return [
        Route(path, partial(handler, state), methods=[method]) for path, method, handler in table
    ]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def retry_after(exc: FnAgentError) -> str | None:
    """The Retry-After an error's answer carries: on a 503, RETRY_AFTER_S; on a 429 (a fn's
    max-concurrency), the error's own estimate; else none."""
    if isinstance(exc, TooManyRequestsError):
        return str(exc.retry_after_s)
    if exc.status == 503:
        return str(RETRY_AFTER_S)
    return None


def error_response_for(exc: FnAgentError) -> Response:
    """The JSON answer for a raised error (its ``document()``); a 503 or 429 carries
    Retry-After (``retry_after``), a 405 the route's methods in ``Allow``."""
    headers: dict[str, str] = {}
    seconds = retry_after(exc)
    if seconds is not None:
        headers["Retry-After"] = seconds
    if isinstance(exc, MethodNotAllowedError):
        headers["Allow"] = ", ".join(exc.allowed)
    return JSONResponse(exc.document(), status_code=exc.status, headers=headers or None)


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
