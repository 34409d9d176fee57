"""A container's output: cut into its calls (framed and unframed), capped during a call,
rate-limited between calls."""

from __future__ import annotations

import logging

import pytest

from fnagent.agent.calllogs import (
    FIRST_CALL_QUIET_S,
    FRAME_NAME,
    MAX_LINE_BYTES,
    OPEN_CALLS,
    SETTLE_QUIET_S,
    CappedLog,
    LogLine,
    OutputRouter,
)

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
        router.stdout.write(LINE)
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
    router.stdout.write(b"a" * 14_999 + b"\n")
    router.stdout.write(b"b" * 14_999 + b"\n")  # 5,000 kept, 10,000 dropped
    now.t += 0.5  # 5,000 more allowed
    router.stdout.write(b"c" * 14_999 + b"\n")
    kept = b"".join(r.output.encode() for r in logged(caplog, "container output"))  # type: ignore[attr-defined]
    assert kept == b"a" * 14_999 + b"\n" + b"b" * 5_000 + b"c" * 5_000
    assert sum(dropped) == 20_000
    notices = logged(caplog, "container output dropped")
    assert len(notices) == 1, "one notice per window"
    now.t += 2.0
    # The bucket is full again: 20,000 kept, 20,000 dropped.
    router.stderr.write((b"d" * 9_999 + b"\n") * 4)
    notices = logged(caplog, "container output dropped")
    assert len(notices) == 2, "a new window, a new notice"
    assert notices[-1].dropped_bytes == 10_000 + 20_000, "dropped since the last notice"  # type: ignore[attr-defined]
    assert sum(dropped) == 40_000


def test_output_during_a_call_goes_to_the_call_without_the_rate_limit() -> None:
    dropped: list[int] = []
    router = OutputRouter(
        "c1", {}, rate_bytes_per_s=10, burst_bytes=10, on_drop=dropped.append, now=Now()
    )
    router.begin("first", CappedLog(10))
    router.end("first")
    log = CappedLog(100_000)
    router.begin("call1", log)
    router.stdout.write((b"y" * 999 + b"\n") * 50)
    assert log.getvalue() == (b"y" * 999 + b"\n") * 50
    assert dropped == []


# -- cutting a container's output into its calls --------------------------------------------


def frame(call_id: str) -> bytes:
    """What the Python FDK prints as a call starts (the Node FDK: the same without the last
    newline)."""
    return f"\n{FRAME_NAME}={call_id}\n\n".encode()


class Split:
    """A router with a sink, and helpers to run calls on it."""

    def __init__(self, max_log_bytes: int = 100_000) -> None:
        self.lines: list[LogLine] = []
        self.now = Now()
        self.router = OutputRouter(
            "c1", {"fn_id": "f1", "app_id": "a1"}, now=self.now, sink=self.lines.append
        )
        self.logs: dict[str, CappedLog] = {}
        self.max_log_bytes = max_log_bytes

    def begin(self, call_id: str) -> None:
        self.logs[call_id] = CappedLog(self.max_log_bytes)
        self.router.begin(call_id, self.logs[call_id])

    def log(self, call_id: str) -> bytes:
        return self.logs[call_id].getvalue()

    def unframed(self) -> Split:
        """After one silent call: the container is known not to frame."""
        self.begin("first")
        self.router.end("first")
        return self


def test_framed_lines_belong_to_the_call_the_frame_names_even_after_its_response() -> None:
    split = Split()
    out, err = split.router.stdout, split.router.stderr
    split.begin("A")
    err.write(frame("A"))
    out.write(frame("A"))
    out.write(b"a1\n")
    split.router.end("A")
    out.write(b"a2 late\n")  # arrived after A's response: still A's
    err.write(b"a3 late\n")
    split.begin("B")
    out.write(b"a4 later\n" + frame("B") + b"b1\n")
    err.write(frame("B") + b"b2\n")
    split.router.end("B")
    assert split.log("A") == b"a1\na2 late\na3 late\na4 later\n"
    assert split.log("B") == b"b1\nb2\n", "no frame line and no FDK blank line in a log"
    tagged = [(line.call_id, line.stream, line.data) for line in split.lines]
    assert ("A", "stdout", b"a4 later") in tagged and ("B", "stderr", b"b2") in tagged


def test_unframed_lines_go_to_the_call_running_when_they_arrive() -> None:
    split = Split()
    out = split.router.stdout
    out.write(b"before\n")
    split.begin("A")
    out.write(b"a1\n")
    split.router.end("A")
    out.write(b"between\n")
    split.begin("B")
    out.write(b"b1\n")
    split.router.end("B")
    assert (split.log("A"), split.log("B")) == (b"a1\n", b"b1\n")
    nobody = [line.data for line in split.lines if line.call_id is None]
    assert nobody == [b"before", b"between"]


def test_interleaved_streams_keep_their_order_of_arrival() -> None:
    split = Split()
    split.begin("A")
    split.router.stdout.write(b"o1\n")
    split.router.stderr.write(b"e1\ne2\n")
    split.router.stdout.write(b"o2\n")
    split.router.stderr.write(b"e3\n")
    split.router.end("A")
    assert split.log("A") == b"o1\ne1\ne2\no2\ne3\n"


def test_partial_lines_are_joined_across_chunks_per_stream() -> None:
    split = Split()
    split.begin("A")
    split.router.stdout.write(b"hel")
    split.router.stderr.write(b"err")
    split.router.stdout.write(b"lo\nwor")
    split.router.stderr.write(b"or\n")
    split.router.stdout.write(b"ld\n")
    split.router.end("A")
    assert split.log("A") == b"hello\nerror\nworld\n"


def test_a_line_without_end_is_cut_into_pieces() -> None:
    split = Split(max_log_bytes=10 * MAX_LINE_BYTES).unframed()
    split.begin("A")
    split.router.stdout.write(b"x" * (3 * MAX_LINE_BYTES + 10))
    assert split.log("A") == (b"x" * MAX_LINE_BYTES + b"\n") * 3, "held: only the last 10 bytes"
    split.router.end("A")
    assert split.log("A").endswith(b"\n" + b"x" * 10 + b"\n"), "the rest ends with the call"


def test_a_frame_naming_an_unknown_call_sends_the_lines_after_it_to_no_call() -> None:
    split = Split()
    out = split.router.stdout
    split.begin("A")
    out.write(frame("A") + b"a1\n")
    out.write(f"{FRAME_NAME}=nobody\n".encode() + b"after\n")
    split.router.end("A")
    assert split.log("A") == b"a1\n"
    nobody = [line.data for line in split.lines if line.call_id is None]
    assert nobody == [f"{FRAME_NAME}=nobody".encode(), b"after"], "shown, as nobody's"


def test_a_forged_frame_never_reaches_a_call_this_container_did_not_serve() -> None:
    # Two containers of one host; the hostile one learns B's call id and prints a frame for it.
    honest, hostile = Split(), Split()
    honest.begin("B")
    hostile.begin("H")
    hostile.router.stdout.write(frame("H") + frame("B") + b"forged into B\n")
    hostile.router.stderr.write(f"{FRAME_NAME}=B\nforged too\n".encode())
    honest.router.stdout.write(frame("B") + b"b1\n")
    hostile.router.end("H")
    honest.router.end("B")
    assert honest.log("B") == b"b1\n"
    assert b"forged" not in hostile.log("H"), "after the forged frame: nobody's"
    assert all(line.call_id is None for line in hostile.lines if b"forged" in line.data)


def test_a_call_log_is_capped_with_an_explicit_truncation_line() -> None:
    split = Split(max_log_bytes=100)
    split.begin("A")
    split.router.stderr.write(frame("A") + (b"e" * 39 + b"\n") * 5)
    split.router.end("A")
    log = split.log("A")
    assert log.startswith(b"e" * 39 + b"\n")
    assert log.endswith(b"\n[fnagent: log truncated at 100 bytes]\n")
    assert len(log) == 100 + len(b"\n[fnagent: log truncated at 100 bytes]\n")


def test_the_function_s_own_blank_lines_are_kept() -> None:
    split = Split()
    split.begin("A")
    split.router.stdout.write(frame("A") + b"a\n\nb\n\n\nc\n")
    split.router.end("A")
    assert split.log("A") == b"a\n\nb\n\n\nc\n"


def test_only_a_few_finished_calls_keep_taking_late_framed_lines() -> None:
    split = Split()
    ids = [f"C{i}" for i in range(OPEN_CALLS + 2)]
    for call_id in ids:
        split.begin(call_id)
        split.router.stdout.write(frame(call_id))
        split.router.end(call_id)
    split.router.stdout.write(frame(ids[0]) + b"very late\n")
    assert split.log(ids[0]) == b"", "its log is closed: the frame names no open call"
    split.router.stdout.write(frame(ids[-2]) + b"late\n")
    assert split.log(ids[-2]) == b"late\n"


def test_settling_waits_for_the_frame_and_for_quiet_when_output_is_expected() -> None:
    split = Split()
    router, now = split.router, split.now

    def settling(call_id: str, since: float) -> bool:
        return router.needs_settle(call_id, now(), since)

    split.begin("A")
    since = now()
    assert settling("A", since), "a container's first call: output may be on its way"
    now.t += FIRST_CALL_QUIET_S + 0.001
    assert not settling("A", since), "quiet since the response"
    router.end("A")
    split.begin("B")
    assert not settling("B", now()), "silent so far, and it frames not: no wait"
    since = now()
    router.stdout.write(b"b\n")
    assert settling("B", since), "it printed just now"
    now.t += SETTLE_QUIET_S + 0.001
    assert not settling("B", since)
    router.end("B")
    split.begin("C")
    assert settling("C", now()), "the container prints: C's output is expected"
    now.t += 0.01
    router.end("C")

    framed = Split()
    framed.begin("F1")
    framed.router.stderr.write(frame("F1"))
    framed.router.end("F1")
    framed.begin("F2")
    assert not framed.router.needs_settle("F2", framed.now(), 0.0), "silent: nothing to wait for"
    framed.router.stderr.write(b"F1 prints, late\n")
    assert framed.router.needs_settle("F2", framed.now(), 0.0), "it prints: F2's frame is due"
    framed.router.stderr.write(frame("F2"))
    since = framed.now()
    assert framed.router.needs_settle("F2", since, since), "its frame came: now quiet is due"
    framed.now.t += SETTLE_QUIET_S + 0.001
    assert not framed.router.needs_settle("F2", framed.now(), since)


def test_the_stderr_tail_is_bounded_in_lines_and_bytes() -> None:
    split = Split()
    split.router.stdout.write(b"not stderr\n")
    split.router.stderr.write(b"".join(b"line %d\n" % i for i in range(30)))
    tail = split.router.stderr_tail()
    assert tail.splitlines() == [f"line {i}" for i in range(10, 30)]
    split.router.stderr.write(b"z" * 10_000 + b"\n")
    assert split.router.stderr_tail() == "z" * 4095 + "\n"


def test_start_up_output_that_arrives_during_the_first_call_is_no_call_s_when_it_frames() -> None:
    split = Split()
    out, err = split.router.stdout, split.router.stderr
    split.begin("A")
    err.write(b"FDK listening on the socket\n")  # printed before the listener, delivered late
    err.write(frame("A") + b"a1\n")
    out.write(frame("A"))
    split.router.end("A")
    assert split.log("A") == b"a1\n"
    assert [line.data for line in split.lines if line.call_id is None] == [
        b"FDK listening on the socket"
    ]


def test_an_unframed_container_s_first_call_gets_its_lines_in_order() -> None:
    split = Split()
    split.begin("A")
    split.router.stdout.write(b"o1\n")
    split.router.stderr.write(b"e1\n")
    assert split.log("A") == b"", "held until the call ends: does the container frame?"
    assert split.router.needs_settle("A", split.now(), split.now()), "it printed"
    split.router.end("A")
    assert split.log("A") == b"o1\ne1\n"
    split.begin("B")
    split.router.stdout.write(b"b1\n")
    assert split.log("B") == b"b1\n", "known unframed: no longer held"


def test_no_settle_once_the_call_s_log_is_full() -> None:
    # A function spewing right after its answer: past its log's cap the output is between
    # calls, under the rate limit that counts what it drops.
    split = Split(max_log_bytes=100).unframed()
    split.begin("A")
    split.router.stdout.write(b"s" * 99 + b"\n")
    assert split.router.needs_settle("A", split.now(), split.now())
    split.router.stdout.write(b"s" * 99 + b"\n")
    assert not split.router.needs_settle("A", split.now(), split.now())


def test_lines_are_built_for_the_sink_only_while_someone_wants_them() -> None:
    """No follower and no forwarder: no per-line objects (the log still gets every line)."""
    lines: list[LogLine] = []
    wanted = {"f1": False}
    asked: list[tuple[str, object]] = []

    def wants(fn_id: str, fn: object) -> bool:
        asked.append((fn_id, fn))
        return wanted[fn_id]

    router = OutputRouter(
        "c1", {"fn_id": "f1", "app_id": "a1"}, sink=lines.append, sink_wants=wants
    )
    router.begin("first", CappedLog(1000))
    router.end("first")  # unframed from now on
    log = CappedLog(1000)
    router.begin("call", log)
    router.stdout.write(b"nobody follows\n")
    assert lines == []
    assert asked == [("f1", None)]
    wanted["f1"] = True
    router.stdout.write(b"followed\n")
    router.end("call")
    assert [line.data for line in lines] == [b"followed"]
    assert log.getvalue() == b"nobody follows\nfollowed\n"
