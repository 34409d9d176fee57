"""A container's output: capped during a call, rate-limited between calls."""

from __future__ import annotations

import logging

import pytest

from fnagent.agent.calllogs import CappedLog, OutputRouter

LINE = b"x" * 1023 + b"\n"
MIB = 1024 * 1024


class Now:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def test_output_between_calls_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fnagent.calls")
    router = OutputRouter("c1", {"fn_id": "f1", "app_id": "a1"})
    for _ in range(16 * 1024):  # 16 MiB at once, as fn-test's spew_after_mb writes it
        router.write(LINE)
    kept = sum(len(r.__dict__["output"]) for r in logged(caplog, "container output"))
    assert kept <= 1 * MIB, "between-call output must not flood the server's log"
    assert logged(caplog, "container output dropped"), "the drop is said"


def test_a_token_bucket_per_container_drops_the_excess_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fnagent.calls")
    now = Now()
    dropped: list[int] = []
    router = OutputRouter(
        "c1",
        {"fn_id": "f1", "app_id": "a1"},
        rate_bytes_per_s=10_000,
        burst_bytes=20_000,
        on_drop=dropped.append,
        now=now,
    )
    router.write(b"a" * 15_000)
    router.write(b"b" * 15_000)  # 5,000 kept, 10,000 dropped
    now.t += 0.5  # 5,000 more allowed
    router.write(b"c" * 15_000)
    kept = b"".join(r.output.encode() for r in logged(caplog, "container output"))  # type: ignore[attr-defined]
    assert kept == b"a" * 15_000 + b"b" * 5_000 + b"c" * 5_000
    assert sum(dropped) == 20_000
    notices = logged(caplog, "container output dropped")
    assert len(notices) == 1, "one notice per window"
    now.t += 2.0
    router.write(b"d" * 40_000)  # the bucket is full again: 20,000 kept, 20,000 dropped
    notices = logged(caplog, "container output dropped")
    assert len(notices) == 2, "a new window, a new notice"
    assert notices[-1].dropped_bytes == 10_000 + 20_000, "dropped since the last notice"  # type: ignore[attr-defined]
    assert sum(dropped) == 40_000


def test_output_during_a_call_goes_to_the_call_without_the_rate_limit() -> None:
    dropped: list[int] = []
    router = OutputRouter(
        "c1", {}, rate_bytes_per_s=10, burst_bytes=10, on_drop=dropped.append, now=Now()
    )
    router.current = CappedLog(100_000)
    router.write(b"y" * 50_000)
    assert router.current.getvalue() == b"y" * 50_000
    assert dropped == []
