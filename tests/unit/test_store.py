"""What is SQLite's own in the registry (fnagent/store/sqlite.py): files, restarts,
migrations, FN_DB_URL, closing, cancellation and storage failures. What every backend must do
is the conformance suite's (fnagent.testing.store_conformance, run by
test_store_conformance.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from drivers.errors import ClosedError, InvalidInputError
from fnagent.errors import NotFoundError
from fnagent.store import (
    Migration,
    SQLiteStore,
    StorageError,
)
from fnagent.store.queue import QUEUED, RUNNING
from fnagent.store.sqlite import (
    _HERE_MAX_BODY_BYTES,
    _HERE_MAX_LOG_BYTES,
    _HERE_MAX_RECORDS,
    MIGRATIONS,
)
from fnagent.testing.store_conformance import (
    FakeClock,
    app_body,
    app_fn_trigger,
    call_record,
    case_cancelled_calls_leave_the_store_usable,
    queued_call,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:", clock=FakeClock()) as opened:
        yield opened


# --- files, restarts, migrations ----------------------------------------------------------


async def test_a_file_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data" / "fn.db"  # the directory is created, as Fn does
    async with SQLiteStore.from_url(f"sqlite3://{path}") as first:
        app, fn, trigger = await app_fn_trigger(first)
        updated = await first.update_app(app.id, {"config": {"K": "V"}})
    assert first.path == str(path)
    async with SQLiteStore(path) as again:
        assert await again.get_app(app.id) == updated
        assert await again.get_fn(fn.id) == fn
        assert await again.find_http_trigger("app", "/t") == (updated, fn, trigger)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrations_run_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "fn.db"
    async with SQLiteStore(path) as store:
        app = await store.create_app(app_body("app"))
    newer = len(MIGRATIONS) + 1
    version_2 = Migration(newer, "apps: add owner", ("ALTER TABLE apps ADD COLUMN owner TEXT",))
    for _ in range(2):  # the second open finds the new version and runs nothing
        async with SQLiteStore(path, migrations=(*MIGRATIONS, version_2)) as store:
            assert await store.get_app(app.id) == app
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (newer,)
        assert "owner" in [row[1] for row in conn.execute("PRAGMA table_info(apps)")]
    # A file from a newer fnagent is refused rather than misread.
    refused = f"schema version {newer}, newer than this fnagent knows"
    with pytest.raises(StorageError, match=refused):
        await SQLiteStore(path).open()
    with pytest.raises(ValueError, match="numbered 1, 2, 3"):
        SQLiteStore(path, migrations=(version_2,))


async def test_the_queue_depth_migration_counts_the_calls_already_queued(tmp_path: Path) -> None:
    """Migration 6 keeps the depth by triggers: a file from before it starts from the calls it
    holds, and every transition after moves the count."""
    path = tmp_path / "fn.db"
    async with SQLiteStore(path, migrations=MIGRATIONS[:5]) as before:
        for call_id in ("c1", "c2", "c3"):
            await before.enqueue_call(queued_call(call_id))
        await before.lease_calls(owner="a", limit=1, now=1000.0, lease_s=30)
    async with SQLiteStore(path) as store:
        assert await store.count_queued() == 2
        await store.enqueue_call(queued_call("c4"))
        assert await store.count_queued() == 3
        assert await store.release_leases("a", now=1001.0) == 1
        assert await store.count_queued() == 4
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM detached_calls WHERE id = 'c2'")
        assert conn.execute("SELECT queued FROM detached_queue_depth").fetchone() == (3,)


async def test_calls_finished_before_migration_7_leave_the_queue_when_the_store_opens(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fn.db"
    async with SQLiteStore(path, migrations=MIGRATIONS[:6]) as before:
        for call_id in ("c1-done", "c2-failed", "c3-running", "c4-queued"):
            await before.enqueue_call(queued_call(call_id))
        await before.lease_calls(owner="a", limit=3, now=1000.0, lease_s=30)
    with sqlite3.connect(path) as conn:  # how a finish left them before
        conn.execute("UPDATE detached_calls SET status = 'success' WHERE id = 'c1-done'")
        conn.execute("UPDATE detached_calls SET status = 'error' WHERE id = 'c2-failed'")
    conn.close()
    async with SQLiteStore(path) as store:
        for gone in ("c1-done", "c2-failed"):
            with pytest.raises(NotFoundError):
                await store.get_queued_call(gone)
        assert (await store.get_queued_call("c3-running")).status == RUNNING
        assert (await store.get_queued_call("c4-queued")).status == QUEUED
        assert await store.count_queued() == 1


def test_from_url_accepts_fns_sqlite_forms_only() -> None:
    assert SQLiteStore.from_url("sqlite3:///var/lib/fn/fn.db").path == "/var/lib/fn/fn.db"
    assert SQLiteStore.from_url("sqlite3://data/fn.db").path == "data/fn.db"
    assert SQLiteStore.from_url("sqlite:///tmp/x.db?_busy_timeout=1").path == "/tmp/x.db"
    assert SQLiteStore.from_url("sqlite3://:memory:").path == ":memory:"
    for url in ["postgres://user:secret@db:5432/fn", "mysql://u:p@tcp(db:3306)/fn", "fn.db"]:
        with pytest.raises(InvalidInputError) as raised:
            SQLiteStore.from_url(url)
        assert "sqlite3:///absolute/path.db" in raised.value.message
        assert "secret" not in raised.value.message
    with pytest.raises(InvalidInputError, match="names no file"):
        SQLiteStore.from_url("sqlite3://")


async def test_closed_store_refuses_calls(anyio_backend: str) -> None:
    store = SQLiteStore(":memory:")
    with pytest.raises(ClosedError, match="store not open"):
        await store.list_apps()
    async with anyio.create_task_group() as tg:  # racing opens share one connection
        tg.start_soon(store.open)
        tg.start_soon(store.open)
    app = await store.create_app(app_body("app"))
    await store.open()  # idempotent
    assert await store.list_apps() == ([app], None)
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(ClosedError, match=r"used after aclose\(\)"):
        await store.create_app(app_body("app"))
    with pytest.raises(ClosedError):
        await store.open()
    assert "closed" in repr(store)


# --- concurrency and failures -------------------------------------------------------------


async def test_a_full_disk_is_a_storage_error_and_keeps_committed_data(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "fn.db") as store:
        before = [await store.create_app(app_body(f"app{i}")) for i in range(3)]
        conn = store._conn  # the test reaches in to make the disk "full"
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = {f"k{i}": "x" * 500 for i in range(100)}  # ~50 KB: needs new pages
        with pytest.raises(StorageError) as raised:
            await store.create_app(app_body("too-big", annotations=big))
        assert raised.value.status == 500
        assert raised.value.message.startswith("storage failure: database or disk is full")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert (await store.list_apps()) == (before, None)
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert (await store.create_app(app_body("too-big", annotations=big))).annotations == big


async def test_cancelled_requests_leave_the_connection_out_of_transaction(
    store: SQLiteStore,
) -> None:
    # The cancellations themselves are the conformance suite's case; here, SQLite's connection.
    await case_cancelled_calls_leave_the_store_usable(store)
    assert store._conn is not None and not store._conn.in_transaction


async def test_unreadable_files_are_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="^storage failure: cannot open") as raised:
        await SQLiteStore(tmp_path).open()  # a directory
    assert isinstance(raised.value.__cause__, sqlite3.Error)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="file is not a database"):
        await SQLiteStore(garbage).open()


async def test_concurrent_enqueues_share_commits(store: SQLiteStore) -> None:
    """Group commit: calls enqueued while a batch is written go together in the next one."""
    with threaded_transactions(store) as transactions:
        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(store.enqueue_call, queued_call(f"c{i}"))
    assert await store.count_queued() == 16
    assert transactions[0] <= 3  # the first alone, then the rest in one or two


async def test_a_batch_of_enqueues_larger_than_one_insert_is_stored_whole(
    store: SQLiteStore,
) -> None:
    """A batch goes in INSERTs of at most 999 values (old builds' bound): 130 calls of 17
    columns take five (32 rows each, then 2)."""
    assert store._conn is not None
    store._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # this build's is larger
    async with anyio.create_task_group() as tg:
        for i in range(130):
            tg.start_soon(store.enqueue_call, queued_call(f"c{i}"))
    assert await store.count_queued() == 130
    for i in (0, 31, 32, 127, 128, 129):
        assert (await store.get_queued_call(f"c{i}")).id == f"c{i}"


async def test_each_enqueue_returns_after_its_own_commit_and_a_failed_one_fails_its_batch(
    tmp_path: Path,
) -> None:
    """What a 202 rests on: every enqueue of a group commit returns only once its call is
    committed (another connection reads it then); a commit that fails fails every call of
    its batch (none is stored, none may be answered 202), and the next batch is written."""
    path = tmp_path / "fn.db"
    async with SQLiteStore(path) as store:
        write_here = store._write_here
        outcomes: dict[str, str] = {}
        reader = sqlite3.connect(path)
        try:

            async def enqueue(call_id: str) -> None:
                await store.enqueue_call(queued_call(call_id))
                found = reader.execute("SELECT 1 FROM detached_calls WHERE id = ?", (call_id,))
                outcomes[call_id] = "stored" if found.fetchone() else "returned before its commit"

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(enqueue, f"c{i:02}")
                    if i % 4 == 3:
                        await anyio.lowlevel.checkpoint()  # batches, one after another
        finally:
            reader.close()
        assert outcomes == {f"c{i:02}": "stored" for i in range(12)}

        # A batch of several that fails: all of them fail, none is stored.
        commits = [0]
        outcomes.clear()
        gate = anyio.Event()

        async def blocked_then_failing(op: Any) -> Any:
            commits[0] += 1
            if commits[0] == 1:
                await gate.wait()  # the others gather into the second batch meanwhile
                return await write_here(op)
            if commits[0] == 2:
                raise StorageError("storage failure: disk I/O error")
            return await write_here(op)

        store._write_here = blocked_then_failing  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(enqueue_outcome, store, "d00", outcomes)
            await anyio.sleep(0.01)
            for i in range(1, 6):
                tg.start_soon(enqueue_outcome, store, f"d{i:02}", outcomes)
            await anyio.sleep(0.01)
            gate.set()
        assert outcomes == {"d00": "stored"} | {f"d{i:02}": "failed" for i in range(1, 6)}
        await enqueue_outcome(store, "d06", outcomes)  # the next batch is written
        assert outcomes["d06"] == "stored"
        assert await store.count_queued() == 14


async def test_a_batch_that_fails_unexpectedly_fails_every_call_and_the_queue_goes_on(
    store: SQLiteStore,
) -> None:
    """A failure other than the store's own errors (a bug) while a batch is written: every
    call of the batch fails with a storage error (none returns as if stored, so none is
    answered 202), and later enqueues are written (the writer's role is handed on)."""
    write_here = store._write_here
    failures = [1]

    async def bug_once(op: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("a bug")
        return await write_here(op)

    store._write_here = bug_once  # type: ignore[method-assign]
    outcomes: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(enqueue_outcome, store, f"c{i}", outcomes)
    assert outcomes == {f"c{i}": "failed" for i in range(4)}
    with anyio.fail_after(10):
        await enqueue_outcome(store, "c4", outcomes)
    assert outcomes["c4"] == "stored"
    assert await store.count_queued() == 1


async def enqueue_outcome(store: SQLiteStore, call_id: str, outcomes: dict[str, str]) -> None:
    try:
        await store.enqueue_call(queued_call(call_id))
    except StorageError:
        outcomes[call_id] = "failed"
    else:
        outcomes[call_id] = "stored"


@contextlib.contextmanager
def threaded_transactions(store: SQLiteStore) -> Iterator[list[int]]:
    """``[n]``: how many transactions the store ran in its thread while this was open."""
    counted = [0]
    run = store._run

    async def counting(op: Any, *, write: bool) -> Any:
        counted[0] += 1
        return await run(op, write=write)

    store._run = counting  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        store._run = run  # type: ignore[method-assign]


# --- durability: the synchronous mode and checkpoints ------------------------------------


@pytest.mark.parametrize(("mode", "level"), [("normal", 1), ("full", 2)])
async def test_the_synchronous_mode_is_the_stores_setting(
    tmp_path: Path, mode: str, level: int
) -> None:
    async with SQLiteStore(tmp_path / "fn.db", synchronous=mode) as store:
        read = await store._run(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0], write=False
        )
    assert read == level


def test_the_synchronous_mode_is_normal_unless_asked_and_nothing_else() -> None:
    assert SQLiteStore(":memory:").synchronous == "normal"
    assert SQLiteStore.from_url("sqlite3://x.db", synchronous="full").synchronous == "full"
    with pytest.raises(InvalidInputError, match="synchronous must be normal or full, got 'off'"):
        SQLiteStore(":memory:", synchronous="off")


async def test_commits_never_checkpoint_the_checkpointer_does(tmp_path: Path) -> None:
    """A commit never copies the WAL into the database (that waits for the disk twice, on
    the 202's path); the store's checkpointer does it beside the writes, and truncates a WAL
    grown past its bound."""
    path = tmp_path / "fn.db"
    wal = tmp_path / "fn.db-wal"
    async with SQLiteStore(path, checkpoint_interval_s=0.01, wal_limit_bytes=64 * 1024) as store:
        autocheckpoint = await store._run(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0], write=False
        )
        assert autocheckpoint == 0
        for i in range(40):
            await store.enqueue_call(queued_call(f"c{i:02}", body=b"x" * 8192))
        with anyio.fail_after(10):
            while store.checkpoints == 0 or wal.stat().st_size > 64 * 1024:
                await anyio.sleep(0.01)
        assert await store.count_queued() == 40
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM detached_calls").fetchone()[0] == 40


async def test_the_wal_starts_over_while_writes_never_pause(
    tmp_path: Path,
) -> None:
    """Writes that never pause keep a checkpoint beside them from ever catching up, so the
    WAL only grew, until a TRUNCATE checkpoint bounded it with every writer waiting (60-110
    ms with 64 MiB, every few seconds of detached calls at full rate). The store instead
    lets its checkpoint catch up, between two batches of enqueues, once the WAL passes
    ``wal_reset_bytes``: the next commit starts the WAL over, and the file stays small."""
    path = tmp_path / "fn.db"
    wal = tmp_path / "fn.db-wal"
    limit = 64 * 1024 * 1024
    async with SQLiteStore(
        path, checkpoint_interval_s=0.005, wal_limit_bytes=limit, wal_reset_bytes=256 * 1024
    ) as store:
        for i in range(400):
            async with anyio.create_task_group() as tg:
                for j in range(4):
                    tg.start_soon(store.enqueue_call, queued_call(f"c{i:03}{j}", body=b"x" * 4096))
        assert store.checkpoints > 0
        assert store.wal_resets > 0
        # 1,600 calls of 4 KiB, ~10 MiB with their pages: 17 MiB of WAL before, ~2 MiB now.
        assert wal.stat().st_size < 8 * 1024 * 1024
        assert await store.count_queued() == 1600


_ENQUEUE_THEN_DIE = """
import os, signal, sys
import anyio
from fnagent.store import SQLiteStore
from fnagent.testing.store_conformance import queued_call

async def main() -> None:
    store = SQLiteStore(sys.argv[1], synchronous="normal", checkpoint_interval_s=3600)
    await store.open()
    async with anyio.create_task_group() as tg:
        for i in range(24):
            tg.start_soon(store.enqueue_call, queued_call(f"c{i:02}"))
    os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main)
"""


def test_an_enqueued_call_survives_a_killed_process_with_synchronous_normal(
    tmp_path: Path,
) -> None:
    """The guarantee behind the 202: once enqueue_call returns, SIGKILL loses nothing (the
    WAL holds the commit; no checkpoint ran)."""
    path = tmp_path / "fn.db"
    done = subprocess.run(
        [sys.executable, "-c", _ENQUEUE_THEN_DIE, str(path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert (tmp_path / "fn.db-wal").stat().st_size > 0  # the calls are in the WAL only
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM detached_calls").fetchone()[0] == 24


@pytest.mark.parametrize(("mode", "in_thread"), [("normal", 3), ("full", 11)])
async def test_the_queues_small_writes_commit_on_the_event_loop_only_when_commits_skip_the_disk(
    tmp_path: Path, mode: str, in_thread: int
) -> None:
    """With synchronous=normal a commit is a write to the WAL: cheaper on the event loop than
    two thread hops, so the queue's small writes run there, leases and finishes included (a
    call whose body is large is enqueued, read after its lease, and deleted in the thread);
    with full a commit waits for the disk: all in the thread."""
    async with SQLiteStore(tmp_path / "fn.db", synchronous=mode) as store:
        with threaded_transactions(store) as transactions:
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(store.enqueue_call, queued_call(f"c{i}"))
            first, second, third = await store.lease_calls(
                owner="a", limit=3, now=2000.0, lease_s=30
            )
            ids = [first.id, second.id, third.id]
            assert await store.renew_leases(owner="a", call_ids=ids, now=2001.0, lease_s=30)
            assert await store.finish_call(first.id, owner="a")
            assert await store.requeue_call(second.id, owner="a", not_before=2003.0, error="x")
            assert await store.release_leases("a", now=2004.0) == 1
            big = queued_call("big", at=900.0, body=b"b" * (_HERE_MAX_BODY_BYTES + 1))
            await store.enqueue_call(big)
            [leased] = await store.lease_calls(owner="a", limit=1, now=2005.0, lease_s=30)
            assert (leased.id, leased.body, leased.lease_owner) == ("big", big.body, "a")
            assert await store.finish_call("big", owner="a")
        assert transactions[0] == in_thread
        assert await store.count_queued() == 7


@pytest.mark.parametrize(("mode", "in_thread"), [("normal", 2), ("full", 3)])
async def test_small_batches_of_call_records_commit_on_the_event_loop(
    tmp_path: Path, mode: str, in_thread: int
) -> None:
    """Written in the store's thread, a batch of call records competes with the event loop
    for the GIL at every row it binds (11-16% of the hot path's invokes/s at concurrency 16):
    a small one commits on the loop as the queue's writes do; a large one, or any with
    synchronous=full, in the thread."""
    async with SQLiteStore(tmp_path / "fn.db", synchronous=mode) as store:
        _, fn, _ = await app_fn_trigger(store)
        small = [call_record(fn, n) for n in range(_HERE_MAX_RECORDS)]
        many = [call_record(fn, n) for n in range(100, 101 + _HERE_MAX_RECORDS)]
        big_log = call_record(fn, 500)
        with threaded_transactions(store) as transactions:
            assert await store.put_calls(small, {c.id: b"log" for c in small}) == len(small)
            assert await store.put_calls(many, {}) == len(many)
            logs = {big_log.id: b"x" * (_HERE_MAX_LOG_BYTES + 1)}
            assert await store.put_calls([big_log], logs) == 1
        assert transactions[0] == in_thread
        assert await store.get_call_log(fn.id, small[0].id) == b"log"


async def test_an_enqueue_never_waits_for_sqlites_lock_on_the_event_loop(tmp_path: Path) -> None:
    """Another connection holding the file's write lock: the enqueue waits for it in the
    store's thread while the event loop goes on, and commits once it is free."""
    path = tmp_path / "fn.db"
    async with SQLiteStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            written = anyio.Event()

            async def enqueue() -> None:
                await store.enqueue_call(queued_call("c1"))
                written.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(enqueue)
                for _ in range(5):  # the loop runs while the enqueue waits
                    await anyio.sleep(0.01)
                assert not written.is_set()
                other.execute("COMMIT")
                with anyio.fail_after(10):
                    await written.wait()
        finally:
            other.close()
        assert await store.count_queued() == 1


# --- the queue's cost -----------------------------------------------------------------------


def _lease_steps(store: SQLiteStore) -> int:
    """SQLite's virtual-machine steps (in thousands) that one lease of a call takes."""
    conn = store._conn
    assert conn is not None
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 1000)
    try:
        [leased] = anyio.from_thread.run(
            partial(store.lease_calls, owner="a", limit=8, now=5000.0, lease_s=30)
        )
    finally:
        conn.set_progress_handler(None, 0)
    assert leased.id == "due"
    return steps[0]


async def test_a_lease_reads_the_runnable_calls_only_not_the_whole_queue(
    tmp_path: Path,
) -> None:
    """Thousands of calls run elsewhere, and thousands wait queued behind a busy fn: a lease
    (which holds the store while it runs, so enqueues wait for it) finds what it may take
    through the indexes, at the same cost whatever else the table holds, where a scan of
    every row cost milliseconds per lease once the table held tens of thousands."""

    async def lease_cost(running: int, queued: int) -> int:
        async with SQLiteStore(tmp_path / f"{running}-{queued}.db") as store:
            rows = [queued_call(f"r{i:05}", not_before=float(i)) for i in range(running)]
            rows += [queued_call(f"q{i:05}", not_before=6000.0 + i) for i in range(queued)]
            for i in range(0, len(rows), 500):
                async with anyio.create_task_group() as tg:
                    for row in rows[i : i + 500]:
                        tg.start_soon(store.enqueue_call, row)
            await store._run(
                lambda conn: conn.execute(
                    "UPDATE detached_calls SET status = ?, lease_owner = 'other', "
                    "lease_expires = 1e12 WHERE id LIKE 'r%'",
                    (RUNNING,),
                ),
                write=True,
            )
            await store.enqueue_call(queued_call("due", not_before=100.0))
            return await anyio.to_thread.run_sync(_lease_steps, store)

    alone = await lease_cost(0, 0)
    crowded = await lease_cost(3000, 3000)
    assert crowded <= alone * 2 + 1, (alone, crowded)
