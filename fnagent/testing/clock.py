"""A clock for tests: time moves only when the test says so."""

from __future__ import annotations

import anyio

from fnagent.clock import Clock


class ManualClock(Clock):
    """Time that moves only when ``advance`` is called; waits end when their time comes."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def now(self) -> float:
        return self._now

    async def wait(self, event: anyio.Event, timeout_s: float) -> bool:
        woken = anyio.Event()
        entry = (self._now + timeout_s, woken)
        self._sleepers.append(entry)
        try:
            async with anyio.create_task_group() as tg:

                async def first(done: anyio.Event) -> None:
                    await done.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(first, event)
                tg.start_soon(first, woken)
        finally:
            self._sleepers.remove(entry)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self._now += seconds
        for deadline, woken in list(self._sleepers):
            if deadline <= self._now:
                woken.set()

    @property
    def sleepers(self) -> int:
        return len(self._sleepers)
