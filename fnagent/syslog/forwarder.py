"""The syslog forwarder: each app's log lines to its ``syslog_url``, best effort.

The agent hands every complete line a function's container prints to ``SyslogForwarder``
(a ``LineSink``). A line of an app with a ``syslog_url`` is queued for each of its
destinations; nothing else happens on the caller's side, so a slow, refusing or vanished
endpoint never delays or fails a call. Each (app, destination) has a bounded buffer and one
task that connects, sends what is buffered (several messages in one write), and reconnects
with backoff after a failure. What does not fit the buffer is dropped and counted in
``dropped`` (app id -> lines), as is a batch a failed send took with it; ``sent`` counts
what went out. A destination idle for ``idle_close_s`` is closed and its task ends; the next
line opens it again, so a changed or removed ``syslog_url`` leaves nothing behind.

TLS verifies the server's certificate and name against the system's trust store (OpenSSL's
default paths: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name others), or ``tls_context``.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from fnagent.agent.calllogs import LogLine
from fnagent.errors import FnAgentError
from fnagent.models import Fn
from fnagent.syslog.message import (
    Destination,
    format_message,
    frame,
    max_message_bytes,
    parse_syslog_urls,
)

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_LINES = 1000
"""Lines an (app, destination) may hold while its endpoint is slow or away."""
CONNECT_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0
"""A write that takes longer (a peer that vanished without a reset) counts as failed."""
DEFAULT_IDLE_CLOSE_S = 60.0
CLOSE_GRACE_S = 1.0
"""On shutdown, what is buffered gets this long to go out."""
MAX_BATCH = 100
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 30.0


def reconnect_backoff_s(failures: int) -> float:
    """The wait after ``failures`` failures in a row: 0.2 s doubling to 30 s."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(max(failures, 1) - 1, 20)))


@dataclass(eq=False)
class _Sender:
    app_id: str
    destination: Destination
    capacity: int
    queue: deque[tuple[float, LogLine]] = field(default_factory=deque)
    wake: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, item: tuple[float, LogLine]) -> bool:
        if len(self.queue) >= self.capacity:
            return False
        self.queue.append(item)
        self.wake.set()
        return True


class SyslogForwarder:
    """A ``LineSink`` sending lines to their app's syslog; an async context manager that owns
    the senders' tasks. Calling it never blocks and never raises."""

    def __init__(
        self,
        *,
        hostname: str | None = None,
        buffer_lines: int = DEFAULT_BUFFER_LINES,
        tls_context: ssl.SSLContext | None = None,
        idle_close_s: float = DEFAULT_IDLE_CLOSE_S,
        backoff: Callable[[int], float] = reconnect_backoff_s,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.buffer_lines = buffer_lines
        self.idle_close_s = idle_close_s
        self.backoff = backoff
        self._tls_context = tls_context
        self._wall = wall
        self.dropped: dict[str, int] = {}
        """app id -> lines dropped (buffer full, a failed send, or the forwarder closed)."""
        self.sent: dict[str, int] = {}
        """app id -> lines written to a destination (what the endpoint then does is its own)."""
        self._senders: dict[tuple[str, Destination], _Sender] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._all_idle: anyio.Event | None = None

    def __repr__(self) -> str:
        buffered = sum(len(s.queue) for s in self._senders.values())
        return (
            f"<SyslogForwarder senders={len(self._senders)} buffered={buffered} "
            f"sent={sum(self.sent.values())} dropped={sum(self.dropped.values())}>"
        )

    async def __aenter__(self) -> Self:
        self._all_idle = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closing = True
        for sender in self._senders.values():
            sender.wake.set()
        with anyio.move_on_after(CLOSE_GRACE_S, shield=True):
            if self._senders and self._all_idle is not None:
                await self._all_idle.wait()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            for sender in self._senders.values():
                self._drop(sender.app_id, len(sender.queue))
            self._senders.clear()

    # -- the sink -----------------------------------------------------------------------------

    def wants(self, fn: Fn) -> bool:
        """Lines of apps with a syslog_url: the agent hands no other line here."""
        return bool(fn.syslog_url)

    def __call__(self, line: LogLine) -> None:
        fn = line.fn
        if fn is None or not fn.syslog_url:
            return
        url = fn.syslog_url
        app_id = fn.app_id
        if self._closing or self._tg is None:
            self._drop(app_id, 1)
            return
        item = (self._wall(), line)
        for destination in _destinations(url):
            sender = self._senders.get((app_id, destination))
            if sender is None:
                sender = self._start(app_id, destination)
            if not sender.offer(item):
                self._drop(app_id, 1)

    def _drop(self, app_id: str, count: int) -> None:
        if count:
            self.dropped[app_id] = self.dropped.get(app_id, 0) + count

    def _start(self, app_id: str, destination: Destination) -> _Sender:
        assert self._tg is not None
        sender = _Sender(app_id, destination, self.buffer_lines)
        self._senders[(app_id, destination)] = sender
        self._all_idle = anyio.Event()
        self._tg.start_soon(self._run, sender, name=f"syslog {destination}")
        return sender

    # -- one destination ----------------------------------------------------------------------

    async def _run(self, sender: _Sender) -> None:
        """Send ``sender``'s lines until it has been idle for ``idle_close_s``."""
        destination = sender.destination
        connection: Any = None
        failures = 0
        try:
            while True:
                if not sender.queue:
                    if self._closing:
                        return
                    sender.wake = anyio.Event()
                    with anyio.move_on_after(self.idle_close_s):
                        await sender.wake.wait()
                    if not sender.queue and not self._closing:
                        return  # idle: a later line starts a new sender
                    continue
                if connection is not None and _peer_closed(connection):
                    # Found now, not by losing the next write into a connection gone dead.
                    await _close(connection)
                    connection = None
                if connection is None:
                    try:
                        with anyio.fail_after(CONNECT_TIMEOUT_S):
                            connection = await self._connect(destination)
                    except Exception as exc:  # noqa: BLE001 - any failure: back off, retry
                        failures += 1
                        self._failed(sender, failures, "cannot connect", exc)
                        if not await self._back_off(failures):
                            return
                        continue
                batch = [sender.queue.popleft() for _ in range(min(MAX_BATCH, len(sender.queue)))]
                try:
                    with anyio.fail_after(SEND_TIMEOUT_S):
                        await self._send(connection, destination, batch)
                except Exception as exc:  # noqa: BLE001 - any failure: reconnect, back off
                    self._drop(sender.app_id, len(batch))
                    await _close(connection)
                    connection = None
                    failures += 1
                    self._failed(sender, failures, "send failed", exc)
                    if not await self._back_off(failures):
                        return
                    continue
                self.sent[sender.app_id] = self.sent.get(sender.app_id, 0) + len(batch)
                if failures:
                    logger.info(
                        "syslog destination reached again",
                        extra={"app_id": sender.app_id, "destination": str(destination)},
                    )
                failures = 0
        finally:
            if connection is not None:
                await _close(connection)
            if self._senders.get((sender.app_id, destination)) is sender:
                del self._senders[(sender.app_id, destination)]
                self._drop(sender.app_id, len(sender.queue))
            if not self._senders and self._all_idle is not None:
                self._all_idle.set()

    async def _back_off(self, failures: int) -> bool:
        """Wait before the next attempt; False on shutdown: there is no next attempt."""
        if self._closing:
            return False
        await anyio.sleep(self.backoff(failures))
        return not self._closing

    def _failed(self, sender: _Sender, failures: int, what: str, exc: Exception) -> None:
        if failures == 1:  # once per outage, not once per attempt
            logger.warning(
                "syslog destination failing; lines are buffered, then dropped",
                extra={
                    "failure": what,
                    "app_id": sender.app_id,
                    "destination": str(sender.destination),
                    "error": _describe(exc),
                },
            )

    async def _connect(self, destination: Destination) -> Any:
        host, port = destination.host, destination.port
        if destination.transport == "udp":
            return await anyio.create_connected_udp_socket(host, port)
        if destination.transport == "tcp":
            return await anyio.connect_tcp(host, port)
        context = self._tls_context or _default_tls_context()
        return await anyio.connect_tcp(
            host, port, ssl_context=context, tls_standard_compatible=False
        )

    async def _send(
        self, connection: Any, destination: Destination, batch: list[tuple[float, LogLine]]
    ) -> None:
        transport = destination.transport
        limit = max_message_bytes(transport)
        frames = [
            frame(
                format_message(
                    line.data,
                    stream=line.stream,
                    app_name=_fn_of(line).app_name,
                    fn_name=_fn_of(line).name,
                    call_id=line.call_id,
                    hostname=self.hostname,
                    timestamp=stamp,
                    max_bytes=limit,
                ),
                transport,
            )
            for stamp, line in batch
        ]
        if transport == "udp":
            for datagram in frames:
                await connection.send(datagram)
        else:
            await connection.send(b"".join(frames))


async def _close(connection: Any) -> None:
    with anyio.move_on_after(CLOSE_GRACE_S, shield=True):
        try:
            await connection.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone
            pass


def _peer_closed(connection: Any) -> bool:
    """Whether a stream's peer has closed it or reset it (Linux's POLLRDHUP: the peer's FIN,
    unread data or not). Found before a write, the next batch is not lost into a dead
    connection; a peer that closes after the check still costs the batch in flight."""
    try:
        sock = connection.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return False
    if sock.type != socket.SOCK_STREAM:
        return False
    gone = _POLLRDHUP | select.POLLHUP | select.POLLERR
    poller = select.poll()
    poller.register(sock.fileno(), _POLLRDHUP | select.POLLIN)
    return any(events & gone for _, events in poller.poll(0))


_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


@functools.lru_cache(maxsize=256)
def _destinations(url: str) -> tuple[Destination, ...]:
    """An app's destinations; none, with one warning, for a URL stored before the rules."""
    try:
        return parse_syslog_urls(url)
    except FnAgentError as exc:
        logger.warning("syslog_url ignored", extra={"error": exc.message})
        return ()


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _fn_of(line: LogLine) -> Fn:
    """The fn of a line this forwarder took (``__call__`` takes none without one)."""
    assert line.fn is not None
    return line.fn
