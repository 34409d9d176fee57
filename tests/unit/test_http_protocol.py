"""``fnagent serve``'s HTTP/1 connection (fnagent/server/protocol.py) through uvicorn's real
server on 127.0.0.1 with uvloop, as ``serve`` runs it, and a small raw ASGI app: what each
response costs in transport writes, and that holding a head back never delays, reorders or
loses what goes on the wire."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
import uvloop

from fnagent.server.protocol import OneWriteTransport, protocol_class

TIMEOUT_S = 10.0  # a client that waits longer has found a bug: it fails instead of hanging


class Recorder:
    """The connection's real transport, recording what reaches it: one entry per ``write`` or
    ``writelines`` (one system call either way)."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        self.writes.append(b"".join(parts))
        self._transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@dataclass
class Served:
    port: int
    writes: list[list[bytes]] = field(default_factory=list)  # per connection, in order
    release: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)


async def app(served: Served, scope: dict[str, Any], send: Any) -> None:
    """``/one``: 5 bytes with a length; ``/echo``: the query back; ``/nothing``: 204;
    ``/stream``: a chunked head, then (once the test releases it) one chunk and the end;
    ``/endless``: a chunk every few ms until the client goes; ``/boom``: raises."""
    path = scope["path"]
    if path == "/one":
        await send({"type": "http.response.start", "status": 200, "headers": _length(5)})
        await send({"type": "http.response.body", "body": b"hello"})
    elif path == "/echo":
        body = scope["query_string"]
        await send({"type": "http.response.start", "status": 200, "headers": _length(len(body))})
        await send({"type": "http.response.body", "body": body})
    elif path == "/nothing":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while not served.release.is_set():
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"later", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/endless":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(2000):  # bounded: about 10 s
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            await asyncio.sleep(0.005)
        served.errors.append("/endless ran out without the client going away")
    elif path == "/boom":
        raise RuntimeError("boom")


def _length(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/plain"), (b"content-length", str(n).encode())]


class _ErrorLog(logging.Handler):
    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(record.getMessage())


@pytest.fixture
def served() -> Iterator[Served]:
    """uvicorn with the server's protocol on a port of its own, in a thread; errors logged by
    uvicorn or the event loop are collected in ``errors``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    result = Served(port=sock.getsockname()[1])

    base = protocol_class(max_header_bytes=8192, max_headers=20, header_timeout_s=10.0)

    class Recording(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: Any) -> None:
            writes: list[bytes] = []
            result.writes.append(writes)
            super().connection_made(Recorder(transport, writes))

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(result, scope, send)

    config = uvicorn.Config(
        asgi,
        http=Recording,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    errors = _ErrorLog(result.errors)
    uv_log = logging.getLogger("uvicorn.error")
    uv_log.addHandler(errors)

    def run() -> None:
        def exception_handler(loop: Any, context: dict[str, Any]) -> None:
            result.errors.append(str(context.get("message")))

        async def serve() -> None:
            asyncio.get_running_loop().set_exception_handler(exception_handler)
            await server.serve(sockets=[sock])

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        server.should_exit = True
        thread.join(30)
        uv_log.removeHandler(errors)
        sock.close()
        assert not thread.is_alive()


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads HTTP/1.1 responses off a socket (a head, then a body by length or chunks)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def until(self, mark: bytes) -> bytes:
        while mark not in self.buffer:
            self._fill()
        taken, self.buffer = self.buffer.split(mark, 1)
        return taken + mark

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken

    def head(self) -> tuple[int, dict[str, str]]:
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        if head_only or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.until(b"\r\n")[:-2], 16):
                body += self.exactly(size + 2)[:-2]
            self.exactly(2)
            return status, headers, body
        return status, headers, self.exactly(int(headers["content-length"]))

    def closed(self) -> bool:
        """Whether the server closed the connection after everything read so far."""
        if self.buffer:
            return False
        return self.sock.recv(1) == b""


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n".encode()


def test_a_response_is_one_write_of_its_head_and_body(served: Served) -> None:
    with connect(served) as sock:
        reader = Reader(sock)
        for _ in range(3):  # keep-alive: each response on its own
            sock.sendall(get("/one"))
            assert reader.response()[::2] == (200, b"hello")
    writes = served.writes[0]
    assert len(writes) == 3, writes
    for write in writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\nhello")


def test_a_streaming_head_arrives_before_its_body_is_made(served: Served) -> None:
    with connect(served) as sock:
        reader = Reader(sock)
        sock.sendall(get("/stream"))
        status, headers = reader.head()  # the app is still waiting for the release
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        assert reader.buffer == b""
        served.release.set()
        body = b""
        while size := int(reader.until(b"\r\n")[:-2], 16):
            body += reader.exactly(size + 2)[:-2]
        assert body == b"later" and reader.exactly(2) == b"\r\n"
        sock.sendall(get("/one"))  # and the connection goes on
        assert reader.response()[::2] == (200, b"hello")


def test_head_and_204_answers_complete_on_a_kept_alive_connection(served: Served) -> None:
    with connect(served) as sock:
        reader = Reader(sock)
        sock.sendall(get("/one", "HEAD"))
        status, headers, _ = reader.response(head_only=True)
        assert (status, headers["content-length"]) == (200, "5")
        sock.sendall(get("/nothing"))
        assert reader.response()[0] == 204
        sock.sendall(get("/one"))
        assert reader.response()[::2] == (200, b"hello")
        assert reader.buffer == b""  # no body after the HEAD or the 204


def test_pipelined_requests_are_answered_in_order_each_in_one_write(served: Served) -> None:
    with connect(served) as sock:
        reader = Reader(sock)
        sock.sendall(b"".join(get(f"/echo?{i}") for i in range(8)))
        bodies = [reader.response()[2] for _ in range(8)]
    assert bodies == [str(i).encode() for i in range(8)]
    assert len(served.writes[0]) == 8


def test_a_client_gone_mid_response_raises_nothing(served: Served) -> None:
    with connect(served) as sock:
        reader = Reader(sock)
        sock.sendall(get("/endless"))
        reader.head()
        reader.exactly(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with connect(served) as sock:  # the server goes on; ask it until the stream has ended
        reader = Reader(sock)
        for _ in range(40):
            sock.sendall(get("/one"))
            assert reader.response()[::2] == (200, b"hello")
    assert served.errors == []


def test_errors_and_the_protocols_own_answers_arrive_whole(served: Served) -> None:
    with connect(served) as sock:  # the app raised: uvicorn's 500, then close
        reader = Reader(sock)
        sock.sendall(get("/boom"))
        assert reader.response()[::2] == (500, b"Internal Server Error")
        assert reader.closed()
    assert len(served.writes[0]) == 1, "the 500's head and body in one write"
    with connect(served) as sock:  # not HTTP: uvicorn's 400, then close
        reader = Reader(sock)
        sock.sendall(b"NOT HTTP\x00\r\n\r\n")
        assert reader.response()[0] == 400
        assert reader.closed()
    with connect(served) as sock:  # the protocol's 431, then its graceful close
        reader = Reader(sock)
        sock.sendall(b"GET /one HTTP/1.1\r\nx-big: " + b"a" * 9000)  # still in its head
        assert reader.response()[0] == 431
        assert reader.closed()
    with connect(served) as sock:  # a closing answer to HTTP/1.0, half-closed
        reader = Reader(sock)
        sock.sendall(b"GET /one HTTP/1.0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert reader.response()[::2] == (200, b"hello")
        assert reader.closed()
    with connect(served) as sock:  # Connection: close
        reader = Reader(sock)
        sock.sendall(get("/one", extra="connection: close\r\n"))
        status, headers, body = reader.response()
        assert (status, headers["connection"], body) == (200, "close", b"hello")
        assert reader.closed()
    assert served.errors == ["Exception in ASGI application\n"]


class LostTransport:
    """A transport whose connection is lost: closing, and (like uvloop's once
    ``connection_lost`` has run) raising on a write."""

    def is_closing(self) -> bool:
        return True

    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")


def test_what_is_held_when_the_connection_is_lost_is_dropped_at_the_turns_end() -> None:
    async def main() -> None:
        proxy = OneWriteTransport(LostTransport(), asyncio.get_running_loop())  # type: ignore[arg-type]
        proxy.write(b"a head")  # held; the connection is lost before the turn ends
        await asyncio.sleep(0)  # the end-of-turn flush has run

    errors: list[str] = []
    loop = uvloop.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context["message"]))
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert errors == []
