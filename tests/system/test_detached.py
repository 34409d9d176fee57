"""Detached calls through a live `fnagent serve` on a real dockerd: 202, then the function runs
and its result reaches a callback receiver on 127.0.0.1; a SIGKILL with calls queued and running,
then a restart on the same store that runs every one of them."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import wait_for
from tests.system.helpers import deploy, receiver
from tests.system.server import Server, make_server

DETACHED = {"Fn-Invoke-Type": "detached"}


def queue_rows(db_path: Path) -> list[sqlite3.Row]:
    """The calls still in the queue (a finished one leaves it)."""
    return _select(db_path, "SELECT id, status, attempts FROM detached_calls")


def call_records(db_path: Path) -> dict[str, sqlite3.Row]:
    """The call records written, by call id."""
    rows = _select(db_path, "SELECT id, status, attempts, http_status FROM calls")
    return {row["id"]: row for row in rows}


def _select(db_path: Path, statement: str) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(statement).fetchall()


def test_a_detached_call_answers_202_then_runs_and_calls_back(server: Server) -> None:
    fn = deploy(server, timeout=30)  # a cold start on a loaded host may take seconds
    with receiver() as (url, got):
        answer = server.request(
            "POST",
            f"/invoke/{fn['id']}",
            {"sleep_ms": 500, "headers": {"X-Done": "yes"}},
            headers={**DETACHED, "Fn-Callback-Url": url},
        )
        assert (answer.status, answer.body) == (202, b"")
        call_id = answer.headers["fn-call-id"]
        wait_for(lambda: got, "the callback", timeout_s=60)
    (callback,) = got
    assert callback["headers"]["fn-call-id"] == call_id, callback
    assert callback["headers"]["fn-call-status"] == "success", callback
    assert callback["headers"]["fn-call-status"] == "success"
    assert callback["headers"]["fn-http-status"] == "200"
    # fn-test echoes what it got: the function saw the caller's headers, not the callback URL.
    seen = {k.lower(): v for k, v in json.loads(callback["body"])["headers"].items()}
    assert seen["fn-invoke-type"] == "detached" and seen["fn-call-id"] == call_id
    assert "fn-callback-url" not in seen
    missing = server.request("POST", "/invoke/nope", {}, headers=DETACHED)
    assert (missing.status, missing.message) == (404, "Fn not found")


@contextmanager
def serving(tmp_path: Path, cli_env: dict[str, str], concurrency: int) -> Iterator[Server]:
    """A `serve` running ``concurrency`` detached calls at a time; stopped with SIGTERM at the
    end if it still runs (exit status 0)."""
    env = {**cli_env, "FN_DETACHED_CONCURRENCY": str(concurrency)}
    server = make_server(tmp_path, env).start()
    try:
        yield server
    finally:
        if server.process is not None:
            assert server.stop() == 0


def wait_until_one_runs(server: Server) -> None:
    wait_for(
        lambda: any(row["status"] == "running" for row in queue_rows(server.db_path)),
        "a detached call running",
        timeout_s=60,
    )


def wait_until_all_done(server: Server, call_ids: list[str]) -> dict[str, sqlite3.Row]:
    """Once the queue is empty and every call's record is written: the records."""

    def done() -> dict[str, sqlite3.Row] | None:
        records = call_records(server.db_path)
        finished = all(
            i in records and records[i]["status"] not in ("queued", "running") for i in call_ids
        )
        return records if finished and not queue_rows(server.db_path) else None

    found = wait_for(done, "every detached call done", timeout_s=120)
    assert found is not None
    return found


def test_sigkill_with_calls_queued_and_running_then_a_restart_runs_them_all(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    with serving(tmp_path, cli_env, concurrency=2) as server:
        fn = deploy(server, timeout=30)
        ids = []
        for i in range(24):
            answer = server.request(
                "POST", f"/invoke/{fn['id']}", {"sleep_ms": 300, "n": i}, headers=DETACHED
            )
            assert answer.status == 202, answer.body
            ids.append(answer.headers["fn-call-id"])
        wait_until_one_runs(server)
        server.stop(signal.SIGKILL)
        at_kill = {row["id"]: row["status"] for row in queue_rows(server.db_path)}
        assert sorted(at_kill) == sorted(ids)
        assert "running" in at_kill.values() and "queued" in at_kill.values(), at_kill
        server.start()
        records = wait_until_all_done(server, ids)
        # At least once: what ran when the server died ran again.
        for call_id, status in at_kill.items():
            if status == "running":
                assert records[call_id]["attempts"] >= 2, dict(records[call_id])
        assert {(records[i]["status"], records[i]["http_status"]) for i in ids} == {
            ("success", 200)
        }


def test_sigterm_lets_the_running_call_finish_and_keeps_the_queued_ones(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    with serving(tmp_path, cli_env, concurrency=1) as server:
        fn = deploy(server, timeout=30)
        ids = [
            server.request(
                "POST", f"/invoke/{fn['id']}", {"sleep_ms": 3000}, headers=DETACHED
            ).headers["fn-call-id"]
            for _ in range(3)
        ]
        wait_until_one_runs(server)
        assert server.stop() == 0
        # The running one finished within the grace period (on record, out of the queue);
        # the others were not started.
        queued = sorted(
            (row["id"], row["status"], row["attempts"]) for row in queue_rows(server.db_path)
        )
        (done,) = set(ids) - {call_id for call_id, _, _ in queued}
        assert [(status, attempts) for _, status, attempts in queued] == [("queued", 0)] * 2
        record = call_records(server.db_path)[done]
        assert (record["status"], record["attempts"]) == ("success", 1), dict(record)
        server.start()
        wait_until_all_done(server, ids)
