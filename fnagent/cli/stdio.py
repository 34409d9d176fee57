"""The CLI's own standard streams as async byte sources and flushing sinks."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio

CHUNK_BYTES = 64 * 1024


async def read_fd(fd: int) -> AsyncIterator[bytes]:
    """Chunks of ``fd`` until end of file; nothing when the fd is closed.

    Pipes, sockets and terminals are awaited on the event loop, so a run that ends while a
    terminal waits for typing is not held; files and other devices, which are always readable
    and cannot be polled, are read in a worker thread.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return
    pollable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
    if not pollable:
        while data := await anyio.to_thread.run_sync(os.read, fd, CHUNK_BYTES):
            yield data
        return
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, CHUNK_BYTES)
            except BlockingIOError:
                continue
            if not data:
                return
            yield data
    finally:
        # The terminal's flags are shared with the shell that started us.
        os.set_blocking(fd, was_blocking)


def regular_file_bytes(fd: int) -> int | None:
    """How many bytes are left to read in ``fd`` when it is a regular file, else None."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
    except OSError:
        return None


class FlushingSink:
    """Writes through to a binary stream and flushes, so output shows as the function makes it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        written = self._stream.write(data)
        self._stream.flush()
        return written
