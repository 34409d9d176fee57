"""A call's stdout and stderr: captured, capped, and logged as JSON lines.

A hot container's output while it serves a call belongs to that call; between calls it belongs
to the container. ``OutputRouter`` is the container's log sink and sends output wherever it
currently belongs. Output between calls goes to the agent's log through a token bucket per
container, so a function printing without end cannot flood the server's log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("fnagent.calls")

TRUNCATED = b"\n[fnagent: log truncated at %d bytes]\n"
DEFAULT_IDLE_LOG_BYTES_PER_S = 64 * 1024
IDLE_LOG_BURST_S = 4
"""The bucket holds this many seconds' worth of the rate."""
DROP_NOTICE_INTERVAL_S = 1.0
RECENT_LINES = 20
_RECENT_TAIL_BYTES = 4096


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

    def write(self, data: bytes) -> int:
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
