"""Waiting for an http-stream container's listener: ``lsnr.sock`` in its socket dir.

What counts as ready is the socket dir's (``fnagent.agent.sockdir``: ``lsnr.sock`` is a socket, or a
symlink to a socket in the same directory, as Fn's FDKs bind ``phonylsnr.sock``, chmod it, then
symlink). The directory is watched with inotify, so readiness is seen the moment the link
appears; where inotify is not available it is polled.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio

from drivers.libc import load_libc

LISTENER = "lsnr.sock"
# Appended to every "never listened" failure: the usual cause is an image that is not an
# http-stream function at all.
CONTRACT_HINT = (
    "the image must speak Fn's http-stream contract (listen on FN_LISTENER, "
    "e.g. with an FDK such as PyPI's fdk)"
)
POLL_S = 0.005
_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_ATTRIB = 0x4
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000


async def wait_until_listening(
    directory: str, ready: Callable[[], bool], *, gave_up: Callable[[], bool] = lambda: False
) -> bool:
    """Return True once ``ready()`` is true (checked at once, then on every change in
    ``directory`` and every poll interval), False as soon as ``gave_up()`` is true. The caller
    bounds it with a timeout."""
    watch = _Inotify.open(directory)
    try:
        while True:
            if ready():
                return True
            if gave_up():
                return False
            if watch is None:
                await anyio.sleep(POLL_S)
            else:
                with anyio.move_on_after(POLL_S * 10):
                    await watch.changed()
    finally:
        if watch is not None:
            watch.close()


class _Inotify:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, directory: str) -> _Inotify | None:
        libc = load_libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        mask = _IN_CREATE | _IN_MOVED_TO | _IN_ATTRIB
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return None
        return cls(fd)

    async def changed(self) -> None:
        """Wait for at least one event, then drain them all."""
        await anyio.wait_readable(self.fd)
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
