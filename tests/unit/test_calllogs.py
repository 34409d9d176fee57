"""A container's output: capped during a call, rate-limited between calls."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from fnagent.agent.calllogs import MAX_LINE_BYTES, CappedLog, OutputRouter
from fnagent.models import Fn
from tests.unit.helpers import Lines

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


# -- lines handed to a sink (the syslog forwarder) ---------------------------------------------

FN = Fn(id="f1", name="hello", app_id="a1", app_name="myapp", image="img")


def lines_router(sink: Lines) -> OutputRouter:
    return OutputRouter("c1", {}, fn=FN, sink=sink)


def test_each_complete_line_goes_to_the_sink_with_its_call_and_stream() -> None:
    got = Lines()
    router = lines_router(got)
    router.stdout.write(b"before\npart")
    router.attribute(CappedLog(1000), call_id="call-1", fn=FN)
    router.stderr.write(b"oops\n")
    router.stdout.write(b"one\ntw")
    router.stdout.write(b"o\n\n")
    router.attribute(None)
    router.stdout.write(b"after\n")
    assert [(x.call_id, x.stream, x.data) for x in got] == [
        (None, "stdout", b"before"),
        (None, "stdout", b"part"),  # a partial line goes out whole as its owner's, at the switch
        ("call-1", "stderr", b"oops"),
        ("call-1", "stdout", b"one"),
        ("call-1", "stdout", b"two"),
        ("call-1", "stdout", b""),
        (None, "stdout", b"after"),
    ]
    assert all(x.fn is FN for x in got)
    # the call's own log still holds its output, in arrival order
    router.attribute(log := CappedLog(1000), call_id="call-2")
    router.stderr.write(b"e\n")
    router.stdout.write(b"o\n")
    assert log.getvalue() == b"e\no\n"
    assert got[-1].fn is FN  # the fn stays when a switch names none


def test_a_newer_fn_reaches_the_lines_after_it() -> None:
    got = Lines()
    router = lines_router(got)
    newer = replace(FN, syslog_url="udp://l:1")
    router.attribute(CappedLog(1000), call_id="c", fn=newer)
    router.stdout.write(b"x\n")
    assert got[0].fn.syslog_url == "udp://l:1"


def test_a_long_line_is_cut_in_bounded_pieces() -> None:
    got = Lines()
    router = lines_router(got)
    router.stdout.write(b"a" * (MAX_LINE_BYTES * 2 + 5))
    router.stdout.write(b"b" * 5 + b"\n")
    assert [len(x.data) for x in got] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]
    router.stdout.write(b"c" * (MAX_LINE_BYTES + 1) + b"\n")
    assert [len(x.data) for x in got[3:]] == [MAX_LINE_BYTES, 1]


def test_lines_between_calls_reach_the_sink_past_the_log_rate_limit() -> None:
    got = Lines()
    router = OutputRouter("c1", {}, rate_bytes_per_s=10, burst_bytes=10, fn=FN, sink=got)
    router.stdout.write(b"0123456789abcdef\n" * 3)
    assert len(got) == 3  # the agent's own log keeps 10 bytes; the sink bounds itself


def test_lines_of_a_fn_the_sink_does_not_want_are_not_even_cut() -> None:
    # Most apps have no syslog_url: cutting their output in lines would be work for nothing.
    got = Lines(wanted=lambda fn: fn.syslog_url is not None)
    router = lines_router(got)
    router.stdout.write(b"unwanted\nhalf")
    router.attribute(CappedLog(1000), call_id="c", fn=replace(FN, syslog_url="udp://l:1"))
    router.stdout.write(b"wanted\n")
    router.attribute(None, fn=FN)
    router.stdout.write(b"unwanted again\n")
    assert [x.data for x in got] == [b"wanted"]


def test_without_a_sink_nothing_is_split() -> None:
    router = OutputRouter("c1", {})
    router.stdout.write(b"x\n")
    router.attribute(None)
