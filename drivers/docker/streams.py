"""Container stdio over a hijacked attach connection, without threads.

docker-py opens the attach request; we take a duplicate of its socket and drive it with anyio,
so copying a container's output costs no worker thread.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterable
from typing import Any

import anyio
from anyio.abc import SocketStream, UNIXSocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from drivers.base import TaskLogger, deliver
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


async def wrap_socket(sock: socket.socket) -> SocketStream:
    if sock.family == socket.AF_UNIX:
        return await UNIXSocketStream.from_socket(sock)
    return await SocketStream.from_socket(sock)


async def copy_output(stream: SocketStream, logger: TaskLogger) -> None:
    """Demultiplex Docker's framed stdout/stderr into the task's writers until end of stream.

    Each frame is an 8-byte header (stream type, 3 zero bytes, big-endian payload size) and the
    payload. A broken or closed connection counts as the end.
    """
    reader = BufferedByteReceiveStream(stream)
    try:
        while True:
            header = await reader.receive_exactly(_HEADER_BYTES)
            size = int.from_bytes(header[4:8], "big")
            payload = await reader.receive_exactly(size) if size else b""
            sink = logger.stderr if header[0] == STDERR else logger.stdout
            await deliver(sink, payload)
    except _GONE:
        return


async def feed_input(stream: SocketStream, source: AsyncIterable[bytes]) -> None:
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
