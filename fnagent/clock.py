"""The agent's sense of time, replaceable in tests (``ManualClock`` in
:mod:`fnagent.testing.clock`): every agent timer
(idle, freeze and removal timers, resource-sample intervals, call and launch durations, the
update retry, relaunch backoff, exit-report waits) reads ``now`` and waits with ``wait`` or
``sleep``."""

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

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (no event ends it early)."""
        await self.wait(anyio.Event(), seconds)
