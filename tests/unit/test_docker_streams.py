"""A container's attach connection (drivers/docker/streams.py) over a socketpair: Docker's
multiplexed frames cut anywhere, sinks that push back, the end of the stream, stdin."""

from __future__ import annotations

import io
import socket
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from drivers.base import TaskLogger
from drivers.docker.streams import (
    STDERR,
    STDOUT,
    FrameSplitter,
    copy_output,
    feed_input,
    wrap_socket,
)


def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


FRAMES = [(STDOUT, b"out 1\n"), (STDERR, b"err 1\n"), (STDOUT, b""), (STDOUT, b"x" * 70_000)]
WIRE = b"".join(frame(kind, payload) for kind, payload in FRAMES)


@pytest.mark.parametrize("cut", [1, 3, 8, 9, 1000, len(WIRE)])
def test_frames_cut_anywhere_come_out_whole_and_in_order(cut: int) -> None:
    splitter = FrameSplitter()
    got = []
    for i in range(0, len(WIRE), cut):
        got.extend(splitter.feed(WIRE[i : i + cut]))
    assert got == FRAMES


def pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(True)
    return ours, theirs


@pytest.mark.anyio
async def test_output_goes_to_its_sinks_until_the_end_of_the_stream() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    out, err = io.BytesIO(), io.BytesIO()
    # Written before copy_output starts: kept for it, not lost.
    theirs.sendall(WIRE[:20])
    async with anyio.create_task_group() as tg:
        tg.start_soon(copy_output, stream, TaskLogger(stdout=out, stderr=err))
        for i in range(20, len(WIRE), 777):
            theirs.sendall(WIRE[i : i + 777])
            await anyio.lowlevel.checkpoint()
        theirs.close()  # the end: copy_output returns
    assert out.getvalue() == b"out 1\n" + b"x" * 70_000
    assert err.getvalue() == b"err 1\n"
    await stream.aclose()


class SlowSink:
    """A sink that pushes back: each write waits until ``release`` is set."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.release = anyio.Event()
        self.waiting = 0

    def write(self, data: bytes) -> object:
        self.got.append(data)
        return self._wait()

    async def _wait(self) -> None:
        self.waiting += 1
        await self.release.wait()


@pytest.mark.anyio
async def test_a_sink_that_pushes_back_holds_the_rest_in_order() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    slow, err = SlowSink(), io.BytesIO()
    async with anyio.create_task_group() as tg:
        tg.start_soon(copy_output, stream, TaskLogger(stdout=slow, stderr=err))
        theirs.sendall(frame(STDOUT, b"a") + frame(STDERR, b"e") + frame(STDOUT, b"b"))
        with anyio.fail_after(10):
            while not slow.waiting:
                await anyio.sleep(0.001)
        theirs.sendall(frame(STDERR, b"later"))
        for _ in range(20):
            await anyio.sleep(0.001)
        assert slow.got == [b"a"]  # nothing after the write that pushed back is written yet
        assert err.getvalue() == b""
        slow.release.set()
        theirs.close()
    assert slow.got == [b"a", b"b"]
    assert err.getvalue() == b"elater"
    await stream.aclose()


@pytest.mark.anyio
async def test_closing_the_stream_ends_copy_output() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    out = io.BytesIO()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(copy_output, stream, TaskLogger(stdout=out))
            theirs.sendall(frame(STDOUT, b"hi"))
            while out.getvalue() != b"hi":
                await anyio.sleep(0.001)
            await stream.aclose()
    theirs.close()


@pytest.mark.anyio
async def test_output_after_a_cancelled_copy_is_left_unread() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    out = io.BytesIO()
    with anyio.move_on_after(0.05):
        await copy_output(stream, TaskLogger(stdout=out))
    theirs.sendall(frame(STDOUT, b"late"))
    for _ in range(20):
        await anyio.sleep(0.001)
    assert out.getvalue() == b""
    await stream.aclose()
    theirs.close()


@pytest.mark.anyio
async def test_feed_input_sends_everything_then_half_closes() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    big = b"y" * (4 * 1024 * 1024)  # more than the kernel buffers: send waits for the reader

    async def source() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield big

    received = bytearray()

    def read_all() -> None:
        while chunk := theirs.recv(65536):
            received.extend(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, read_all)
        await feed_input(stream, source())
    assert bytes(received) == b"hello " + big
    await stream.aclose()
    theirs.close()


@pytest.mark.anyio
async def test_feed_input_to_a_closed_stream_stops_quietly() -> None:
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    await stream.aclose()

    async def source() -> AsyncIterator[bytes]:
        yield b"x"

    await feed_input(stream, source())
    theirs.close()


@pytest.mark.anyio
async def test_closing_with_stdin_unsent_closes_at_once() -> None:
    """A container that does not read its stdin cannot hold the connection open past aclose."""
    ours, theirs = pair()
    stream = await wrap_socket(ours)
    with anyio.move_on_after(0.2):
        await stream.send(b"z" * (8 * 1024 * 1024))  # more than the kernel takes: waits
    await stream.aclose()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(copy_output, stream, TaskLogger())  # ends: the connection is gone
    theirs.close()


def test_the_stream_works_on_uvloop() -> None:
    """``fnagent serve`` runs on uvloop: the same transport calls there."""

    async def main() -> None:
        await test_output_goes_to_its_sinks_until_the_end_of_the_stream()
        await test_a_sink_that_pushes_back_holds_the_rest_in_order()
        await test_closing_the_stream_ends_copy_output()
        await test_closing_with_stdin_unsent_closes_at_once()

    anyio.run(main, backend_options={"use_uvloop": True})
