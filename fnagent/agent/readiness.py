"""Waiting for an http-stream container's listener: ``lsnr.sock`` in its socket dir.

What counts as ready is the socket dir's (``fnagent.agent.sockdir``: ``lsnr.sock`` is a socket, or a
symlink to a socket in the same directory, as Fn's FDKs bind ``phonylsnr.sock``, chmod it, then
symlink). The directory is watched with inotify, so readiness is seen the moment the link
appears; where inotify is not available it is polled.

The start timeout counts the function's own start-up (``listen_within``): the time the host
kept the container's processes from a CPU (other work held it) is added, since no function
caused it; at most MAX_START_STRETCH times the timeout in all.

A watch is closed on a thread of its own (``_Closer``), never on the event loop: closing an
inotify descriptor waits for the kernel's RCU grace period, which on a 2-CPU host was measured
at 0.08 ms p50 when idle but 8 ms p50, 61 ms p90 and up to 316 ms while containers were being
started, and there is one close per container start. On the loop those waits stalled
every request in flight (the detached 202's p99 during a cold burst).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable

import anyio

from drivers.libc import load_libc
from fnagent.errors import FnAgentError

logger = logging.getLogger(__name__)

LISTENER = "lsnr.sock"
# Appended to every "never listened" failure: the usual cause is an image that is not an
# http-stream function at all.
CONTRACT_HINT = (
    "the image must speak Fn's http-stream contract (listen on FN_LISTENER, "
    "e.g. with an FDK such as PyPI's fdk)"
)
POLL_S = 0.005
# However long the host kept a start from its CPUs, it fails after this many times its
# timeout (start_allowance).
MAX_START_STRETCH = 10
# A start found starved at its timeout is looked at again no sooner than this.
START_RECHECK_S = 0.05
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


def start_allowance(*, timeout_s: float, cpu_wait_s: float | None) -> float:
    """How long after its start a container may take to listen: ``timeout_s`` of its own
    start-up, plus the time its processes waited for CPUs that other work held (``cpu_wait_s``;
    None: unknown), which is the host's delay, not the function's; at most MAX_START_STRETCH
    times ``timeout_s``, however starved (a function with more busy threads than CPUs starves
    itself)."""
    return min(timeout_s + (cpu_wait_s or 0.0), timeout_s * MAX_START_STRETCH)


async def listen_within(
    directory: str,
    ready: Callable[[], bool],
    *,
    gave_up: Callable[[], bool],
    timeout_s: float,
    cpu_wait_s: Callable[[], Awaitable[float | None]],
    name: str,
) -> bool:
    """``wait_until_listening`` within the start timeout: ``timeout_s`` of the function's own
    start-up, extended by what ``cpu_wait_s()`` (the container's processes' wait for a CPU so
    far; FnAgentError: unknown) says when it runs out (start_allowance). Raises TimeoutError
    once the allowance is spent. ``name`` (the container's) is for the log line of a start
    slowed that way."""
    started = anyio.current_time()
    allowed_s = timeout_s
    while True:
        with anyio.CancelScope(deadline=started + allowed_s) as scope:
            listening = await wait_until_listening(directory, ready, gave_up=gave_up)
        if not scope.cancelled_caught:
            return listening
        try:
            waited_s = await cpu_wait_s()
        except FnAgentError:  # e.g. the daemon's inspect failed: unknown, no more time
            waited_s = None
        elapsed = anyio.current_time() - started
        longer_s = start_allowance(timeout_s=timeout_s, cpu_wait_s=waited_s)
        if longer_s <= elapsed:
            raise TimeoutError
        if allowed_s == timeout_s:
            logger.info(
                "start slowed by busy CPUs: its timeout is extended",
                extra={"container": name, "cpu_wait_s": round(waited_s or 0.0, 3)},
            )
        allowed_s = max(longer_s, elapsed + START_RECHECK_S)


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
        """Hand the descriptor to the closer thread; returns at once."""
        _closer.close(self.fd)


class _Closer:
    """One daemon thread that closes the file descriptors it is handed, in order.

    Started on the first close. A descriptor handed over is never used again by its owner, so
    closing it later is safe; the process exiting closes whatever is still queued."""

    def __init__(self) -> None:
        self._fds: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def close(self, fd: int) -> None:
        self._fds.put(fd)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="fd-closer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            fd = self._fds.get()
            try:
                os.close(fd)
            except OSError as exc:  # not ours to lose the thread over; say so
                logger.warning("closing an inotify watch failed", extra={"error": str(exc)})


_closer = _Closer()
