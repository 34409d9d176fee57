"""The agent's idle timers' sense of time, replaceable in tests (``ManualClock`` in
:mod:`fnagent.testing.clock`)."""

from __future__ import annotations

import time

import anyio


class Clock:
    """Real time: ``now`` is time.monotonic(); ``wait`` waits for an event or a timeout."""

    def now(self) -> float:
        return time.monotonic()

    async def wait(self, event: anyio.Event, timeout_s: float) -> bool:
        """True when ``event`` was set, False when ``timeout_s`` passed first."""
        with anyio.move_on_after(max(timeout_s, 0.0)):
            await event.wait()
            return True
        return False
