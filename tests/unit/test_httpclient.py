"""The agent's HTTP client against an in-process unix-socket server that answers raw bytes:
body caps on every framing, 1xx interim responses, and responses it must refuse."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from fnagent.agent.httpclient import (
    MAX_RESPONSE_HEADERS,
    BodyTooLarge,
    ProtocolError,
    RequestTimeout,
    UnixHTTPConnection,
    is_hop_by_hop,
)
from fnagent.config import DEFAULT_MAX_RESPONSE_SIZE_BYTES

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(*scripts: Script) -> AsyncIterator[tuple[UnixHTTPConnection, list[int]]]:
    """A server that reads each request and runs the next script to answer it; yields a
    connection to it and the list of bytes each script managed to write before it stopped."""
    written: list[int] = []
    queue = list(scripts)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while queue:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                await queue.pop(0)(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    with tempfile.TemporaryDirectory(prefix="fnagent-http-") as folder:
        path = os.path.join(folder, "lsnr.sock")
        server = await asyncio.start_unix_server(handle, path)
        connection = UnixHTTPConnection(path)
        try:
            yield connection, written
        finally:
            connection.close()
            server.close()


def send(raw: bytes) -> Script:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return script


def endless(head: bytes, piece: bytes, written: list[int]) -> Script:
    """``head``, then ``piece`` over and over until the client goes away."""

    async def script(writer: asyncio.StreamWriter) -> None:
        total = 0
        try:
            writer.write(head)
            while True:
                writer.write(piece)
                total += len(piece)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            written.append(total)

    return script


async def post(connection: UnixHTTPConnection, **options: int) -> tuple[int, bytes]:
    with anyio.fail_after(10):
        response = await connection.request("POST", "/call", [], b"{}", **options)
    return response.status, response.body


# -- body caps --------------------------------------------------------------------------------


async def test_a_content_length_over_the_cap_is_refused_before_its_body_is_read() -> None:
    written: list[int] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"
    async with serving(endless(head, b"b" * 65536, written)) as (connection, _):
        with pytest.raises(BodyTooLarge):
            await post(connection, max_body_bytes=MIB)
        assert not connection.connected


async def test_a_chunked_body_without_end_stops_at_the_cap() -> None:
    written: list[int] = []
    piece = b"10000\r\n" + b"s" * 65536 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with serving(endless(head, piece, written)) as (connection, _):
        with pytest.raises(BodyTooLarge):
            await post(connection, max_body_bytes=MIB)
        assert not connection.connected


async def test_a_body_read_to_close_without_end_stops_at_the_cap() -> None:
    written: list[int] = []
    async with serving(endless(b"HTTP/1.1 200 OK\r\n\r\n", b"r" * 65536, written)) as (
        connection,
        _,
    ):
        with pytest.raises(BodyTooLarge):
            await post(connection, max_body_bytes=MIB)


async def test_the_default_cap_is_fn_like_and_finite() -> None:
    assert DEFAULT_MAX_RESPONSE_SIZE_BYTES == 6 * MIB
    over = DEFAULT_MAX_RESPONSE_SIZE_BYTES + 1
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % over
    async with serving(send(head + b"b" * over)) as (connection, _):
        with pytest.raises(BodyTooLarge):
            await post(connection)


async def test_a_body_at_the_cap_is_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"c" * 1024
    async with serving(
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"b" * 1024),
        send(chunked + b"\r\n0\r\n\r\n"),
    ) as (connection, _):
        assert await post(connection, max_body_bytes=1024) == (200, b"b" * 1024)
        assert await post(connection, max_body_bytes=1024) == (200, b"c" * 1024)


# -- interim responses ------------------------------------------------------------------------


async def test_interim_responses_are_skipped_and_the_connection_kept() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-A: 1\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nX-B: 2\r\nContent-Length: 2\r\n\r\nok"
    async with serving(send(interim + final), send(final)) as (connection, _):
        with anyio.fail_after(10):
            response = await connection.request("POST", "/call", [], b"{}")
        assert (response.status, response.body) == (200, b"ok")
        assert (response.header("X-A"), response.header("X-B")) == (None, "2")
        assert await post(connection) == (200, b"ok")


async def test_101_switching_protocols_is_refused() -> None:
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    async with serving(send(raw)) as (connection, _):
        with pytest.raises(ProtocolError, match="101"):
            await post(connection)


async def test_endless_interim_responses_are_refused() -> None:
    written: list[int] = []
    async with serving(endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n", written)) as (
        connection,
        _,
    ):
        with pytest.raises(ProtocolError, match="interim"):
            await post(connection)


# -- what the client refuses ------------------------------------------------------------------

BAD_RESPONSES = {
    "name with a space": b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
    "name with a separator": b"HTTP/1.1 200 OK\r\nX(y): z\r\nContent-Length: 0\r\n\r\n",
    "name with a control": b"HTTP/1.1 200 OK\r\nX\x01: y\r\nContent-Length: 0\r\n\r\n",
    "name not ASCII": b"HTTP/1.1 200 OK\r\nX\xe9: y\r\nContent-Length: 0\r\n\r\n",
    "empty name": b"HTTP/1.1 200 OK\r\n: y\r\nContent-Length: 0\r\n\r\n",
    "value with NUL": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "value with a control": b"HTTP/1.1 200 OK\r\nX-A: a\x1bb\r\nContent-Length: 0\r\n\r\n",
    "value with DEL": b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 0\r\n\r\n",
    "value with a bare CR": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
    "value with a bare LF": b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 0\r\n\r\n",
    "folded line": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "status not ASCII digits": "HTTP/1.1 ²00 OK\r\n\r\n".encode("latin-1"),
    "status of two digits": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "Content-Length not ASCII digits": "HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\n".encode(
        "latin-1"
    ),
    "two different Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    "chunk size with 0x": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nabcde\r\n",
    "chunk size line without end": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70000
    ),
    "too many headers": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(MAX_RESPONSE_HEADERS + 1))
    + b"Content-Length: 0\r\n\r\n",
    "header block too large": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"h" * 100_000
    + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("raw", BAD_RESPONSES.values(), ids=BAD_RESPONSES.keys())
async def test_a_malformed_response_is_a_protocol_error(raw: bytes) -> None:
    async with serving(send(raw)) as (connection, _):
        with pytest.raises(ProtocolError):
            await post(connection)
        assert not connection.connected


async def test_headers_up_to_the_limits_pass() -> None:
    flood = b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(MAX_RESPONSE_HEADERS - 2))
    raw = b"HTTP/1.1 200 OK\r\n" + flood + b"X-Latin: caf\xe9\tok\r\nContent-Length: 0\r\n\r\n"
    async with serving(send(raw)) as (connection, _):
        with anyio.fail_after(10):
            response = await connection.request("POST", "/call", [], b"{}")
    assert len(response.headers) == MAX_RESPONSE_HEADERS
    assert response.header("X-Latin") == "caf\xe9\tok"


async def test_204_has_no_body_whatever_it_announces() -> None:
    raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"
    async with serving(send(raw)) as (connection, _):
        assert await post(connection) == (204, b"")
        assert not connection.connected  # the announced body makes the framing untrustworthy


def test_expect_is_hop_by_hop() -> None:
    assert is_hop_by_hop("Expect") and is_hop_by_hop("expect")


# -- the request's timeout --------------------------------------------------------------------


def silent() -> Script:
    """Never answers (waits until the client goes away)."""

    async def script(writer: asyncio.StreamWriter) -> None:
        await anyio.sleep(30)

    return script


async def opened(connection: UnixHTTPConnection) -> None:
    """The connection opened by a first, answered request (timeout_s needs one open)."""
    assert await post(connection) == (200, b"ok")


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_response_that_does_not_come_in_time_cuts_the_connection() -> None:
    async with serving(send(OK), silent()) as (connection, _):
        await opened(connection)
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(RequestTimeout):
            await connection.request("POST", "/call", [], b"{}", timeout_s=0.2)
        assert anyio.current_time() - started >= 0.2
        assert not connection.connected


async def test_a_body_read_to_the_end_of_the_connection_cut_by_the_timeout_is_no_answer() -> None:
    written: list[int] = []
    async with serving(send(OK), endless(b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 16, written)) as (
        connection,
        _,
    ):
        await opened(connection)
        with anyio.fail_after(10), pytest.raises(RequestTimeout):
            await connection.request("POST", "/call", [], b"{}", timeout_s=0.2)


async def test_a_peer_that_never_reads_the_request_body_still_times_out() -> None:
    """The cut aborts the connection: it does not wait for a write buffer the peer will
    never drain."""
    with tempfile.TemporaryDirectory(prefix="fnagent-http-") as folder:
        path = os.path.join(folder, "lsnr.sock")
        held: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(OK)
            held.append(writer)  # then reads nothing more, and never closes

        server = await asyncio.start_unix_server(handle, path)
        connection = UnixHTTPConnection(path)
        try:
            await opened(connection)
            with anyio.fail_after(10), pytest.raises(RequestTimeout):
                await connection.request("POST", "/call", [], b"b" * (8 * MIB), timeout_s=0.2)
        finally:
            connection.close()
            for writer in held:
                writer.close()
            server.close()


async def test_an_answer_in_time_keeps_the_connection_and_no_timer_fires_later() -> None:
    async with serving(send(OK), send(OK), send(OK)) as (connection, _):
        await opened(connection)
        response = await connection.request("POST", "/call", [], b"{}", timeout_s=0.1)
        assert (response.status, response.body) == (200, b"ok")
        await anyio.sleep(0.2)
        assert connection.connected
        assert await post(connection) == (200, b"ok")


async def test_a_timeout_needs_an_open_connection() -> None:
    async with serving(send(OK)) as (connection, _):
        with pytest.raises(ValueError, match="open connection"):
            await connection.request("POST", "/call", [], b"{}", timeout_s=1)
