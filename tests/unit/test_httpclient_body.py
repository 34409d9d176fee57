"""UnixHTTPConnection sends a streamed request body: chunked, or with a known Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from fnagent.agent.httpclient import BodySizeMismatch, UnixHTTPConnection

pytestmark = pytest.mark.anyio


@dataclass
class Seen:
    """What the in-process server received, request by request."""

    heads: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    raw_chunk_sizes: list[list[int]] = field(default_factory=list)
    connections: list[asyncio.Task[None]] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader, seen: Seen) -> None:
    block = await reader.readuntil(b"\r\n\r\n")
    lines = block[:-4].decode("latin-1").split("\r\n")[1:]
    head = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    seen.heads.append(head)
    sizes: list[int] = []
    if head.get("transfer-encoding") == "chunked":
        assert "content-length" not in head
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            sizes.append(size)
            if size == 0:
                assert await reader.readuntil(b"\r\n") == b"\r\n"
                break
            parts.append(await reader.readexactly(size))
            assert await reader.readexactly(2) == b"\r\n"
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(head["content-length"]))
    seen.bodies.append(body)
    seen.raw_chunk_sizes.append(sizes)


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "lsnr.sock")


@contextlib.asynccontextmanager
async def serving(path: str) -> AsyncIterator[Seen]:
    """A unix-socket server answering each request with its body's length; on exit it waits
    for its connections to see the client hang up."""
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.connections.append(task)
        try:
            while True:
                await _read_request(reader, seen)
                answer = str(len(seen.bodies[-1])).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, path)
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*seen.connections)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_streamed_body_is_sent_chunked_and_the_connection_is_reused(
    socket_path: str,
) -> None:
    async with serving(socket_path) as seen:
        connection = UnixHTTPConnection(socket_path)
        try:
            first = await connection.request("POST", "/call", [], _chunks(b"hi ", b"", b"you"))
            second = await connection.request("POST", "/call", [], _chunks())
            third = await connection.request("POST", "/call", [], b"plain")
        finally:
            connection.close()
    assert (first.status, first.body) == (200, b"6")
    assert (second.status, second.body) == (200, b"0")
    assert third.body == b"5"
    assert seen.bodies == [b"hi you", b"", b"plain"]
    # An empty chunk from the source is not sent: it would end the body early.
    assert seen.raw_chunk_sizes[:2] == [[3, 3, 0], [0]]
    assert seen.heads[2]["content-length"] == "5"


async def test_a_streamed_body_of_known_length_is_sent_with_content_length(
    socket_path: str,
) -> None:
    async with serving(socket_path) as seen:
        connection = UnixHTTPConnection(socket_path)
        try:
            response = await connection.request(
                "POST", "/call", [], _chunks(b"abc", b"defg"), content_length=7
            )
        finally:
            connection.close()
    assert response.body == b"7"
    assert seen.heads[0]["content-length"] == "7"
    assert "transfer-encoding" not in seen.heads[0]
    assert seen.bodies == [b"abcdefg"]


@pytest.mark.parametrize("parts", [(b"abc",), (b"abc", b"defgh")])
async def test_a_source_that_disagrees_with_its_content_length_fails_the_request(
    socket_path: str, parts: tuple[bytes, ...]
) -> None:
    async with serving(socket_path) as seen:
        connection = UnixHTTPConnection(socket_path)
        try:
            with pytest.raises(BodySizeMismatch, match="Content-Length"):
                await connection.request("POST", "/call", [], _chunks(*parts), content_length=7)
            assert not connection.connected, "a half-sent request leaves the connection unusable"
        finally:
            connection.close()
        with anyio.fail_after(5):
            while not seen.connections:  # the server has yet to accept the connection
                await anyio.sleep(0.001)
    assert seen.bodies == []


async def test_a_large_streamed_body_is_sent_as_it_is_read(socket_path: str) -> None:
    """The sender waits for the peer (drain), so the whole body is never held at once."""
    buffered: list[int] = []
    connection = UnixHTTPConnection(socket_path)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(256):
            writer = connection._writer
            assert writer is not None
            buffered.append(writer.transport.get_write_buffer_size())
            yield b"x" * 65536

    async with serving(socket_path):
        try:
            response = await connection.request("POST", "/call", [], source())
        finally:
            connection.close()
    assert response.body == str(256 * 65536).encode()
    assert len(buffered) == 256
    assert max(buffered) < 1024 * 1024, "the sender ran ahead of the peer"
