"""HTTP/1.1 over a unix socket: the agent's one kept-alive connection to a hot container.

Deliberately small: a request body is bytes (sent with Content-Length) or an async stream of
bytes (sent chunked, or with a Content-Length the caller vouches for); responses may use
Content-Length, chunked encoding, or run to the end of the connection. asyncio streams with a
plain-Python parser: measured (docs/design.md), this is the client shape that keeps the agent's
overhead well under a millisecond, where general clients cost one to two milliseconds a call.

The other end is untrusted code, so every response is bounded and checked before anyone sees
it: the body never past ``max_body_bytes`` whatever its framing (nothing more is read), at
most MAX_RESPONSE_HEADERS headers in MAX_HEADER_BYTES, names RFC 9110 tokens, values without
control characters (Latin-1 otherwise), a three-digit status; interim 1xx responses are skipped
(at most MAX_INTERIM_RESPONSES), a 101 is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass

from fnagent.config import DEFAULT_MAX_RESPONSE_SIZE_BYTES

MAX_HEADER_BYTES = 64 * 1024
MAX_RESPONSE_HEADERS = 100
MAX_INTERIM_RESPONSES = 10
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        # The caller's Expect is answered by the server; forwarded, the function answers it
        # with a 100 of its own.
        "expect",
    }
)
# Header lines, each ending CRLF: RFC 9110 §5.1 names are tokens; §5.5 values are visible
# characters, SP, HTAB and obs-text (0x80-0xFF), so no other control character (bare CR or LF,
# NUL, DEL included). One match over the whole block keeps the check in C, O(head size).
_FIELD_LINES = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_HEX = re.compile(r"[0-9A-Fa-f]{1,16}")


class ProtocolError(Exception):
    """The container broke HTTP: bad status line, bad headers, or a header block too big."""


class ConnectFailed(OSError):
    """Could not connect: nothing was sent, so the request may safely go elsewhere."""


class BodySizeMismatch(ValueError):
    """A streamed request body ended short of, or ran past, the Content-Length given for it
    (the connection is no longer usable)."""


class BodyTooLarge(Exception):
    """The response body is over the caller's limit (the connection is no longer usable)."""


class RequestTimeout(Exception):
    """The request's ``timeout_s`` passed before its whole response arrived (the connection
    was cut, so it is no longer usable)."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def is_hop_by_hop(name: str) -> bool:
    """Headers that describe one connection, never forwarded (plus Host and Content-Length,
    which the forwarding side sets itself)."""
    return name.lower() in _HOP_BY_HOP


class UnixHTTPConnection:
    """One HTTP/1.1 connection to ``path``, reused across requests, reopened when lost.

    Not safe for concurrent requests: the agent sends one call at a time per container.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
        *,
        max_body_bytes: int = DEFAULT_MAX_RESPONSE_SIZE_BYTES,
        content_length: int | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Send one request and read the whole (final) response, its body at most
        ``max_body_bytes`` (> 0: a response is always held in memory, so always bounded).

        A streamed ``body`` is sent as it is produced, waiting for the peer to take each
        chunk, so it is never held whole: chunked, or with ``content_length`` when the caller
        knows its size (a stream that then ends short or runs long raises BodySizeMismatch).

        ``timeout_s``, on a connection that is open already (``connected``): the whole
        exchange must end within it, or the connection is cut (aborted: whatever the peer
        still has to read or write, it ends now) and RequestTimeout raised. One timer on the
        event loop, which costs a hot call less than a cancel scope; opening a connection has
        no such bound (the caller's own deadline covers it), so a ``timeout_s`` without one is
        a ValueError.

        Raises OSError / asyncio.IncompleteReadError when the connection fails, ProtocolError
        for a malformed answer, BodyTooLarge as soon as the body passes the limit (the rest is
        never read); after any of them the connection is closed and the next request
        reconnects.
        """
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
        if timeout_s is not None and not self.connected:
            raise ValueError("timeout_s bounds a request on an open connection")
        if not self.connected:
            try:
                self._reader, self._writer = await _open(self.path)
            except OSError as exc:
                raise ConnectFailed(exc.errno, f"cannot connect to {self.path}: {exc}") from exc
        assert self._reader is not None and self._writer is not None
        if timeout_s is None:
            return await self._exchange(
                method, target, headers, body, max_body_bytes, content_length
            )
        writer = self._writer
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            writer.transport.abort()

        timer = asyncio.get_running_loop().call_later(max(timeout_s, 0.0), expire)
        try:
            response = await self._exchange(
                method, target, headers, body, max_body_bytes, content_length
            )
        except Exception:
            if expired:
                raise RequestTimeout() from None
            raise
        finally:
            timer.cancel()
        if expired:  # the cut ended a body read to the end of the connection: not all of it
            self.close()
            raise RequestTimeout()
        return response

    async def _exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
        max_body_bytes: int,
        content_length: int | None,
    ) -> Response:
        assert self._reader is not None and self._writer is not None
        head = [f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers)
        if isinstance(body, bytes):
            head.append(f"Content-Length: {len(body)}\r\n\r\n")
        elif content_length is not None:
            head.append(f"Content-Length: {content_length}\r\n\r\n")
        else:
            head.append("Transfer-Encoding: chunked\r\n\r\n")
        try:
            if isinstance(body, bytes):
                self._writer.write("".join(head).encode("latin-1") + body)
            else:
                self._writer.write("".join(head).encode("latin-1"))
                await _send_stream(self._writer, body, content_length)
            response, keep_alive = await _read_response(self._reader, max_body_bytes)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return response

    async def accepts(self) -> bool:
        """Whether ``path`` accepts a new connection now: its process is alive and listening."""
        try:
            _, writer = await _open(self.path)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()  # closed now, not when the loop next gets to it
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _send_stream(
    writer: asyncio.StreamWriter, body: AsyncIterable[bytes], content_length: int | None
) -> None:
    """Write ``body`` as it comes: raw up to ``content_length``, else chunked."""
    sent = 0
    async for chunk in body:
        if not chunk:
            continue  # an empty chunk would end a chunked body
        sent += len(chunk)
        if content_length is None:
            writer.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        elif sent > content_length:
            raise BodySizeMismatch(f"the body runs past its Content-Length {content_length}")
        else:
            writer.write(chunk)
        await writer.drain()
    if content_length is None:
        writer.write(b"0\r\n\r\n")
    elif sent != content_length:
        raise BodySizeMismatch(f"the body ended at {sent} of its Content-Length {content_length}")


# sockaddr_un holds 108 bytes; a longer path is reached through its directory's descriptor.
_MAX_SOCKET_PATH = 100


async def _open(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if len(os.fsencode(path)) < _MAX_SOCKET_PATH:
        return await asyncio.open_unix_connection(path)
    directory = os.open(os.path.dirname(path), os.O_PATH)
    try:
        short = f"/proc/self/fd/{directory}/{os.path.basename(path)}"
        return await asyncio.open_unix_connection(short)
    finally:
        os.close(directory)


async def _read_response(reader: asyncio.StreamReader, max_body: int) -> tuple[Response, bool]:
    for _ in range(MAX_INTERIM_RESPONSES + 1):
        try:
            block = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError("response headers too large") from None
        version, status, headers, fields = _parse_head(block)
        if status >= 200:
            break
        if status == 101:
            raise ProtocolError("101 Switching Protocols: no protocol switch on this connection")
    else:
        raise ProtocolError(f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")
    keep_alive = version == "HTTP/1.1"
    connection = fields.get("connection", "").lower()
    if "close" in connection:
        keep_alive = False
    elif "keep-alive" in connection:
        keep_alive = True
    length = fields.get("content-length")
    if status in (204, 304):
        # No body, whatever the head announces (RFC 9110 §6.4.1); one announced anyway means
        # its framing cannot be trusted.
        body = b""
        if (length is not None and length != "0") or "transfer-encoding" in fields:
            keep_alive = False
    elif "chunked" in fields.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, max_body)
    elif length is not None:
        size = int(length)
        if size > max_body:
            raise BodyTooLarge(size)
        body = await reader.readexactly(size)
    else:
        body = await _read_to_end(reader, max_body)
        keep_alive = False
    return Response(status, headers, body), keep_alive


def _parse_head(block: bytes) -> tuple[str, int, list[tuple[str, str]], dict[str, str]]:
    """One response head: version, status, the headers, and the framing fields by lowered
    name (content-length, transfer-encoding, connection), each checked."""
    if len(block) > MAX_HEADER_BYTES:
        raise ProtocolError("response headers too large")
    status_line, _, text = block[:-2].decode("latin-1").partition("\r\n")
    if not _FIELD_LINES.fullmatch(text):
        bad = next(line for line in text.split("\r\n") if not _FIELD_LINES.fullmatch(line + "\r\n"))
        raise ProtocolError(f"bad header line {bad[:100]!r}")
    lines = text.split("\r\n")
    lines.pop()  # what follows the last CRLF: nothing
    if len(lines) > MAX_RESPONSE_HEADERS:
        raise ProtocolError(f"more than {MAX_RESPONSE_HEADERS} response headers")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if (
        not version.startswith("HTTP/1.")
        or len(code) != 3
        or not code.isascii()
        or not code.isdigit()
        or rest[3:4] not in ("", " ")
    ):
        raise ProtocolError(f"bad status line {status_line[:100]!r}")
    headers: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        value = value.strip(" \t")
        lowered = name.lower()
        if lowered == "content-length":
            if not (value.isascii() and value.isdigit()):
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            if fields.setdefault(lowered, value) != value:
                raise ProtocolError("conflicting Content-Length headers")
        elif lowered in ("transfer-encoding", "connection"):
            fields[lowered] = f"{fields[lowered]}, {value}" if lowered in fields else value
        headers.append((name, value))
    return version, int(code), headers, fields


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = (await _read_line(reader))[:-2].split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size_text.decode("latin-1")):
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            trailers = 0
            while (line := await _read_line(reader)) != b"\r\n":
                trailers += len(line)  # ignored, but bounded like a head
                if trailers > MAX_HEADER_BYTES:
                    raise ProtocolError("response trailers too large")
            return b"".join(parts)
        total += size
        if total > max_body:
            raise BodyTooLarge(total)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("bad chunk terminator")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError("chunk line too long") from None


async def _read_to_end(reader: asyncio.StreamReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > max_body:
            raise BodyTooLarge(total)
        parts.append(chunk)
    return b"".join(parts)
