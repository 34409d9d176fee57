"""Fn's http-stream contract, written once: what a container is told, what it is sent, and
how its answer becomes the caller's. The hot agent and ``fnagent run`` both use it.

- The container's environment: the fn's config, then Fn's ``FN_*`` variables, with
  ``FN_LISTENER`` naming ``lsnr.sock`` in the directory the driver mounts the socket dir at
  (``Driver.iofs_mount``, one setting); a hot container also gets the log-frame variables.
- The request: the caller's headers (hop-by-hop ones dropped; through a trigger, wrapped as
  ``Fn-Http-H-<name>`` with the gateway's ``Fn-Intent``), then ``Fn-Call-Id`` and
  ``Fn-Deadline``, the call's deadline in RFC 3339 with milliseconds, UTC ``Z``.
- The response: the container's own status picks the status table's error (502: the
  function failed; 504: it timed out; anything but 200: an invalid response); on 200,
  ``Fn-Http-Status`` sets the caller's status and the headers are filtered.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from fnagent.agent.calllogs import FRAME_ENV
from fnagent.agent.httpclient import Response, is_hop_by_hop
from fnagent.agent.readiness import LISTENER
from fnagent.errors import (
    FnAgentError,
    FunctionFailedError,
    FunctionTimeoutError,
    InvalidResponseError,
)
from fnagent.models import FORMAT_HTTP_STREAM, Call, Fn

MIB = 1024 * 1024
# Headers only the agent sets on a request: a caller's own are dropped.
_OWN_HEADERS = frozenset({"fn-call-id", "fn-deadline"})
# Response headers the caller gets from the agent or its server only, never from a function.
_SERVER_HEADERS = frozenset({"fn-call-id", "server", "date"})
_TRIGGER_PREFIX = "fn-http-h-"


def listener_address(iofs_mount: str) -> str:
    """``FN_LISTENER``: the unix socket the function listens on, as the container sees it."""
    return f"unix:{iofs_mount}/{LISTENER}"


def environment(
    *,
    listener: str,
    memory_mb: int,
    config: Mapping[str, str] | None = None,
    identity: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A container's env: ``config`` (app config, fn config over it; or ``fnagent run``'s
    ``--env``), ``identity`` (FN_FN_ID, FN_APP_ID, FN_FN_NAME, FN_APP_NAME when there is a
    stored fn), then the contract's own variables, which nothing overrides."""
    return {
        **(config or {}),
        **(identity or {}),
        "FN_MEMORY": str(memory_mb),
        "FN_TMPSIZE": "0",
        "FN_TYPE": "sync",
        "FN_FORMAT": FORMAT_HTTP_STREAM,
        "FN_LISTENER": listener,
    }


def fn_environment(fn: Fn, listener: str) -> dict[str, str]:
    """The env of one of ``fn``'s hot containers; with ``FN_LOGFRAME_NAME`` and
    ``FN_LOGFRAME_HDR``, so that FDKs frame each call's output (fnagent/agent/calllogs.py)."""
    return {
        **environment(
            listener=listener,
            memory_mb=fn.memory_mb,
            config={**fn.app_config, **fn.config},
            identity={
                "FN_FN_ID": fn.id,
                "FN_APP_ID": fn.app_id,
                "FN_FN_NAME": fn.name,
                "FN_APP_NAME": fn.app_name,
            },
        ),
        **FRAME_ENV,
    }


def deadline_header(remaining_s: float, now: datetime | None = None) -> str:
    """``Fn-Deadline``: ``remaining_s`` from ``now``, RFC 3339 with milliseconds, UTC ``Z``.

    Every call sends one, so it is made from Unix time with the text up to the second made
    once per second (``_utc_second``)."""
    start = time.time() if now is None else now.timestamp()
    second, micros = divmod(round((start + remaining_s) * 1_000_000), 1_000_000)
    return f"{_utc_second(second)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=16)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def call_headers(
    headers: Iterable[tuple[str, str]], call_id: str, remaining_s: float
) -> list[tuple[str, str]]:
    """``headers`` (a caller's own Fn-Call-Id and Fn-Deadline dropped), then the agent's."""
    out = [(name, value) for name, value in headers if name.lower() not in _OWN_HEADERS]
    _add_own(out, call_id, remaining_s)
    return out


def _add_own(out: list[tuple[str, str]], call_id: str, remaining_s: float) -> None:
    out.append(("Fn-Call-Id", call_id))
    out.append(("Fn-Deadline", deadline_header(remaining_s)))


def request_headers(call: Call) -> list[tuple[str, str]]:
    """The headers sent to a hot container: hop-by-hop ones and values with CR or LF dropped;
    through a trigger, every caller header but Content-Type wrapped as Fn-Http-H-<name>."""
    out: list[tuple[str, str]] = []
    for name, value in call.request.headers:
        lowered = name.lower()
        if is_hop_by_hop(name) or lowered in _OWN_HEADERS or "\r" in value or "\n" in value:
            continue
        if call.trigger and lowered != "content-type":
            out.append((f"Fn-Http-H-{name}", value))
        else:
            out.append((name, value))
    if call.trigger:
        out.append(("Fn-Intent", "httprequest"))
        out.append(("Fn-Http-Method", call.request.method))
        out.append(("Fn-Http-Request-Url", call.request.url))
    _add_own(out, call.id, call.remaining_s())
    return out


def status_error(status: int) -> FnAgentError | None:
    """The status table's error for the container's own HTTP status; None for 200 (the
    response is the function's answer, mapped by ``response_headers``)."""
    if status == 200:
        return None
    if status == 502:
        return FunctionFailedError()
    if status == 504:
        return FunctionTimeoutError("Timed out")
    return InvalidResponseError(f"invalid function response: the container answered {status}")


def response_headers(response: Response, *, trigger: bool) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers the caller gets: Fn-Http-Status sets the status (200-599, else
    InvalidResponseError); through a trigger, Fn-Http-H-* headers are unwrapped. Headers that
    frame the body or describe the connection, and those the server sets itself (Fn-Call-Id,
    Server, Date), are dropped, wrapped or not. Names and values were checked by the client."""
    status = 200
    headers: list[tuple[str, str]] = []
    for name, value in response.headers:
        lowered = name.lower()
        if lowered == "fn-http-status":
            if not (len(value) == 3 and value.isascii() and value.isdigit()) or not (
                200 <= int(value) <= 599
            ):
                raise InvalidResponseError(
                    f"invalid function response: Fn-Http-Status {value[:20]!r} is not 200-599"
                )
            status = int(value)
            continue
        if trigger and lowered.startswith(_TRIGGER_PREFIX):
            name = name[len(_TRIGGER_PREFIX) :]
            if not name:
                raise InvalidResponseError("invalid function response: empty header name")
            lowered = lowered[len(_TRIGGER_PREFIX) :]
        if is_hop_by_hop(lowered) or lowered in _SERVER_HEADERS:
            continue
        headers.append((name, value))
    return status, headers
