"""A call's stdout and stderr: captured, capped, and logged as JSON lines.

A hot container's output while it serves a call belongs to that call; between calls it belongs
to the container. ``OutputRouter`` is the container's log sink and sends output wherever it
currently belongs. Output between calls goes to the agent's log through a token bucket per
container, so a function printing without end cannot flood the server's log. Given a
``LineSink`` (the syslog forwarder), the router also hands it every complete line, tagged with
the fn, the call (or none) and the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fnagent.models import Fn

logger = logging.getLogger("fnagent.calls")

TRUNCATED = b"\n[fnagent: log truncated at %d bytes]\n"
DEFAULT_IDLE_LOG_BYTES_PER_S = 64 * 1024
IDLE_LOG_BURST_S = 4
"""The bucket holds this many seconds' worth of the rate."""
DROP_NOTICE_INTERVAL_S = 1.0
RECENT_LINES = 20
_RECENT_TAIL_BYTES = 4096
MAX_LINE_BYTES = 8192
"""A longer line reaches the sink in pieces of this size (no message carries more)."""
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a function's container printed, without its newline."""

    fn: Fn
    call_id: str | None
    """The call it belongs to; None: printed between calls."""
    stream: str
    """"stdout" or "stderr"."""
    data: bytes


class LineSink(Protocol):
    """Where a router hands every line of the fns it wants. Called on the event loop, on
    every write: neither method may block or raise."""

    def wants(self, fn: Fn) -> bool:
        """Whether ``fn``'s lines are wanted now; a router cuts no line for a sink that
        does not want them."""
        ...

    def __call__(self, line: LogLine, /) -> None: ...


class CappedLog:
    """Keeps the first ``max_bytes`` of what is written, then one truncation line."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = self.max_bytes - self._size
        if room > 0:
            kept = data[:room]
            self._parts.append(kept)
            self._size += len(kept)
        if len(data) > max(room, 0) and not self.truncated:
            self.truncated = True
            self._parts.append(TRUNCATED % self.max_bytes)
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class OutputRouter:
    """A container's stdout/stderr sink: to the current call's log when one runs, else to the
    agent's log (tagged with the container), so nothing a function prints goes unseen.

    Between calls a token bucket (``rate_bytes_per_s``, holding up to ``burst_bytes``) bounds
    what reaches the agent's log; the excess is dropped, handed to ``on_drop`` (a metric), and
    said in one "container output dropped" line per DROP_NOTICE_INTERVAL_S. Output during a
    call is bounded by the call's ``CappedLog`` instead.
    """

    def __init__(
        self,
        container_name: str,
        fields: dict[str, str],
        *,
        rate_bytes_per_s: int = DEFAULT_IDLE_LOG_BYTES_PER_S,
        burst_bytes: int | None = None,
        on_drop: Callable[[int], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        fn: Fn | None = None,
        sink: LineSink | None = None,
    ) -> None:
        self._container = container_name
        self._fields = fields
        self.current: CappedLog | None = None
        self.recent: list[bytes] = []
        """The last lines printed, kept to explain a container that dies before it is ready."""
        self._rate = rate_bytes_per_s
        self._burst = (
            burst_bytes if burst_bytes is not None else rate_bytes_per_s * IDLE_LOG_BURST_S
        )
        self._tokens = float(self._burst)
        self._on_drop = on_drop
        self._now = now
        self._refilled_at = now()
        self._notice_due = 0.0
        self._unreported = 0
        self.fn = fn
        """The fn whose output this is, as last seen (its app's syslog_url may change)."""
        self.call_id: str | None = None
        self._sink = sink if fn is not None else None
        self._partial = {stream: bytearray() for stream in STREAMS}
        self.stdout = _StreamWriter(self, "stdout")
        self.stderr = _StreamWriter(self, "stderr")

    def attribute(
        self, log: CappedLog | None, call_id: str | None = None, fn: Fn | None = None
    ) -> None:
        """Output from now on belongs to ``call_id`` and goes to ``log`` (None: between
        calls); ``fn``, when given, is the fn's latest definition. A line begun before goes
        to the sink whole, as its owner's."""
        self.flush()
        self.current = log
        self.call_id = call_id
        if fn is not None:
            self.fn = fn

    def flush(self) -> None:
        """Hand the sink each stream's unfinished line."""
        for stream, partial in self._partial.items():
            if partial:
                self._line(stream, bytes(partial))
                partial.clear()

    def write(self, data: bytes, stream: str = "stdout") -> int:
        if self._sink is not None and self.fn is not None:
            if self._sink.wants(self.fn):
                self._split(stream, data)
            elif self._partial[stream]:
                self._partial[stream].clear()
        # Only the tail: splitting a huge write whole would cost as much as the write.
        self.recent = (self.recent + data[-_RECENT_TAIL_BYTES:].splitlines())[-RECENT_LINES:]
        if self.current is not None:
            return self.current.write(data)
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        kept = min(len(data), int(self._tokens))
        self._tokens -= kept
        if kept:
            logger.info(
                "container output",
                extra={
                    **self._fields,
                    "container": self._container,
                    "output": data[:kept].decode("utf-8", "replace"),
                },
            )
        if kept < len(data):
            self._dropped(len(data) - kept, now)
        return len(data)

    def _split(self, stream: str, data: bytes) -> None:
        partial = self._partial[stream]
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if partial:
                partial += data[start:end]
                self._line(stream, bytes(partial))
                partial.clear()
            else:
                self._line(stream, data[start:end])
            start = end + 1
        partial += data[start:]
        while len(partial) >= MAX_LINE_BYTES:
            self._line(stream, bytes(partial[:MAX_LINE_BYTES]))
            del partial[:MAX_LINE_BYTES]

    def _line(self, stream: str, line: bytes) -> None:
        assert self._sink is not None and self.fn is not None
        for at in range(0, max(len(line), 1), MAX_LINE_BYTES):
            self._sink(LogLine(self.fn, self.call_id, stream, line[at : at + MAX_LINE_BYTES]))

    def _dropped(self, size: int, now: float) -> None:
        self._unreported += size
        if self._on_drop is not None:
            self._on_drop(size)
        if now < self._notice_due:
            return
        self._notice_due = now + DROP_NOTICE_INTERVAL_S
        logger.warning(
            "container output dropped",
            extra={
                **self._fields,
                "container": self._container,
                "dropped_bytes": self._unreported,
                "limit_bytes_per_s": self._rate,
            },
        )
        self._unreported = 0


class _StreamWriter:
    """One stream of a router, as the driver's ``TaskLogger`` takes it."""

    def __init__(self, router: OutputRouter, stream: str) -> None:
        self._router = router
        self._stream = stream

    def write(self, data: bytes) -> int:
        return self._router.write(data, self._stream)


def log_call(call_id: str, fn_id: str, app_id: str, status: int, output: bytes) -> None:
    """One JSON line for a finished call, with its output."""
    logger.info(
        "call finished",
        extra={
            "call_id": call_id,
            "fn_id": fn_id,
            "app_id": app_id,
            "status": status,
            "output": output.decode("utf-8", "replace"),
        },
    )
