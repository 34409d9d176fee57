"""The embedded registry for ``fnagent serve``: apps, fns, triggers, call records, sealed
secrets and the detached calls' queue in one SQLite file.

Concurrency: one ``sqlite3`` connection (``check_same_thread=False``) used from worker
threads through ``anyio.to_thread.run_sync`` with a ``CapacityLimiter(1)`` (and, for the
detached queue's small writes with ``synchronous=normal``, from the event loop holding the same
limiter: see ``_write_here``). SQLite has a single writer anyway, so one connection costs
nothing in throughput and removes "database is locked" between our own requests; the limiter
guarantees one thread at a time touches the connection, and every call is one transaction
(``BEGIN IMMEDIATE`` for writes, so checks and writes see the same state even against another
process). ``run_sync`` is not abandoned on cancellation: a
cancelled request waits for its transaction to commit or roll back, so the connection is never
handed on in the middle of one.

Durability: WAL mode, foreign keys on (deleting an app or fn cascades, in the same
transaction). ``synchronous`` (FN_DB_SYNC) is ``normal`` by default: a commit has written the
WAL when it returns, so it survives a killed process (SIGKILL, OOM, a crash), not a power cut
or a kernel crash, which may lose the last commits (never corrupt the file); ``full`` waits for
the disk at every commit (an fsync: milliseconds, tens at the tail on a busy disk) and survives
those too. Commits never checkpoint (``wal_autocheckpoint`` off): the ``_Checkpointer`` thread
copies the WAL into the database beside them, so no commit waits for a checkpoint's fsyncs;
once the WAL is large, one checkpoint catches up between two batches of enqueues, so that the
WAL starts over rather than grow while writes never pause. A failed statement rolls its
transaction back and raises ``StorageError`` from the sqlite3 error; committed data is
untouched.

Schema: ``schema_version`` holds the version; ``MIGRATIONS`` is applied in order, each in its
own transaction, on ``open()``. To change the schema, append a ``Migration(2, ...)`` (see the
comment at ``MIGRATIONS``); never edit a released one.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from fnagent.config import DB_SYNC_MODES, DEFAULT_DB_SYNC
from fnagent.errors import (
    ClosedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from fnagent.ids import new_id
from fnagent.store.base import Store
from fnagent.store.calls import (
    MSG_CALL_LOG_NOT_FOUND,
    MSG_CALL_NOT_FOUND,
    CallFilter,
    CallRecord,
)
from fnagent.store.group import GroupCommit
from fnagent.store.migrations import Migration, latest_version
from fnagent.store.models import (
    MSG_APP_EXISTS,
    MSG_APP_NOT_FOUND,
    MSG_FN_EXISTS,
    MSG_FN_MISSING_APP_ID,
    MSG_FN_NOT_FOUND,
    MSG_TRIGGER_EXISTS,
    MSG_TRIGGER_FN_NOT_IN_APP,
    MSG_TRIGGER_MISSING_APP_ID,
    MSG_TRIGGER_NOT_FOUND,
    MSG_TRIGGER_SOURCE_EXISTS,
    TRIGGER_TYPE_HTTP,
    App,
    FnRecord,
    Trigger,
    app_from_body,
    apply_app_patch,
    apply_fn_patch,
    apply_trigger_patch,
    clamp_per_page,
    decode_cursor,
    encode_cursor,
    fn_from_body,
    trigger_from_body,
    utcnow,
)
from fnagent.store.queue import (
    QUEUED,
    RUNNING,
    QueuedCall,
    runnable_when,
)
from fnagent.store.rows import (
    APP_COLUMNS,
    CALL_COLUMNS,
    FN_COLUMNS,
    QUEUE_COLUMNS,
    SECRET_COLUMNS,
    TRIGGER_COLUMNS,
    app_changes,
    app_from_row,
    app_values,
    call_from_row,
    call_upsert_statement,
    call_values,
    calls_page_statement,
    fn_changes,
    fn_from_row,
    fn_values,
    queued_call_from_row,
    queued_call_values,
    secret_from_row,
    trigger_changes,
    trigger_from_row,
    trigger_values,
    ts,
    update_statement,
    value_rows,
)
from fnagent.store.secrets import (
    MSG_SECRET_NOT_FOUND,
    SealedSecret,
    Secret,
    missing_secret_message,
    secret_in_use_message,
    secret_names,
    stored_annotations_name,
    validate_secret_name,
)
from fnagent.store.urls import POSTGRES_URL_FORM

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 5.0
DEFAULT_CHECKPOINT_INTERVAL_S = 1.0
DEFAULT_WAL_LIMIT_BYTES = 64 * 1024 * 1024
DEFAULT_WAL_RESET_BYTES = 32 * 1024 * 1024
SUPPORTED_URLS = (
    "sqlite3:///absolute/path.db, sqlite3://relative/path.db, sqlite3://:memory: or "
    f"{POSTGRES_URL_FORM}"
)


# Append-only. Version 2 would be, for example:
#     Migration(2, "fns: add cpus", ("ALTER TABLE fns ADD COLUMN cpus INTEGER NOT NULL DEFAULT 0",))
# plus the column in FN_COLUMNS / fn_from_row and a field on FnRecord.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "apps, fns and triggers",
        (
            """CREATE TABLE apps (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                config TEXT NOT NULL,
                annotations TEXT NOT NULL,
                syslog_url TEXT,
                shape TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT apps_name_unique UNIQUE (name)
            )""",
            """CREATE TABLE fns (
                id TEXT PRIMARY KEY,
                app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                image TEXT NOT NULL,
                memory INTEGER NOT NULL,
                timeout INTEGER NOT NULL,
                idle_timeout INTEGER NOT NULL,
                config TEXT NOT NULL,
                annotations TEXT NOT NULL,
                shape TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT fns_app_id_name_unique UNIQUE (app_id, name),
                -- the parent key for triggers' (fn_id, app_id): a trigger's fn is in its app
                CONSTRAINT fns_id_app_id_unique UNIQUE (id, app_id)
            )""",
            """CREATE TABLE triggers (
                id TEXT PRIMARY KEY,
                app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
                fn_id TEXT NOT NULL,
                name TEXT NOT NULL,
                type TEXT NOT NULL,
                source TEXT NOT NULL,
                annotations TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT triggers_app_id_name_unique UNIQUE (app_id, name),
                CONSTRAINT triggers_app_id_type_source_unique UNIQUE (app_id, type, source),
                FOREIGN KEY (fn_id, app_id) REFERENCES fns (id, app_id) ON DELETE CASCADE
            )""",
            # The cascade from fns and the list by fn look triggers up by fn.
            "CREATE INDEX triggers_fn_id_app_id ON triggers (fn_id, app_id)",
        ),
    ),
    Migration(
        2,
        "detached calls: the queue",
        (
            # No foreign key to fns: a call of a fn deleted meanwhile stays, and fails when it
            # runs with the reason kept.
            """CREATE TABLE detached_calls (
                id TEXT PRIMARY KEY,
                fn_id TEXT NOT NULL,
                app_id TEXT NOT NULL,
                is_trigger INTEGER NOT NULL,
                method TEXT NOT NULL,
                url TEXT NOT NULL,
                headers TEXT NOT NULL,
                body BLOB NOT NULL,
                callback_url TEXT,
                created_at REAL NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                not_before REAL NOT NULL,
                lease_owner TEXT,
                lease_expires REAL,
                started_at REAL,
                completed_at REAL,
                http_status INTEGER,
                last_error TEXT
            )""",
            # What lease_calls scans: queued by due time, running by lease expiry.
            "CREATE INDEX detached_calls_queued ON detached_calls (status, not_before)",
            "CREATE INDEX detached_calls_leases ON detached_calls (status, lease_expires)",
        ),
    ),
    Migration(
        3,
        "call records and call logs",
        (
            """CREATE TABLE calls (
                id TEXT PRIMARY KEY,
                fn_id TEXT NOT NULL REFERENCES fns (id) ON DELETE CASCADE,
                app_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                started_at TEXT,
                completed_at TEXT,
                http_status INTEGER,
                error TEXT,
                start TEXT,
                detached INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                queued_ms REAL,
                start_ms REAL,
                exec_ms REAL
            )""",
            # The list by fn, newest first, and the retention's count per fn.
            "CREATE INDEX calls_fn_id_id ON calls (fn_id, id)",
            # The retention's age bound.
            "CREATE INDEX calls_created_at ON calls (created_at)",
            """CREATE TABLE call_logs (
                call_id TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
                log BLOB NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "secrets (sealed values)",
        (
            """CREATE TABLE secrets (
                app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                sealed BLOB NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (app_id, name)
            )""",
        ),
    ),
    # One server owns a SQLite store: its writes need no telling (PostgreSQL's triggers).
    Migration(5, "change notifications", ()),
    # The queue's depth kept by triggers in the transactions that change it: a count(*) of
    # the queued calls walks all of them (6-12 ms at 80,000) with the store held, and the
    # 202s of detached calls waited behind it once a poll interval.
    Migration(
        6,
        "detached calls: the queue's depth",
        (
            "CREATE TABLE detached_queue_depth (queued INTEGER NOT NULL)",
            "INSERT INTO detached_queue_depth (queued) "
            "SELECT count(*) FROM detached_calls WHERE status = 'queued'",
            """CREATE TRIGGER detached_calls_depth_insert AFTER INSERT ON detached_calls
                WHEN NEW.status = 'queued'
                BEGIN UPDATE detached_queue_depth SET queued = queued + 1; END""",
            """CREATE TRIGGER detached_calls_depth_update AFTER UPDATE OF status ON detached_calls
                WHEN (OLD.status = 'queued') != (NEW.status = 'queued')
                BEGIN UPDATE detached_queue_depth
                    SET queued = queued + (NEW.status = 'queued') - (OLD.status = 'queued'); END""",
            """CREATE TRIGGER detached_calls_depth_delete AFTER DELETE ON detached_calls
                WHEN OLD.status = 'queued'
                BEGIN UPDATE detached_queue_depth SET queued = queued - 1; END""",
        ),
    ),
    # A finish now deletes its call (fnagent/store/queue.py); those finished before keep
    # their requests' bodies and nothing else reads them.
    Migration(
        7,
        "detached calls: finished calls leave the queue",
        ("DELETE FROM detached_calls WHERE status IN ('success', 'error')",),
    ),
)

# sqlite3's "UNIQUE constraint failed: <columns>" -> the 409 Fn gives for it.
_UNIQUE_MESSAGES = {
    "apps.name": MSG_APP_EXISTS,
    "fns.app_id, fns.name": MSG_FN_EXISTS,
    "triggers.app_id, triggers.name": MSG_TRIGGER_EXISTS,
    "triggers.app_id, triggers.type, triggers.source": MSG_TRIGGER_SOURCE_EXISTS,
}

# SQLite's default bound on host parameters in one statement on old builds.
_MAX_PARAMETERS = 999
_IN_CHUNK = 500
# Rows (call records, their logs, enqueued detached calls) go in INSERTs of many rows, not a
# statement per row (``executemany``, a bind, step and reset each): SQLite's share of a call
# record's instructions fell from 88k to 63k (callgrind, ``make bench BENCH=records``). The
# INSERTs hold a power of two of rows, at most _ROWS_PER_INSERT, so a connection prepares at
# most seven of each kind (sqlite3 caches 128 statements a connection; a statement per batch
# size would push the others out).
_ROWS_PER_INSERT = 64


@functools.lru_cache(maxsize=8)
def _call_upsert(rows: int) -> str:
    return call_upsert_statement("?", rows)


@functools.lru_cache(maxsize=8)
def _log_upsert(rows: int) -> str:
    return (
        f"INSERT INTO call_logs (call_id, log) VALUES {value_rows('?', 2, rows)} "
        "ON CONFLICT (call_id) DO UPDATE SET log = excluded.log"
    )


@functools.lru_cache(maxsize=8)
def _enqueue_insert(rows: int) -> str:
    width = len(QUEUE_COLUMNS.split(", "))
    return f"INSERT INTO detached_calls ({QUEUE_COLUMNS}) VALUES {value_rows('?', width, rows)}"


def _insert_rows(
    conn: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[Sequence[Any]]
) -> None:
    """``rows`` (all of one width) inserted by ``statement(n)``, the INSERT of ``n`` rows:
    each time the most rows left that is a power of two, at most ``_ROWS_PER_INSERT`` rows
    and ``_MAX_PARAMETERS`` values (23 rows: 16, 4, 2, 1)."""
    if not rows:
        return
    most = _largest_power_of_two(min(_ROWS_PER_INSERT, _MAX_PARAMETERS // len(rows[0])))
    done = 0
    while done < len(rows):
        count = min(most, _largest_power_of_two(len(rows) - done))
        chunk = rows[done : done + count]
        conn.execute(statement(count), [value for row in chunk for value in row])
        done += count


def _largest_power_of_two(n: int) -> int:
    """The largest power of two not above ``n`` (>= 1)."""
    return 1 << (n.bit_length() - 1)


# A batch of call records this small is written on the event loop (``_write_here``): about
# 25 us a record, so at most ~2 ms of loop time. The recorder cuts its batches to the same
# bounds (DEFAULT_BATCH_SIZE, DEFAULT_BATCH_LOG_BYTES in fnagent/records/recorder.py).
_HERE_MAX_RECORDS = 64
_HERE_MAX_LOG_BYTES = 256 * 1024
# Detached calls' request bodies are written (a batch of enqueues), read (a lease's calls) and
# freed (a finished call) on the event loop up to this much in all.
_HERE_MAX_BODY_BYTES = 256 * 1024


def _page(
    conn: sqlite3.Connection,
    select: str,
    where: list[tuple[str, object]],
    *,
    cursor: str | None,
    per_page: int | None,
) -> tuple[list[sqlite3.Row], str | None]:
    """Rows ordered by name after ``cursor``; one extra row tells whether a next page exists,
    so the last page has no cursor (Fn hands one out whenever a page is full)."""
    limit = clamp_per_page(per_page)
    clauses = list(where)
    if cursor:
        clauses.append(("name > ?", decode_cursor(cursor)))
    sql = select
    if clauses:
        sql += " WHERE " + " AND ".join(clause for clause, _ in clauses)
    sql += " ORDER BY name LIMIT ?"
    rows = conn.execute(sql, [value for _, value in clauses] + [limit + 1]).fetchall()
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]["name"])
    return rows, None


class SQLiteStore:
    """Apps, fns and triggers in SQLite; every method is async and runs off the event loop.

    Raises ``NotFoundError`` (404), ``ConflictError`` (409), ``InvalidInputError`` (400) with
    Fn's messages, ``StorageError`` (500) when SQLite fails, and ``ClosedError`` after
    ``aclose()``. ``path`` may be ``":memory:"`` (tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], datetime] = utcnow,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        synchronous: str = DEFAULT_DB_SYNC,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
        wal_limit_bytes: int = DEFAULT_WAL_LIMIT_BYTES,
        wal_reset_bytes: int = DEFAULT_WAL_RESET_BYTES,
    ) -> None:
        if synchronous not in DB_SYNC_MODES:
            choices = " or ".join(DB_SYNC_MODES)
            raise InvalidInputError(f"synchronous must be {choices}, got {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self._clock = clock
        self._migrations = tuple(migrations)
        self._latest = latest_version(self._migrations)
        self._busy_timeout_s = busy_timeout_s
        self._limiter = anyio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # A file of our own naming has a WAL beside it to checkpoint; ":memory:" has none,
        # and a "file:" URI keeps SQLite's own checkpoints.
        self._checkpointer = (
            None
            if self.path == ":memory:" or self.path.startswith("file:")
            else _Checkpointer(
                self.path,
                synchronous=synchronous,
                interval_s=checkpoint_interval_s,
                limit_bytes=wal_limit_bytes,
                reset_bytes=wal_reset_bytes,
                busy_timeout_s=busy_timeout_s,
            )
        )
        self.wal_resets = 0
        """Checkpoints that caught up with every write (``_let_the_wal_start_over``)."""
        # Guards _conn between the event loop (aclose) and the worker thread.
        self._lock = threading.Lock()
        # Group commit of enqueue_call; a batch first lets the WAL start over when due.
        self._enqueues = GroupCommit(self._write_enqueued, prepare=self._let_the_wal_start_over)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SQLiteStore:
        """A store for Fn's ``FN_DB_URL``: ``sqlite3:///abs/path.db`` or
        ``sqlite3://relative/path.db`` (everything after ``scheme://``, as Fn's sqlite helper
        does); ``sqlite`` is accepted for ``sqlite3``. Other schemes: InvalidInputError."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("sqlite3", "sqlite"):
            # Only the scheme is echoed: a postgres URL carries a password.
            shown = scheme if sep else url[:20]
            raise InvalidInputError(
                f"unsupported FN_DB_URL scheme {shown!r}: supported are {SUPPORTED_URLS}"
            )
        path = rest.split("?", 1)[0]
        if not path:
            raise InvalidInputError(f"FN_DB_URL {url!r} names no file: use {SUPPORTED_URLS}")
        return cls(path, **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._conn else "new"
        return f"<SQLiteStore {self.path!r} {state} synchronous={self.synchronous}>"

    @property
    def checkpoints(self) -> int:
        """Checkpoints the checkpointer ran (0 for a store without one)."""
        return 0 if self._checkpointer is None else self._checkpointer.checkpoints

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating the file and its directory) and migrate to the latest schema.
        Idempotent while open; ClosedError after ``aclose()``."""
        if self._closed:
            raise ClosedError("store used after aclose()")
        if self._conn is not None:
            return
        conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        with self._lock:
            closed, opened = self._closed, self._conn is not None
            if not (closed or opened):
                self._conn = conn
                if self._checkpointer is not None:
                    self._checkpointer.start()
        if closed or opened:
            # aclose() ran while we connected, or a concurrent open() won.
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
            if closed:
                raise ClosedError("store used after aclose()")

    async def aclose(self) -> None:
        """Close the connection after the running transaction. Idempotent; later calls on
        the store raise ClosedError."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                if self._checkpointer is not None:
                    await anyio.to_thread.run_sync(self._checkpointer.stop)
                # The last connection to close checkpoints the rest and removes the WAL.
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path != ":memory:" and not self.path.startswith("file:"):
                directory = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(directory, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"storage failure: cannot open {self.path!r}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"storage failure: cannot open {self.path!r}: {exc}") from exc
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn, write=True):
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for migration in self._migrations:
            # Each step re-reads the version inside its transaction, so two processes opening
            # the same file at once apply it once.
            with _transaction(conn, write=True):
                current = conn.execute("SELECT version FROM schema_version").fetchone()[0]
                if current > self._latest:
                    raise StorageError(
                        f"storage failure: {self.path!r} has schema version {current}, newer "
                        f"than this fnagent knows ({self._latest})"
                    )
                if current >= migration.version:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (migration.version,))
                logger.info(
                    "store schema migrated",
                    extra={"db": self.path, "version": migration.version},
                )

    # --- running queries ------------------------------------------------------------------

    async def _run(self, op: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if self._conn is None:
            raise ClosedError("store used after aclose()" if self._closed else "store not open")
        return await anyio.to_thread.run_sync(self._run_sync, op, write, limiter=self._limiter)

    async def _write_here(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` as a write transaction on the event loop's own thread when its commit does
        not wait for the disk (synchronous=normal, no checkpoint in a commit): a short
        write costs less there than the two thread hops around it, which on a busy machine
        each wait for a CPU, holding the connection meanwhile. And a write in the thread
        competes with the loop for the GIL at every row it binds: batches of call records
        written there cost the hot path 11-16% of its invokes/s at concurrency 16 (against
        recording off, interleaved runs). For short writes only: the queue's (enqueue,
        lease, renew, requeue, finish, release: a few rows, request bodies up to
        ``_HERE_MAX_BODY_BYTES``) and small batches of call records (see ``put_calls``);
        anything that may be large stays in the thread.
        It never waits for SQLite's lock on the loop: when another connection holds the
        file's write lock (another store on the file, the checkpointer's truncation), it runs
        in the store's thread as any write does."""
        if self.synchronous != "normal":
            return await self._run(op, write=True)
        return await self._here(op, write=True)

    async def _read_here(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` as a read transaction on the event loop's own thread, for reads of a row
        or two (the queue's depth): in the store's thread, each row's step gives the GIL
        back and waits for it again, up to a switch interval (5 ms) each on a busy loop,
        with the connection held meanwhile. Never waits for a lock on the loop (see
        ``_write_here``)."""
        return await self._here(op, write=False)

    async def _here(self, op: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if self._checkpointer is None:
            return await self._run(op, write=write)
        if self._conn is None:
            raise ClosedError("store used after aclose()" if self._closed else "store not open")
        async with self._limiter:
            try:
                return self._run_sync(op, write, wait_busy=False)
            except _Busy:
                pass
        return await self._run(op, write=write)

    def _run_sync(
        self, op: Callable[[sqlite3.Connection], T], write: bool, *, wait_busy: bool = True
    ) -> T:
        """``op`` in one transaction; ``wait_busy=False`` raises _Busy at once where SQLite
        would wait for another connection's lock (rolled back: nothing written)."""
        with self._lock:
            conn = self._conn
        if conn is None:  # closed while this call waited for the limiter
            raise ClosedError("store used after aclose()")
        if not wait_busy:
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            with _transaction(conn, write=write):
                result = op(conn)
            if write and self._checkpointer is not None:
                self._checkpointer.wrote()
            return result
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc) from exc
        except sqlite3.Error as exc:
            if not wait_busy and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise _Busy() from exc
            code = getattr(exc, "sqlite_errorname", "")
            detail = f"{exc} ({code})" if code else str(exc)
            raise StorageError(f"storage failure: {detail}") from exc
        finally:
            if not wait_busy:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # --- apps -----------------------------------------------------------------------------

    async def create_app(self, body: Mapping[str, Any]) -> App:
        """A new app from a POST body (id and timestamps assigned; see
        models.app_from_body). 409 "App already exists" for a taken name."""
        app = app_from_body(body, id=new_id(), now=self._now())

        def insert(conn: sqlite3.Connection) -> App:
            conn.execute(
                f"INSERT INTO apps ({APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", app_values(app)
            )
            return app

        return await self._run(insert, write=True)

    async def get_app(self, app_id: str) -> App:
        """404 "App not found"."""
        return await self._run(lambda conn: _get_app(conn, app_id), write=False)

    async def get_app_by_name(self, name: str) -> App:
        """404 "App not found"."""
        return await self._run(lambda conn: _get_app_by_name(conn, name), write=False)

    async def update_app(self, app_id: str, patch: Mapping[str, Any]) -> App:
        """Merge the PUT body ``patch`` (see models.apply_app_patch)."""
        now = self._now()

        def update(conn: sqlite3.Connection) -> App:
            current = _get_app(conn, app_id)
            app = apply_app_patch(current, patch, now)
            if app is not current:
                conn.execute(*update_statement("apps", app_changes(app), app.id, "?"))
            return app

        return await self._run(update, write=True)

    async def delete_app(self, app_id: str) -> None:
        """Delete the app with its fns and triggers (one transaction). 404 "App not found"."""

        def delete(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM apps WHERE id = ?", (app_id,)).rowcount == 0:
                raise NotFoundError(MSG_APP_NOT_FOUND)

        await self._run(delete, write=True)

    async def list_apps(
        self,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[App], str | None]:
        """Apps ordered by name, from after ``cursor``; ``name`` filters exactly. Returns the
        page and the next cursor (None on the last page). ``per_page`` is clamped as Fn
        does."""

        def page(conn: sqlite3.Connection) -> tuple[list[App], str | None]:
            where: list[tuple[str, object]] = [("name = ?", name)] if name else []
            rows, next_cursor = _page(
                conn, f"SELECT {APP_COLUMNS} FROM apps", where, cursor=cursor, per_page=per_page
            )
            return [app_from_row(row) for row in rows], next_cursor

        return await self._run(page, write=False)

    # --- fns ------------------------------------------------------------------------------

    async def create_fn(self, body: Mapping[str, Any]) -> FnRecord:
        """A new fn in an existing app from a POST body (see models.fn_from_body); 0 or
        absent means Fn's default (128 MiB, 30 s, 30 s). Invalid fields: 400 (checked first,
        as Fn does); no such app: 404 "App not found"; a taken name: 409 "Fn with specified
        name already exists"."""
        fn = fn_from_body(body, id=new_id(), now=self._now())
        app_id = fn.app_id
        named = secret_names(fn.annotations)

        def insert(conn: sqlite3.Connection) -> FnRecord:
            app = _get_app(conn, app_id)
            _check_secrets_exist(conn, app, named)
            record = fn if fn.shape else replace(fn, shape=app.shape)
            conn.execute(
                f"INSERT INTO fns ({FN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                fn_values(record),
            )
            return record

        return await self._run(insert, write=True)

    async def get_fn(self, fn_id: str) -> FnRecord:
        """404 "Fn not found"."""
        return await self._run(lambda conn: _get_fn(conn, fn_id), write=False)

    async def update_fn(self, fn_id: str, patch: Mapping[str, Any]) -> FnRecord:
        """Merge the PUT body ``patch`` (see models.apply_fn_patch)."""
        now = self._now()

        def update(conn: sqlite3.Connection) -> FnRecord:
            current = _get_fn(conn, fn_id)
            fn = apply_fn_patch(current, patch, now)
            if fn is not current:
                named = secret_names(fn.annotations)
                if named:
                    _check_secrets_exist(conn, _get_app(conn, fn.app_id), named)
                conn.execute(*update_statement("fns", fn_changes(fn), fn.id, "?"))
            return fn

        return await self._run(update, write=True)

    async def delete_fn(self, fn_id: str) -> None:
        """Delete the fn and its triggers (one transaction). 404 "Fn not found"."""

        def delete(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM fns WHERE id = ?", (fn_id,)).rowcount == 0:
                raise NotFoundError(MSG_FN_NOT_FOUND)

        await self._run(delete, write=True)

    async def list_fns(
        self,
        *,
        app_id: str,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[FnRecord], str | None]:
        """The app's fns ordered by name (see list_apps). 400 "Missing AppID on Fn" without
        ``app_id``; an unknown app has no fns (no 404, as in Fn)."""
        if not app_id:
            raise InvalidInputError(MSG_FN_MISSING_APP_ID)

        def page(conn: sqlite3.Connection) -> tuple[list[FnRecord], str | None]:
            where: list[tuple[str, object]] = [("app_id = ?", app_id)]
            if name:
                where.append(("name = ?", name))
            rows, next_cursor = _page(
                conn, f"SELECT {FN_COLUMNS} FROM fns", where, cursor=cursor, per_page=per_page
            )
            return [fn_from_row(row) for row in rows], next_cursor

        return await self._run(page, write=False)

    # --- triggers -------------------------------------------------------------------------

    async def create_trigger(self, body: Mapping[str, Any]) -> Trigger:
        """A new trigger from a POST body (see models.trigger_from_body). Invalid fields:
        400; no app: 404 "App not found"; no fn: 404 "Fn not found"; fn of another app: 400
        "Invalid Fn ID - not owned by specified app"; a taken type+source or name in the app:
        409."""
        trigger = trigger_from_body(body, id=new_id(), now=self._now())
        app_id, fn_id = trigger.app_id, trigger.fn_id

        def insert(conn: sqlite3.Connection) -> Trigger:
            _get_app(conn, app_id)
            fn = _get_fn(conn, fn_id)
            if fn.app_id != app_id:
                raise InvalidInputError(MSG_TRIGGER_FN_NOT_IN_APP)
            # Fn checks the source before the name; the unique indexes would pick either.
            _check_source_free(conn, trigger)
            conn.execute(
                f"INSERT INTO triggers ({TRIGGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                trigger_values(trigger),
            )
            return trigger

        return await self._run(insert, write=True)

    async def get_trigger(self, trigger_id: str) -> Trigger:
        """404 "Trigger not found"."""
        return await self._run(lambda conn: _get_trigger(conn, trigger_id), write=False)

    async def update_trigger(self, trigger_id: str, patch: Mapping[str, Any]) -> Trigger:
        """Merge the PUT body ``patch`` (see models.apply_trigger_patch); a new name or
        source that is taken in the app: 409."""
        now = self._now()

        def update(conn: sqlite3.Connection) -> Trigger:
            current = _get_trigger(conn, trigger_id)
            trigger = apply_trigger_patch(current, patch, now)
            if trigger is not current:
                _check_source_free(conn, trigger)
                conn.execute(
                    *update_statement("triggers", trigger_changes(trigger), trigger.id, "?")
                )
            return trigger

        return await self._run(update, write=True)

    async def delete_trigger(self, trigger_id: str) -> None:
        """404 "Trigger not found"."""

        def delete(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM triggers WHERE id = ?", (trigger_id,)).rowcount == 0:
                raise NotFoundError(MSG_TRIGGER_NOT_FOUND)

        await self._run(delete, write=True)

    async def list_triggers(
        self,
        *,
        app_id: str,
        fn_id: str | None = None,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[Trigger], str | None]:
        """The app's triggers (optionally one fn's) ordered by name (see list_apps). 400
        "Missing App ID on Trigger" without ``app_id``."""
        if not app_id:
            raise InvalidInputError(MSG_TRIGGER_MISSING_APP_ID)

        def page(conn: sqlite3.Connection) -> tuple[list[Trigger], str | None]:
            where: list[tuple[str, object]] = [("app_id = ?", app_id)]
            if fn_id:
                where.append(("fn_id = ?", fn_id))
            if name:
                where.append(("name = ?", name))
            select = f"SELECT {TRIGGER_COLUMNS} FROM triggers"
            rows, next_cursor = _page(conn, select, where, cursor=cursor, per_page=per_page)
            return [trigger_from_row(row) for row in rows], next_cursor

        return await self._run(page, write=False)

    async def get_trigger_by_source(self, app_id: str, type: str, source: str) -> Trigger:
        """Fn's GetTriggerBySource. 404 "Trigger not found"."""
        return await self._run(
            lambda conn: _get_trigger_by_source(conn, app_id, type, source), write=False
        )

    async def find_http_trigger(self, app_name: str, source: str) -> tuple[App, FnRecord, Trigger]:
        """What ``/t/{app_name}/{source}`` calls, read in one transaction. ``source`` gets a
        leading ``/`` if it lacks one. 404 "App not found" / "Trigger not found" /
        "Fn not found"."""
        if not source.startswith("/"):
            source = "/" + source

        def find(conn: sqlite3.Connection) -> tuple[App, FnRecord, Trigger]:
            app = _get_app_by_name(conn, app_name)
            trigger = _get_trigger_by_source(conn, app.id, TRIGGER_TYPE_HTTP, source)
            return app, _get_fn(conn, trigger.fn_id), trigger

        return await self._run(find, write=False)

    # --- secrets --------------------------------------------------------------------------

    async def put_secret(self, app_id: str, name: str, sealed: bytes) -> Secret:
        """Create the app's secret ``name`` or replace its sealed value (created_at kept).
        400 for an invalid name; 404 "App not found"."""
        validate_secret_name(name)
        now = self._now()

        def put(conn: sqlite3.Connection) -> Secret:
            _get_app(conn, app_id)
            conn.execute(
                "INSERT INTO secrets (app_id, name, sealed, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_id, name) DO UPDATE SET "
                "sealed = excluded.sealed, updated_at = excluded.updated_at",
                (app_id, name, sealed, ts(now), ts(now)),
            )
            row = _one(
                conn.execute(
                    f"SELECT {SECRET_COLUMNS} FROM secrets WHERE app_id = ? AND name = ?",
                    (app_id, name),
                )
            )
            assert row is not None
            return secret_from_row(row)

        return await self._run(put, write=True)

    async def list_secrets(
        self, *, app_id: str, cursor: str | None = None, per_page: int | None = None
    ) -> tuple[list[Secret], str | None]:
        """The app's secrets ordered by name, without values. 404 "App not found"."""

        def page(conn: sqlite3.Connection) -> tuple[list[Secret], str | None]:
            _get_app(conn, app_id)
            select = f"SELECT {SECRET_COLUMNS} FROM secrets"
            where: list[tuple[str, object]] = [("app_id = ?", app_id)]
            rows, next_cursor = _page(conn, select, where, cursor=cursor, per_page=per_page)
            return [secret_from_row(row) for row in rows], next_cursor

        return await self._run(page, write=False)

    async def get_sealed_secrets(self, app_id: str, names: Sequence[str]) -> list[SealedSecret]:
        """The app's sealed values among ``names``, in that order; missing names left out."""
        wanted = list(names)

        def read(conn: sqlite3.Connection) -> list[SealedSecret]:
            found: dict[str, SealedSecret] = {}
            for name in wanted:
                row = _one(
                    conn.execute(
                        "SELECT sealed FROM secrets WHERE app_id = ? AND name = ?", (app_id, name)
                    )
                )
                if row is not None:
                    found[name] = SealedSecret(app_id=app_id, name=name, sealed=bytes(row[0]))
            return [found[name] for name in wanted if name in found]

        if not wanted:
            return []
        return await self._run(read, write=False)

    async def delete_secret(self, app_id: str, name: str) -> None:
        """404 "App not found" / "Secret not found"; 409 while a fn of the app names it."""

        def delete(conn: sqlite3.Connection) -> None:
            _get_app(conn, app_id)
            exists = conn.execute(
                "SELECT 1 FROM secrets WHERE app_id = ? AND name = ?", (app_id, name)
            ).fetchone()
            if exists is None:
                raise NotFoundError(MSG_SECRET_NOT_FOUND)
            users = _fns_naming(conn, app_id, name)
            if users:
                raise ConflictError(secret_in_use_message(name, users))
            conn.execute("DELETE FROM secrets WHERE app_id = ? AND name = ?", (app_id, name))

        await self._run(delete, write=True)

    async def any_sealed_secret(self) -> SealedSecret | None:
        """One stored secret (the first by app and name), or None."""

        def first(conn: sqlite3.Connection) -> SealedSecret | None:
            row = _one(
                conn.execute("SELECT app_id, name, sealed FROM secrets ORDER BY app_id, name")
            )
            if row is None:
                return None
            return SealedSecret(app_id=row[0], name=row[1], sealed=bytes(row[2]))

        return await self._run(first, write=False)

    # --- detached calls -------------------------------------------------------------------

    async def enqueue_call(self, call: QueuedCall) -> None:
        """Store ``call`` as queued; returns once committed (synchronous=normal: in the WAL,
        which a killed process keeps; full: on disk). With normal the transaction runs on the
        event loop's thread (see _write_here), unless its bodies pass
        ``_HERE_MAX_BODY_BYTES``.

        Group commit (fnagent/store/group.py): calls that arrive while a batch is being
        written (or in the same turn of the event loop) wait and go together in the next
        transaction, so concurrent enqueues share one commit instead of queueing for one
        each; a failed commit fails every call of its batch."""
        await self._enqueues.submit(call)

    async def _write_enqueued(self, calls: list[QueuedCall]) -> None:
        rows = [queued_call_values(call) for call in calls]

        def insert(conn: sqlite3.Connection) -> None:
            _insert_rows(conn, _enqueue_insert, rows)

        # A large body's pages are a long write for the loop (a 6 MiB body: ~20 ms).
        if sum(len(call.body) for call in calls) > _HERE_MAX_BODY_BYTES:
            await self._run(insert, write=True)
        else:
            await self._write_here(insert)

    async def _let_the_wal_start_over(self) -> None:
        """When the checkpointer asks (the WAL passed ``wal_reset_bytes``): copy the frames
        written since its last checkpoint, in the store's thread and holding the store, so
        that no commit comes meanwhile. Then the checkpoint has caught up with every write,
        and the next commit writes the WAL from its start again instead of growing it.
        Writes that never pause (detached calls at full rate) would keep the checkpointer's
        own checkpoints from ever catching up, and the WAL would grow until a TRUNCATE
        checkpoint bounded it with every writer waiting for it (60-110 ms at 64 MiB). This
        wait is one checkpoint of a moment's writes. Never raises: a failed one is tried
        again at the checkpointer's next request."""
        checkpointer = self._checkpointer
        if checkpointer is None or not checkpointer.catch_up_due:
            return
        checkpointer.catch_up_due = False

        def catch_up() -> None:
            with self._lock:
                conn = self._conn
            if conn is None:
                return
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                logger.warning("store checkpoint failed", exc_info=True)
                return
            if not busy and copied == frames:
                self.wal_resets += 1

        await anyio.to_thread.run_sync(catch_up, limiter=self._limiter)

    async def lease_calls(
        self,
        *,
        owner: str,
        limit: int,
        now: float,
        lease_s: float,
        hot: Collection[str] = (),
        cold_due: float | None = None,
    ) -> list[QueuedCall]:
        """Runnable calls (queued and due, or running with an expired lease), oldest due
        first, leased to ``owner`` until ``now + lease_s`` with attempts + 1."""
        if limit <= 0:
            return []

        select, params = _runnable_statement(now, hot, cold_due, limit)

        def lease(conn: sqlite3.Connection) -> tuple[list[QueuedCall], list[str]]:
            """The leased calls read, or, when their bodies are large, only their ids."""
            ids = [row["id"] for row in conn.execute(select, params)]
            body_bytes = 0
            for call_id in ids:
                conn.execute(
                    "UPDATE detached_calls SET status = ?, lease_owner = ?, lease_expires = ?, "
                    "attempts = attempts + 1, started_at = ? WHERE id = ?",
                    (RUNNING, owner, now + lease_s, now, call_id),
                )
                body_bytes += conn.execute(
                    "SELECT length(body) FROM detached_calls WHERE id = ?", (call_id,)
                ).fetchone()[0]
            if body_bytes > _HERE_MAX_BODY_BYTES:
                return [], ids
            return [_get_queued_call(conn, call_id) for call_id in ids], []

        # The lease itself (a few index lookups and updates) on the loop: in the thread its
        # rows' steps each waited for the GIL, 4.5 ms median and up to 36 ms with the store
        # held at a full rate of 202s, every enqueue waiting meanwhile. Large bodies are read
        # after it, in the thread (leased: nobody else changes those rows; should that read
        # fail, the calls run again when their lease expires, as after a crash).
        leased, unread = await self._write_here(lease)
        if unread:
            leased = await self._run(
                lambda conn: [_get_queued_call(conn, call_id) for call_id in unread],
                write=False,
            )
        return leased

    async def renew_leases(
        self, *, owner: str, call_ids: Sequence[str], now: float, lease_s: float
    ) -> set[str]:
        """Extend the leases ``owner`` still holds among ``call_ids``; returns their ids."""
        if not call_ids:
            return set()

        def renew(conn: sqlite3.Connection) -> set[str]:
            held = set()
            for call_id in call_ids:
                cursor = conn.execute(
                    "UPDATE detached_calls SET lease_expires = ? "
                    "WHERE id = ? AND status = ? AND lease_owner = ?",
                    (now + lease_s, call_id, RUNNING, owner),
                )
                if cursor.rowcount:
                    held.add(call_id)
            return held

        return await self._write_here(renew)

    async def requeue_call(
        self, call_id: str, *, owner: str, not_before: float, error: str | None
    ) -> bool:
        """Back to queued from ``not_before`` while ``owner`` holds the lease."""

        def requeue(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE detached_calls SET status = ?, not_before = ?, last_error = ?, "
                "lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND status = ? AND lease_owner = ?",
                (QUEUED, not_before, error, call_id, RUNNING, owner),
            )
            return cursor.rowcount > 0

        return await self._write_here(requeue)

    async def finish_call(self, call_id: str, *, owner: str) -> bool:
        """Delete the call while ``owner`` holds its lease: on the event loop, unless its
        body passes ``_HERE_MAX_BODY_BYTES`` (freeing a 6 MiB body's pages took 60 ms)."""
        delete = "DELETE FROM detached_calls WHERE id = ? AND status = ? AND lease_owner = ?"
        params = (call_id, RUNNING, owner)
        small = (f"{delete} AND length(body) <= ?", (*params, _HERE_MAX_BODY_BYTES))
        if await self._write_here(lambda conn: conn.execute(*small).rowcount > 0):
            return True
        # Nothing deleted on the loop: a large body, or a lost lease (rare), which the
        # thread's delete then finds too.
        return await self._run(lambda conn: conn.execute(delete, params).rowcount > 0, write=True)

    async def release_leases(self, owner: str, *, now: float) -> int:
        """Every call ``owner`` runs goes back to queued, due ``now``."""

        def release(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE detached_calls SET status = ?, not_before = ?, "
                "lease_owner = NULL, lease_expires = NULL WHERE status = ? AND lease_owner = ?",
                (QUEUED, now, RUNNING, owner),
            )
            return cursor.rowcount

        return await self._write_here(release)

    async def get_queued_call(self, call_id: str) -> QueuedCall:
        """404 "Call not found"."""
        return await self._run(lambda conn: _get_queued_call(conn, call_id), write=False)

    async def count_queued(self) -> int:
        """Calls in status queued: the count the queue's triggers keep (migration 6), one
        row read on the event loop."""

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT queued FROM detached_queue_depth").fetchone()[0])

        return await self._read_here(count)

    # --- call records and logs --------------------------------------------------------------

    async def put_calls(self, calls: Sequence[CallRecord], logs: Mapping[str, bytes]) -> int:
        """Upsert ``calls`` and the logs given for them in one transaction, skipping records
        of fns that no longer exist. Returns how many records were written. A small batch
        (``_HERE_MAX_RECORDS``, ``_HERE_MAX_LOG_BYTES``) is written on the event loop."""
        if not calls:
            return 0

        def put(conn: sqlite3.Connection) -> int:
            fn_ids = sorted({call.fn_id for call in calls})
            live: set[str] = set()
            for i in range(0, len(fn_ids), _IN_CHUNK):
                chunk = fn_ids[i : i + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id FROM fns WHERE id IN ({marks})", chunk)
                live.update(row["id"] for row in rows)
            kept = [call for call in calls if call.fn_id in live]
            _insert_rows(conn, _call_upsert, [call_values(call) for call in kept])
            logged = [(call.id, logs[call.id]) for call in kept if call.id in logs]
            _insert_rows(conn, _log_upsert, logged)
            return len(kept)

        if len(calls) <= _HERE_MAX_RECORDS and sum(map(len, logs.values())) <= _HERE_MAX_LOG_BYTES:
            return await self._write_here(put)
        return await self._run(put, write=True)

    async def get_call(self, fn_id: str, call_id: str) -> CallRecord:
        """404 "Fn not found" / "Call not found"."""

        def get(conn: sqlite3.Connection) -> CallRecord:
            _check_fn(conn, fn_id)
            row = _one(
                conn.execute(
                    f"SELECT {CALL_COLUMNS} FROM calls WHERE id = ? AND fn_id = ?",
                    (call_id, fn_id),
                )
            )
            if row is None:
                raise NotFoundError(MSG_CALL_NOT_FOUND)
            return call_from_row(row)

        return await self._run(get, write=False)

    async def list_calls(
        self,
        fn_id: str,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
        where: CallFilter | None = None,
    ) -> tuple[list[CallRecord], str | None]:
        """The fn's calls newest first (by id), after ``cursor``. 404 "Fn not found"."""
        limit = clamp_per_page(per_page)
        after = decode_cursor(cursor) if cursor else None
        where = where or CallFilter()

        def page(conn: sqlite3.Connection) -> tuple[list[CallRecord], str | None]:
            _check_fn(conn, fn_id)
            sql, values = calls_page_statement(fn_id, after, where, limit + 1, "?")
            rows = conn.execute(sql, values).fetchall()
            records = [call_from_row(row) for row in rows[:limit]]
            more = len(rows) > limit
            return records, encode_cursor(records[-1].id) if more else None

        return await self._run(page, write=False)

    async def get_call_log(self, fn_id: str, call_id: str) -> bytes:
        """404 "Fn not found" / "Call log not found"."""

        def get(conn: sqlite3.Connection) -> bytes:
            _check_fn(conn, fn_id)
            row = _one(
                conn.execute(
                    "SELECT call_logs.log FROM call_logs JOIN calls ON calls.id = call_logs.call_id"
                    " WHERE calls.id = ? AND calls.fn_id = ?",
                    (call_id, fn_id),
                )
            )
            if row is None:
                raise NotFoundError(MSG_CALL_LOG_NOT_FOUND)
            return bytes(row["log"])

        return await self._run(get, write=False)

    async def prune_calls(
        self, *, keep_per_fn: int, before: datetime, max_rows: int | None = None
    ) -> int:
        """Delete calls created before ``before`` and each fn's beyond its ``keep_per_fn``
        newest (their logs go with them), at most ``max_rows`` (None: all), each fn's oldest
        first. Returns how many calls were deleted."""

        def prune(conn: sqlite3.Connection) -> int:
            left = -1 if max_rows is None else max_rows  # SQLite: LIMIT -1 is no limit
            deleted = conn.execute(
                "DELETE FROM calls WHERE id IN "
                "(SELECT id FROM calls WHERE created_at < ? ORDER BY created_at LIMIT ?)",
                (ts(before), left),
            ).rowcount
            # Per fn, on the (fn_id, id) index: the newest call past the count, and all older.
            for (fn_id,) in conn.execute("SELECT id FROM fns").fetchall():
                if max_rows is not None and (left := max_rows - deleted) <= 0:
                    break
                first_dropped = _one(
                    conn.execute(
                        "SELECT id FROM calls WHERE fn_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                        (fn_id, keep_per_fn),
                    )
                )
                if first_dropped is not None:
                    deleted += conn.execute(
                        "DELETE FROM calls WHERE id IN (SELECT id FROM calls "
                        "WHERE fn_id = ? AND id <= ? ORDER BY id LIMIT ?)",
                        (fn_id, first_dropped["id"], left),
                    ).rowcount
            return int(deleted)

        return await self._run(prune, write=True)


_WAL_FRAME_HEADER_BYTES = 24


class _Busy(Exception):
    """Another connection holds the lock a transaction needs (see SQLiteStore._write_here)."""


class _Checkpointer:
    """Copies the WAL into the database file beside the store's commits, in a thread and a
    connection of its own, so that no commit waits for a checkpoint (the store's connection
    has ``wal_autocheckpoint`` off; SQLite's own would run one inside the commit that
    crosses 1000 pages, with two fsyncs, whatever ``synchronous`` says).

    At most every ``interval_s``, after writes: a PASSIVE checkpoint, which takes no lock a
    writer waits for. The WAL restarts from its beginning only once a checkpoint has caught
    up with it, which writes that never pause keep from happening; a WAL still larger than
    ``limit_bytes`` after a passive checkpoint gets a TRUNCATE one, which makes writers wait
    while it runs: a stall that bounds the file. Before that, a WAL holding more than
    ``reset_bytes`` of frames sets ``catch_up_due``: the store then lets a checkpoint catch
    up between two commits (``SQLiteStore._let_the_wal_start_over``), and the WAL starts
    over. ``start`` once; ``stop`` (blocking) waits for a checkpoint under way."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        interval_s: float,
        limit_bytes: int,
        reset_bytes: int,
        busy_timeout_s: float,
    ) -> None:
        self.path = path
        self.wal_path = path + "-wal"
        self.synchronous = synchronous
        self.interval_s = interval_s
        self.limit_bytes = limit_bytes
        self.reset_bytes = reset_bytes
        self.catch_up_due = False
        """Set here, cleared by the store (a plain flag: one writer each way)."""
        self.busy_timeout_s = busy_timeout_s
        self.checkpoints = 0
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wrote(self) -> None:
        """A write committed (any thread): checkpoint at the next interval."""
        self._dirty.set()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error:
            logger.warning("store checkpointer cannot open the file", exc_info=True)
            return
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            while not self._stopping.is_set():
                self._dirty.wait()
                if self._stopping.wait(self.interval_s):
                    break
                self._dirty.clear()
                try:
                    self._checkpoint(conn)
                except (OSError, sqlite3.Error):
                    logger.warning("store checkpoint failed", exc_info=True)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        _busy, wal_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        if copied < wal_frames:  # writes came meanwhile: their frames next time
            self._dirty.set()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        if wal_frames * (page_size + _WAL_FRAME_HEADER_BYTES) > self.reset_bytes:
            self.catch_up_due = True
        if os.path.getsize(self.wal_path) > self.limit_bytes:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def _runnable_statement(
    now: float, hot: Collection[str], cold_due: float | None, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """The ``SELECT`` of a lease's calls (``runnable_when``), oldest due first, and its
    parameters. One bounded search per kind of runnable call, each through an index, merged:
    an ``OR`` of them would make SQLite scan the whole table, the calls running and those
    not due yet included, with the store held meanwhile."""
    due, hot_due = runnable_when(now, hot, cold_due)
    kinds: list[tuple[str, tuple[Any, ...]]] = [("status = ? AND not_before <= ?", (QUEUED, due))]
    if hot_due:
        marks = ", ".join("?" * len(hot_due))
        kinds.append(
            (
                f"status = ? AND not_before > ? AND not_before <= ? AND fn_id IN ({marks})",
                (QUEUED, due, now, *hot_due),
            )
        )
    kinds.append(("status = ? AND lease_expires <= ?", (RUNNING, now)))
    order = "ORDER BY not_before, id LIMIT ?"
    select = " UNION ALL ".join(
        f"SELECT id, not_before FROM (SELECT id, not_before FROM detached_calls WHERE {where} "
        f"{order})"
        for where, _ in kinds
    )
    params = tuple(value for _, values in kinds for value in (*values, limit))
    return f"{select} {order}", (*params, limit)


# --- synchronous helpers, run in the store's thread ------------------------------------------


class _transaction:
    """BEGIN (IMMEDIATE for writes) ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection, *, write: bool) -> None:
        self._conn = conn
        self._begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    def __enter__(self) -> None:
        if self._conn.in_transaction:
            # Left open by a failure whose ROLLBACK failed too; start clean.
            self._conn.execute("ROLLBACK")
        self._conn.execute(self._begin)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL during COMMIT).
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.warning("store rollback failed", exc_info=True)


def _conflict(exc: sqlite3.IntegrityError) -> ConflictError:
    text = str(exc)
    prefix = "UNIQUE constraint failed: "
    if text.startswith(prefix) and text[len(prefix) :] in _UNIQUE_MESSAGES:
        return ConflictError(_UNIQUE_MESSAGES[text[len(prefix) :]])
    return ConflictError(f"conflict: {text}")


def _one(rows: Iterable[sqlite3.Row]) -> sqlite3.Row | None:
    return next(iter(rows), None)


def _get_app(conn: sqlite3.Connection, app_id: str) -> App:
    row = _one(conn.execute(f"SELECT {APP_COLUMNS} FROM apps WHERE id = ?", (app_id,)))
    if row is None:
        raise NotFoundError(MSG_APP_NOT_FOUND)
    return app_from_row(row)


def _get_app_by_name(conn: sqlite3.Connection, name: str) -> App:
    row = _one(conn.execute(f"SELECT {APP_COLUMNS} FROM apps WHERE name = ?", (name,)))
    if row is None:
        raise NotFoundError(MSG_APP_NOT_FOUND)
    return app_from_row(row)


def _get_fn(conn: sqlite3.Connection, fn_id: str) -> FnRecord:
    row = _one(conn.execute(f"SELECT {FN_COLUMNS} FROM fns WHERE id = ?", (fn_id,)))
    if row is None:
        raise NotFoundError(MSG_FN_NOT_FOUND)
    return fn_from_row(row)


def _check_fn(conn: sqlite3.Connection, fn_id: str) -> None:
    if _one(conn.execute("SELECT id FROM fns WHERE id = ?", (fn_id,))) is None:
        raise NotFoundError(MSG_FN_NOT_FOUND)


def _get_trigger(conn: sqlite3.Connection, trigger_id: str) -> Trigger:
    row = _one(conn.execute(f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?", (trigger_id,)))
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return trigger_from_row(row)


def _get_trigger_by_source(
    conn: sqlite3.Connection, app_id: str, type_: str, source: str
) -> Trigger:
    row = _one(
        conn.execute(
            f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = ? AND type = ? AND source = ?",
            (app_id, type_, source),
        )
    )
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return trigger_from_row(row)


def _get_queued_call(conn: sqlite3.Connection, call_id: str) -> QueuedCall:
    select = f"SELECT {QUEUE_COLUMNS} FROM detached_calls WHERE id = ?"
    row = _one(conn.execute(select, (call_id,)))
    if row is None:
        raise NotFoundError(MSG_CALL_NOT_FOUND)
    return queued_call_from_row(row)


def _check_source_free(conn: sqlite3.Connection, trigger: Trigger) -> None:
    row = _one(
        conn.execute(
            "SELECT id FROM triggers WHERE app_id = ? AND type = ? AND source = ? AND id != ?",
            (trigger.app_id, trigger.type, trigger.source, trigger.id),
        )
    )
    if row is not None:
        raise ConflictError(MSG_TRIGGER_SOURCE_EXISTS)


def _check_secrets_exist(conn: sqlite3.Connection, app: App, names: Sequence[str]) -> None:
    """400 naming the first of ``names`` the app has no secret by."""
    for name in names:
        row = conn.execute(
            "SELECT 1 FROM secrets WHERE app_id = ? AND name = ?", (app.id, name)
        ).fetchone()
        if row is None:
            raise InvalidInputError(missing_secret_message(name, app.name))


def _fns_naming(conn: sqlite3.Connection, app_id: str, name: str) -> list[str]:
    """The names of the app's fns whose fnagent.io/secrets names ``name``."""
    rows = conn.execute(
        "SELECT name, annotations FROM fns WHERE app_id = ? ORDER BY name", (app_id,)
    )
    return [row["name"] for row in rows if stored_annotations_name(row["annotations"], name)]


# mypy checks here that SQLiteStore keeps the Store protocol.
_conforms: type[Store] = SQLiteStore
