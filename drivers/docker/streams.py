"""Container stdio over a hijacked attach connection, without threads.

docker-py opens the attach request; we take a duplicate of its socket and hand it to the event
loop as a transport (``AttachedStream``). The container's output is demultiplexed in the
transport's read callback and written to the task's sinks there and then: a chunk costs one
callback, not a task switch, a checkpoint and a reader registration as an anyio stream's
``receive`` does (on a hot container every call's two log frames come this way: with the stream,
reading them was about a quarter of the server's sampled CPU at concurrency 16). A sink that
pushes back (its ``write`` returns an awaitable) pauses reading until it is done, so a slow
reader still slows the container instead of being buffered.

The attach connection is driven by asyncio's transport API directly: the agent runs on anyio's
asyncio backend (with uvloop in ``fnagent serve``).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterable, Awaitable
from typing import Any, cast

import anyio

from drivers.base import TaskLogger
from drivers.errors import DockerAPIError

STDOUT, STDERR = 1, 2
_HEADER_BYTES = 8
_GONE = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    OSError,
)


def take_socket(attached: Any) -> socket.socket:
    """A socket we own, duplicated from docker-py's attach result (a SocketIO or socket).

    The original is closed at once so docker-py can never hand the hijacked connection to
    another request.
    """
    raw = getattr(attached, "_sock", attached)
    if not isinstance(raw, socket.socket) or raw.family not in (
        socket.AF_UNIX,
        socket.AF_INET,
        socket.AF_INET6,
    ):
        raise DockerAPIError(
            "attaching to containers needs a unix or plain TCP Docker host (TLS and SSH hosts "
            "are not supported)"
        )
    owned = raw.dup()
    attached.close()
    raw.close()
    return owned


class FrameSplitter:
    """Docker's multiplexed stdout/stderr: each frame is an 8-byte header (stream type, 3 zero
    bytes, big-endian payload size) and the payload. ``feed`` takes bytes as they come, cut
    anywhere, and returns the whole frames they complete as (stream type, payload)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        frames: list[tuple[int, bytes]] = []
        start, end = 0, len(buffer)
        while end - start >= _HEADER_BYTES:
            size = int.from_bytes(buffer[start + 4 : start + 8], "big")
            stop = start + _HEADER_BYTES + size
            if stop > end:
                break
            frames.append((buffer[start], buffer[start + _HEADER_BYTES : stop]))
            start = stop
        self._buffer = buffer[start:]
        return frames


class _AttachProtocol(asyncio.Protocol):
    """The attach connection's callbacks (``AttachedStream``'s state)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.logger: TaskLogger | None = None
        self.splitter = FrameSplitter()
        self.backlog: deque[tuple[int, bytes]] = deque()
        """Frames read while a sink pushed back: delivered by ``copy_output``, in order."""
        self.blocked: Awaitable[object] | None = None
        self.wake: asyncio.Event = asyncio.Event()
        """Set when ``copy_output`` has work: a sink pushed back, or the connection ended."""
        self.ended = False
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.pause_reading()  # until copy_output has sinks for what comes

    def data_received(self, data: bytes) -> None:
        frames = self.splitter.feed(data)
        if self.logger is None or self.blocked is not None or self.backlog:
            self.backlog.extend(frames)  # copy_output is not (or no longer) writing them
            return
        for i, (kind, payload) in enumerate(frames):
            written = self.write(kind, payload)
            if written is not None:
                self.blocked = written
                self.backlog.extend(frames[i + 1 :])
                if self.transport is not None:
                    self.transport.pause_reading()
                self.wake.set()
                return

    def write(self, kind: int, payload: bytes) -> Awaitable[object] | None:
        """Hand ``payload`` to its sink; what to wait for when the sink pushes back."""
        logger = self.logger
        if logger is None:
            return None
        sink = logger.stderr if kind == STDERR else logger.stdout
        written = sink.write(payload)
        return written if isinstance(written, Awaitable) else None

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.writable.set()
        self.wake.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class AttachedStream:
    """A container's attach connection: its output read by ``copy_output``, its stdin written
    by ``feed_input``; ``aclose`` closes it (ending both)."""

    def __init__(self, transport: asyncio.Transport, protocol: _AttachProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def send(self, data: bytes) -> None:
        """Write ``data``; wait while the kernel's buffer is full. BrokenResourceError once
        the connection is closed."""
        if self._protocol.ended or self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._transport.write(data)
        await self._protocol.writable.wait()

    async def send_eof(self) -> None:
        if self._protocol.ended or self._transport.is_closing():
            raise anyio.BrokenResourceError
        self._transport.write_eof()

    async def aclose(self) -> None:
        """Close now: stdin not yet taken by the container is dropped (a transport's ``close``
        would wait for it, for ever if the container never reads)."""
        self._transport.abort()
        await anyio.lowlevel.checkpoint()


async def wrap_socket(sock: socket.socket) -> AttachedStream:
    """The attach socket as an ``AttachedStream`` (owned by the event loop from now on)."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(_AttachProtocol, sock)
    return AttachedStream(transport, protocol)


async def copy_output(stream: AttachedStream, logger: TaskLogger) -> None:
    """Demultiplex Docker's framed stdout/stderr into the task's writers until end of stream
    (a broken or closed connection counts as the end; a partial last frame is dropped). Output
    that arrived before this started waits for it; output after it returns (cancelled) is
    left unread."""
    protocol, transport = stream._protocol, stream._transport
    protocol.logger = logger
    try:
        await _deliver_backlog(protocol)
        while True:
            if not protocol.ended:
                transport.resume_reading()
                await protocol.wake.wait()
            protocol.wake.clear()
            await _deliver_backlog(protocol)
            if protocol.ended:
                return
    finally:
        protocol.logger = None
        if not protocol.ended and not transport.is_closing():
            transport.pause_reading()


async def _deliver_backlog(protocol: _AttachProtocol) -> None:
    """Wait for the sink that pushed back, then write what was read meanwhile, in order."""
    while True:
        if protocol.blocked is not None:
            await protocol.blocked
            protocol.blocked = None
        if not protocol.backlog:
            return
        kind, payload = protocol.backlog.popleft()
        protocol.blocked = protocol.write(kind, payload)


async def feed_input(stream: AttachedStream, source: AsyncIterable[bytes]) -> None:
    """Send ``source`` to the container's stdin, then half-close so the process sees EOF.

    A container that exits without reading all of its input is normal: the rest is dropped.
    """
    try:
        async for chunk in source:
            if chunk:
                await stream.send(chunk)
        await stream.send_eof()
    except _GONE:
        return
