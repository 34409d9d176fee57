"""HTTP/1.1 over a unix socket: the agent's one kept-alive connection to a hot container.

Deliberately small: a request body is bytes (sent with Content-Length) or an async stream of
bytes (sent chunked, or with a Content-Length the caller vouches for); responses may use
Content-Length, chunked encoding, or run to the end of the connection. asyncio streams with a
plain-Python parser: measured (DESIGN.md §8), this is the client shape that keeps the agent's
overhead well under a millisecond, where general clients cost one to two milliseconds a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
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
    }
)


class ProtocolError(Exception):
    """The container broke HTTP: bad status line, bad headers, or a header block too big."""


class ConnectFailed(OSError):
    """Could not connect: nothing was sent, so the request may safely go elsewhere."""


class BodySizeMismatch(ValueError):
    """A streamed request body ended short of, or ran past, the Content-Length given for it
    (the connection is no longer usable)."""


class BodyTooLarge(Exception):
    """The response body is over the caller's limit (the connection is no longer usable)."""


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
        max_body_bytes: int = 0,
        content_length: int | None = None,
    ) -> Response:
        """Send one request and read the whole response. ``max_body_bytes`` 0 = no limit.

        A streamed ``body`` is sent as it is produced, waiting for the peer to take each
        chunk, so it is never held whole: chunked, or with ``content_length`` when the caller
        knows its size (a stream that then ends short or runs long raises BodySizeMismatch).

        Raises OSError / asyncio.IncompleteReadError when the connection fails, ProtocolError
        for a malformed answer, BodyTooLarge over the limit; after any of them the connection
        is closed and the next request reconnects.
        """
        if not self.connected:
            try:
                self._reader, self._writer = await _open(self.path)
            except OSError as exc:
                raise ConnectFailed(exc.errno, f"cannot connect to {self.path}: {exc}") from exc
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
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError("response headers too large") from None
    if len(block) > MAX_HEADER_BYTES:
        raise ProtocolError("response headers too large")
    lines = block[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, _ = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"bad status line {lines[0][:100]!r}")
    headers: list[tuple[str, str]] = []
    length: int | None = None
    chunked = False
    keep_alive = version == "HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:100]!r}")
        value = value.strip()
        lowered = name.lower()
        if lowered == "content-length":
            if not value.isdigit():
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif lowered == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif lowered == "connection":
            keep_alive = "close" not in value.lower() and (
                keep_alive or "keep-alive" in value.lower()
            )
        headers.append((name, value))
    status = int(code)
    if chunked:
        body = await _read_chunked(reader, max_body)
    elif length is not None:
        if max_body and length > max_body:
            raise BodyTooLarge(length)
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await _read_to_end(reader, max_body)
        keep_alive = False
    return Response(status, headers, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers, ignored
            return b"".join(parts)
        total += size
        if max_body and total > max_body:
            raise BodyTooLarge(total)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("bad chunk terminator")


async def _read_to_end(reader: asyncio.StreamReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if max_body and total > max_body:
            raise BodyTooLarge(total)
        parts.append(chunk)
    return b"".join(parts)
