"""Every call on record, on a live `fnagent serve` with a real dockerd: the records of a
success, a crash, a timeout and a start failure, each call's log through the route, the CLI
commands, a fn's calls gone with the fn, and retention as its settings say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import wait_for
from tests.system.helpers import FN_SHELL, deploy, invoke, run_cli
from tests.system.server import Answer, Server, make_server


def record_of(server: Server, fn: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """The record of the call ``answer`` answered, once it is in the store (the list reads
    only the store; the recorder writes within its flush interval)."""
    call_id = answer.headers["fn-call-id"]

    def listed() -> dict[str, Any] | None:
        items = server.request("GET", f"/v2/fns/{fn['id']}/calls?per_page=100").json()["items"]
        return next((item for item in items if item["id"] == call_id), None)

    record = wait_for(listed, f"the record of {call_id}", timeout_s=10)
    assert record is not None
    got = server.request("GET", f"/v2/fns/{fn['id']}/calls/{call_id}")
    assert got.status == 200 and got.json() == record
    return record


def log_of(server: Server, fn: dict[str, Any], record: dict[str, Any]) -> Answer:
    return server.request("GET", f"/v2/fns/{fn['id']}/calls/{record['id']}/log")


# Output reaches the agent through Docker's attached streams, which may trail the answer on the
# socket: the calls here print, then take a moment before they answer, so their output is in.
SETTLE_MS = 300


def test_records_of_a_success_a_crash_and_a_timeout_with_their_logs(server: Server) -> None:
    fn = deploy(server, timeout=5)
    first = {"stdout": "out of the first", "stderr": "err of the first", "sleep_ms": SETTLE_MS}
    ok = invoke(server, fn, first)
    assert ok.status == 200
    record = record_of(server, fn, ok)
    assert (record["status"], record["http_status"], record["error"]) == ("success", 200, None)
    assert (record["start"], record["detached"], record["attempts"]) == ("cold", False, 1)
    assert (record["fn_id"], record["app_id"]) == (fn["id"], fn["app_id"])
    timings = record["timings"]
    assert timings["start_ms"] > 0 and timings["exec_ms"] > 0 and timings["queued_ms"] >= 0
    assert record["created_at"] <= record["started_at"] <= record["completed_at"]
    log = log_of(server, fn, record)
    assert log.status == 200 and log.headers["content-type"].startswith("text/plain")
    assert b"out of the first\n" in log.body and b"err of the first\n" in log.body

    again = invoke(server, fn, {"stdout": "out of the second", "sleep_ms": SETTLE_MS})
    second = record_of(server, fn, again)
    assert second["start"] in ("hot", "thawed") and second["timings"]["exec_ms"] > 0
    second_log = log_of(server, fn, second).body
    # On one hot container, each call's log holds its own output only.
    assert b"out of the second\n" in second_log and b"first" not in second_log

    crash = invoke(server, fn, {"stderr": "about to crash", "sleep_ms": SETTLE_MS, "exit": 3})
    assert crash.status == 502
    crashed = record_of(server, fn, crash)
    assert (crashed["status"], crashed["http_status"]) == ("error", 502)
    assert crashed["error"] == crash.message
    assert b"about to crash\n" in log_of(server, fn, crashed).body

    slow = invoke(server, fn, {"stdout": "sleeping", "sleep_ms": 20_000})
    assert slow.status == 504
    timed_out = record_of(server, fn, slow)
    assert (timed_out["status"], timed_out["http_status"]) == ("timeout", 504)
    assert timed_out["error"] == slow.message
    assert sum(timed_out["timings"].values()) >= 4500  # the fn's timeout, 5 s, all told
    assert b"sleeping\n" in log_of(server, fn, timed_out).body

    listing = server.request("GET", f"/v2/fns/{fn['id']}/calls").json()["items"]
    assert [item["id"] for item in listing] == [
        timed_out["id"],
        crashed["id"],
        second["id"],
        record["id"],
    ]
    errors = server.request("GET", f"/v2/fns/{fn['id']}/calls?status=error").json()["items"]
    assert [item["id"] for item in errors] == [crashed["id"]]

    # The CLI reads the same.
    env = {**server.env, "FN_API_URL": server.url}
    listed = run_cli(["calls", "list", "app", "fn"], env, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.decode().splitlines()[1:]] == [
        item["id"] for item in listing
    ]
    printed = run_cli(["logs", "app", "fn", record["id"]], env, timeout=30)
    assert printed.returncode == 0 and printed.stdout == log.body
    shown = run_cli(["calls", "get", "app", "fn", crashed["id"]], env, timeout=30)
    assert b"status: error" in shown.stdout

    # Deleting the fn deletes its calls and logs.
    assert server.request("DELETE", f"/v2/fns/{fn['id']}").status == 204
    assert server.request("GET", f"/v2/fns/{fn['id']}/calls").status == 404


def test_a_start_failure_is_recorded(server: Server) -> None:
    # fn-shell is a cold-format function: as http-stream it exits without ever listening.
    fn = deploy(server, fn="broken", image=FN_SHELL)
    failed = invoke(server, fn, {})
    # It exits at once (502); on a loaded host the start timeout may pass first (504).
    assert failed.status in (502, 504), failed.body
    record = record_of(server, fn, failed)
    status = "error" if failed.status == 502 else "timeout"
    assert (record["status"], record["http_status"], record["start"]) == (
        status,
        failed.status,
        None,
    )
    assert record["error"] == failed.message
    assert record["started_at"] is None and record["timings"]["exec_ms"] is None
    assert record["timings"]["queued_ms"] > 0
    missing = server.request("GET", f"/v2/fns/{fn['id']}/calls/nope")
    assert (missing.status, missing.message) == (404, "Call not found")


def test_sigterm_writes_the_buffered_records(server: Server) -> None:
    fn = deploy(server)
    answers = [invoke(server, fn, {"stdout": f"call {i}"}) for i in range(3)]
    assert all(answer.status == 200 for answer in answers)
    # Stopped at once: whatever the recorder still buffered is written on the way out.
    assert server.stop() == 0
    server.start()
    listed = server.request("GET", f"/v2/fns/{fn['id']}/calls").json()["items"]
    assert {item["id"] for item in listed} == {a.headers["fn-call-id"] for a in answers}
    assert all(item["status"] == "success" for item in listed), listed


def test_retention_keeps_the_newest_calls_per_fn_at_the_set_interval(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    settings = {"FN_CALL_RETENTION_COUNT": "2", "FN_CALL_PRUNE_INTERVAL_S": "1"}
    server = make_server(tmp_path, {**cli_env, **settings}).start()
    try:
        fn = deploy(server)
        answers = [invoke(server, fn, {"stdout": f"call {i}"}) for i in range(5)]
        assert all(answer.status == 200 for answer in answers)
        newest = [answer.headers["fn-call-id"] for answer in reversed(answers)][:2]

        def pruned() -> list[str] | None:
            items = server.request("GET", f"/v2/fns/{fn['id']}/calls").json()["items"]
            ids = [item["id"] for item in items]
            return ids if ids == newest else None

        # Written within the recorder's flush interval, pruned at the next prune (1 s here,
        # a minute by default).
        assert (
            wait_for(pruned, "the fn's two newest calls only", timeout_s=10, interval_s=0.2)
            == newest
        )
        gone = server.request("GET", f"/v2/fns/{fn['id']}/calls/{answers[0].headers['fn-call-id']}")
        assert (gone.status, gone.message) == (404, "Call not found")
    finally:
        assert server.stop() == 0
