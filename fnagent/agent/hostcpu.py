"""How busy the host's CPUs are, from /proc/stat: the agent's hint that one more container
would only compete for CPUs that are already full."""

from __future__ import annotations

import time

DEFAULT_INTERVAL_S = 0.25


class HostCpu:
    """``idle_share()``: the share of CPU time the host left idle over the last window of at
    least ``interval_s`` (read again at most that often); None until two readings exist or
    where /proc/stat cannot be read."""

    def __init__(self, path: str = "/proc/stat", interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._at = -interval_s
        self._last: tuple[int, int] | None = None
        self._idle: float | None = None

    def idle_share(self) -> float | None:
        now = time.monotonic()
        if now - self._at < self.interval_s:
            return self._idle
        self._at = now
        reading = self._read()
        if reading is not None and self._last is not None:
            idle = reading[0] - self._last[0]
            total = reading[1] - self._last[1]
            self._idle = idle / total if total > 0 else self._idle
        self._last = reading
        return self._idle

    def _read(self) -> tuple[int, int] | None:
        """(idle + iowait, total) jiffies since boot."""
        try:
            with open(self.path, "rb") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 5:
            return None
        return fields[3] + fields[4], sum(fields)
