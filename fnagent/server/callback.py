"""Callbacks of detached calls: the ``Fn-Callback-Url`` a caller gave, checked on the way in
and POSTed the call's result when it completes.

The POST is a small HTTP/1.1 client on anyio streams (no client library): one request per
connection, ``Connection: close``, the answer's status line read and nothing more, each
attempt bounded by a timeout, a bounded number of attempts with a doubling pause. A callback
that cannot be delivered is logged and dropped; it never changes the call's outcome.

The URL is the caller's: it may name any address this server reaches, internal ones included
(the README says so; no allow-list yet).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

import anyio
import anyio.abc

from fnagent.errors import InvalidInputError

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
# The status line of the receiver's answer; nothing past it is read.
MAX_STATUS_LINE = 1024
FIRST_RETRY_PAUSE_S = 0.5


def check_callback_url(text: str) -> str:
    """``text`` if it is an absolute http or https URL with a host (and a valid port);
    InvalidInputError (400) otherwise."""
    problem = _url_problem(text)
    if problem:
        raise InvalidInputError(f"invalid Fn-Callback-Url: {problem}")
    return text


def _url_problem(text: str) -> str | None:
    if len(text) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters"
    if any(char.isspace() or ord(char) < 32 or ord(char) >= 127 for char in text):
        return "it holds spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  # raises ValueError for a port that is not one
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "use an http:// or https:// URL"
    if not parts.hostname:
        return "the URL names no host"
    return None


async def post_callback(
    url: str,
    *,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    timeout_s: float,
    attempts: int,
) -> int | None:
    """POST ``body`` with ``headers`` to ``url``: up to ``attempts`` tries, each within
    ``timeout_s``, until the receiver answers a status below 500. Returns that status, or None
    when every try failed (connection refused, timeout, 5xx); never raises for the receiver's
    doing."""
    pause = FIRST_RETRY_PAUSE_S
    for attempt in range(1, attempts + 1):
        problem: str
        try:
            with anyio.fail_after(timeout_s):
                status = await _post_once(urlsplit(url), headers, body)
            if status < 500:
                return status
            problem = f"answered {status}"
        except TimeoutError:
            problem = f"no answer within {timeout_s:g} s"
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError) as exc:
            problem = str(exc) or type(exc).__name__
        except ValueError as exc:  # a status line that is not one
            problem = str(exc)
        logger.warning(
            "callback failed",
            extra={"callback_url": url, "attempt": attempt, "problem": problem},
        )
        if attempt < attempts:
            await anyio.sleep(pause)
            pause *= 2
    return None


async def _post_once(parts: SplitResult, headers: Sequence[tuple[str, str]], body: bytes) -> int:
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    stream: anyio.abc.ByteStream
    if tls:
        stream = await anyio.connect_tcp(host, port, tls=True, tls_hostname=host)
    else:
        stream = await anyio.connect_tcp(host, port)
    async with stream:
        await stream.send(head + body)
        received = b""
        while b"\r\n" not in received and len(received) < MAX_STATUS_LINE:
            try:
                received += await stream.receive()
            except anyio.EndOfStream:
                break
    status_line = received.split(b"\r\n", 1)[0]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/") or not code.isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(code)
