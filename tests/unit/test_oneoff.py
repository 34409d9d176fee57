"""The one-off run (fnagent/agent/oneoff.py) on the fake driver: when its result is known."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import pytest

from drivers.base import RunStatus
from drivers.fake import FakeDriver
from fnagent.agent.oneoff import RunOutcome, RunRequest, exit_code, run_once

pytestmark = pytest.mark.anyio

BUSYBOX = "fnagent/busybox"


async def no_input() -> AsyncIterator[bytes]:
    return
    yield b""


async def test_on_exit_has_the_result_before_the_container_is_removed() -> None:
    """A caller can answer as soon as the container ended and its output was drained; the
    removal follows, and run_once returns only once it is done."""
    seen: list[tuple[int, bytes, int]] = []
    stdout = io.BytesIO()
    async with FakeDriver() as driver:

        async def on_exit(outcome: RunOutcome) -> None:
            seen.append((exit_code(outcome), stdout.getvalue(), len(driver.live())))

        request = RunRequest(image=BUSYBOX, command=["echo", "hi"])
        outcome = await run_once(
            driver, request, stdin=no_input(), stdout=stdout, stderr=io.BytesIO(), on_exit=on_exit
        )
        assert seen == [(0, b"hi\n", 1)]  # the container still existed
        assert outcome.result.status is RunStatus.SUCCESS
        assert driver.live() == []  # and was removed before run_once returned
        assert "remove" in outcome.timings_ms


async def test_on_exit_is_not_called_for_a_cancelled_run() -> None:
    """A cancelled run is answered after its container is removed (130, "removed")."""
    called: list[RunOutcome] = []

    async def on_exit(outcome: RunOutcome) -> None:
        called.append(outcome)

    async with FakeDriver() as driver:
        with anyio.move_on_after(0.2):
            await run_once(
                driver,
                RunRequest(image=BUSYBOX, command=["sleep", "30"]),
                stdin=no_input(),
                stdout=io.BytesIO(),
                stderr=io.BytesIO(),
                on_exit=on_exit,
            )
        assert called == []
        assert driver.live() == []
