"""The HTTP/1 connection of ``fnagent serve``: uvicorn's httptools protocol with bounds on what
a client may send before its request reaches the app, and half-closed HTTP/1.0 requests
answered.

uvicorn bounds none of this with httptools (its ``h11_max_incomplete_event_size`` applies only
to h11, and httptools keeps a header's value in memory however long it grows), so:

- the request line and headers of one request together: at most ``max_header_bytes``;
- at most ``max_headers`` header fields;
- ``header_timeout_s`` from a connection's opening, or from a request's first byte, until its
  headers are complete;

each answered ``431`` / ``408`` with a JSON message and ``Connection: close``. After such an
answer the connection is closed gracefully: the write side first, then whatever the client
still sends is read and dropped for up to LINGER_S, so the client reads the answer instead of
a reset.

A client that sends a whole HTTP/1.0 request and then shuts its write side down (``nc -q``,
``printf ... | socat``) still gets its answer: after such an end of input the connection stays
open for the response. Over HTTP/1.1 the end of input means the client has gone and its call
is cancelled, as Go's and nginx's servers do (a TCP peer that half-closes looks the same as
one that closed until a write fails).

Each response goes out in one write when its head and body are sent back to back (uvicorn
writes the head of ``http.response.start`` and the body of ``http.response.body`` with a
``transport.write`` each): the connection's writes pass through ``OneWriteTransport``, which
holds a write back until the next one or the end of the event loop's turn. On the hot path
(an invoke's answer, a detached call's 202), where the server's event loop is the bottleneck,
that saves a system call and a wake-up of the client per response.
"""

from __future__ import annotations

import json
from asyncio import AbstractEventLoop, TimerHandle, Transport
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER_S = 2.0
"""How long a refused client may go on sending (dropped) before the connection is closed."""


class OneWriteTransport:
    """A connection's transport that writes what is written to it in one turn of the event
    loop in as few writes as it can, and otherwise as the transport itself would.

    Contract: a write made while nothing is held is held back; the next write, a ``close``
    or ``write_eof``, or the end of the current turn of the event loop (``call_soon``),
    whichever comes first, writes what is held (with that next write, as one ``writelines``:
    one system call, no copy under uvloop). So a response's head and body sent back to back
    go out together, while a head whose body comes later (a stream, a HEAD or 204 answer)
    still leaves before the loop waits for anything. The bytes and their order are
    unchanged; at most one write is held, so the transport's flow control (``pause_writing``
    at its high-water mark) lags by one write at most. What is still held at the end of the
    turn after the transport began closing by itself (the connection was lost) is dropped,
    as the transport drops writes then; uvloop's transport raises on a write once
    ``connection_lost`` has run, which that end-of-turn flush could otherwise meet.
    Everything else is the transport's.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: Transport, loop: AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if not data:
                return  # nothing to hold (uvicorn writes an empty body as b"")
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(parts))

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _TooManyHeaders(Exception):
    """Raised in the parser's header callback to stop parsing."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above (class attributes: see
    ``protocol_class``)."""

    max_header_bytes = 64 * 1024
    max_headers = 100
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_count = 0
        self._too_many_headers = False
        self._refused = False
        self._head_timer: TimerHandle | None = None
        self._linger_timer: TimerHandle | None = None

    # -- the bounds ----------------------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        # Everything uvicorn writes on this connection (each request's cycle is given
        # self.transport) and what this class writes go through the one proxy, in order.
        super().connection_made(cast(Transport, OneWriteTransport(transport, self.loop)))
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: drop what the client still sends
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that completes the headers (and carries some body)
        # counts as within bounds; httptools has held at most one chunk beyond the limit.
        if self._in_head and self._head_bytes > self.max_header_bytes and not self._refused:
            self._refuse(431, f"Request headers too large: over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_count = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.max_headers:
            self._too_many_headers = True
            raise _TooManyHeaders()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's bytes count from here

    def send_400_response(self, msg: str) -> None:
        # The parser stops on _TooManyHeaders with an error that uvicorn answers 400.
        if self._too_many_headers:
            self._refuse(431, f"Too many request headers: over {self.max_headers}")
        else:
            super().send_400_response(msg)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing() or not self._in_head:
            return
        if self._head_bytes:
            self._refuse(408, f"Request headers not received within {self.header_timeout_s:g} s")
        else:
            self.transport.close()  # nothing was asked: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close gracefully (see the module's docstring)."""
        self._refused = True
        self._disarm_head_timer()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = json.dumps({"message": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    # -- half-closed requests ------------------------------------------------------------------

    def eof_received(self) -> bool:  # type: ignore[override]
        """True keeps the connection open for writing (asyncio's contract)."""
        cycle = self.cycle
        if self._refused or cycle is None or cycle.response_complete:
            return False
        request_complete = not cycle.more_body
        return request_complete and cycle.scope["http_version"] == "1.0"

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)


def protocol_class(
    *, max_header_bytes: int, max_headers: int, header_timeout_s: float
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these bounds."""
    return type(
        "ServerHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "header_timeout_s": header_timeout_s,
        },
    )
