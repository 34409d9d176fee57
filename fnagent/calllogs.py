"""A call's stdout and stderr: captured, capped, and logged as JSON lines.

A hot container's output while it serves a call belongs to that call; between calls it belongs
to the container. ``OutputRouter`` is the container's log sink and sends output wherever it
currently belongs.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("fnagent.calls")

TRUNCATED = b"\n[fnagent: log truncated at %d bytes]\n"


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
    agent's log (tagged with the container), so nothing a function prints is lost."""

    def __init__(self, container_name: str, fields: dict[str, str]) -> None:
        self._container = container_name
        self._fields = fields
        self.current: CappedLog | None = None
        self.recent: list[bytes] = []
        """The last lines printed, kept to explain a container that dies before it is ready."""

    def write(self, data: bytes) -> int:
        self.recent = (self.recent + data.splitlines())[-20:]
        if self.current is not None:
            return self.current.write(data)
        logger.info(
            "container output",
            extra={
                **self._fields,
                "container": self._container,
                "output": data.decode("utf-8", "replace"),
            },
        )
        return len(data)


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
