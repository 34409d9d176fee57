"""The embedded registry for ``fnagent serve``: apps, fns, triggers and sealed secrets in one
SQLite file.

Concurrency: one ``sqlite3`` connection (``check_same_thread=False``) used only from worker
threads through ``anyio.to_thread.run_sync`` with a ``CapacityLimiter(1)``. SQLite has a single
writer anyway, so one connection costs nothing in throughput and removes "database is locked"
between our own requests; the limiter guarantees one thread at a time touches the connection,
and every call is one transaction (``BEGIN IMMEDIATE`` for writes, so checks and writes see the
same state even against another process). ``run_sync`` is not abandoned on cancellation: a
cancelled request waits for its transaction to commit or roll back, so the connection is never
handed on in the middle of one.

Durability: WAL mode with the default ``synchronous=FULL``, foreign keys on (deleting an app or
fn cascades, in the same transaction). A failed statement rolls its transaction back and
raises ``StorageError`` from the sqlite3 error; committed data is untouched.

Schema: ``schema_version`` holds the version; ``MIGRATIONS`` is applied in order, each in its
own transaction, on ``open()``. To change the schema, append a ``Migration(2, ...)`` (see the
comment at ``MIGRATIONS``); never edit a released one.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from fnagent.errors import (
    ClosedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from fnagent.ids import new_id
from fnagent.store.base import Store
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
from fnagent.store.secrets import (
    MSG_SECRET_NOT_FOUND,
    SealedSecret,
    Secret,
    missing_secret_message,
    secret_in_use_message,
    secret_names,
    validate_secret_name,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 5.0
SUPPORTED_URLS = "sqlite3:///absolute/path.db, sqlite3://relative/path.db or sqlite3://:memory:"


@dataclass(frozen=True)
class Migration:
    """One schema step: its statements run in one transaction with the version bump."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append-only. Version 2 would be, for example:
#     Migration(2, "fns: add cpus", ("ALTER TABLE fns ADD COLUMN cpus INTEGER NOT NULL DEFAULT 0",))
# plus the column in _FN_COLUMNS / _fn_from_row and a field on FnRecord.
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
)

# sqlite3's "UNIQUE constraint failed: <columns>" -> the 409 Fn gives for it.
_UNIQUE_MESSAGES = {
    "apps.name": MSG_APP_EXISTS,
    "fns.app_id, fns.name": MSG_FN_EXISTS,
    "triggers.app_id, triggers.name": MSG_TRIGGER_EXISTS,
    "triggers.app_id, triggers.type, triggers.source": MSG_TRIGGER_SOURCE_EXISTS,
}

_APP_COLUMNS = "id, name, config, annotations, syslog_url, shape, created_at, updated_at"
_FN_COLUMNS = (
    "id, app_id, name, image, memory, timeout, idle_timeout, config, annotations, shape, "
    "created_at, updated_at"
)
_TRIGGER_COLUMNS = "id, app_id, fn_id, name, type, source, annotations, created_at, updated_at"
_SECRET_COLUMNS = "app_id, name, created_at, updated_at"

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _ts(when: datetime) -> str:
    # Microseconds, so a record read back equals the one written.
    return when.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def _parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _app_from_row(row: sqlite3.Row) -> App:
    return App(
        id=row["id"],
        name=row["name"],
        config=json.loads(row["config"]),
        annotations=json.loads(row["annotations"]),
        syslog_url=row["syslog_url"],
        shape=row["shape"],
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
    )


def _fn_from_row(row: sqlite3.Row) -> FnRecord:
    return FnRecord(
        id=row["id"],
        app_id=row["app_id"],
        name=row["name"],
        image=row["image"],
        memory=row["memory"],
        timeout=row["timeout"],
        idle_timeout=row["idle_timeout"],
        config=json.loads(row["config"]),
        annotations=json.loads(row["annotations"]),
        shape=row["shape"],
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
    )


def _trigger_from_row(row: sqlite3.Row) -> Trigger:
    return Trigger(
        id=row["id"],
        app_id=row["app_id"],
        fn_id=row["fn_id"],
        name=row["name"],
        type=row["type"],
        source=row["source"],
        annotations=json.loads(row["annotations"]),
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
    )


def _secret_from_row(row: sqlite3.Row) -> Secret:
    return Secret(
        app_id=row["app_id"],
        name=row["name"],
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
    )


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


def _latest_version(migrations: Sequence[Migration]) -> int:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ... in order; got {versions}")
    return len(versions)


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
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._migrations = tuple(migrations)
        self._latest = _latest_version(self._migrations)
        self._busy_timeout_s = busy_timeout_s
        self._limiter = anyio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # Guards _conn between the event loop (aclose) and the worker thread.
        self._lock = threading.Lock()

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
        return f"<SQLiteStore {self.path!r} {state}>"

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

    def _run_sync(self, op: Callable[[sqlite3.Connection], T], write: bool) -> T:
        with self._lock:
            conn = self._conn
        if conn is None:  # closed while this call waited for the limiter
            raise ClosedError("store used after aclose()")
        try:
            with _transaction(conn, write=write):
                return op(conn)
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc) from exc
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", "")
            detail = f"{exc} ({code})" if code else str(exc)
            raise StorageError(f"storage failure: {detail}") from exc

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # --- apps -----------------------------------------------------------------------------

    async def create_app(self, body: Mapping[str, Any]) -> App:
        """A new app from a POST body (id and timestamps assigned; see
        models.app_from_body). 409 "App already exists" for a taken name."""
        app = app_from_body(body, id=new_id(), now=self._now())

        def insert(conn: sqlite3.Connection) -> App:
            conn.execute(
                f"INSERT INTO apps ({_APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    app.id,
                    app.name,
                    _dumps(app.config),
                    _dumps(app.annotations),
                    app.syslog_url,
                    app.shape,
                    _ts(app.created_at),
                    _ts(app.updated_at),
                ),
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
                conn.execute(
                    "UPDATE apps SET config = ?, annotations = ?, syslog_url = ?, shape = ?, "
                    "updated_at = ? WHERE id = ?",
                    (
                        _dumps(app.config),
                        _dumps(app.annotations),
                        app.syslog_url,
                        app.shape,
                        _ts(app.updated_at),
                        app.id,
                    ),
                )
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
                conn, f"SELECT {_APP_COLUMNS} FROM apps", where, cursor=cursor, per_page=per_page
            )
            return [_app_from_row(row) for row in rows], next_cursor

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
                f"INSERT INTO fns ({_FN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.app_id,
                    record.name,
                    record.image,
                    record.memory,
                    record.timeout,
                    record.idle_timeout,
                    _dumps(record.config),
                    _dumps(record.annotations),
                    record.shape,
                    _ts(record.created_at),
                    _ts(record.updated_at),
                ),
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
                conn.execute(
                    "UPDATE fns SET image = ?, memory = ?, timeout = ?, idle_timeout = ?, "
                    "config = ?, annotations = ?, shape = ?, updated_at = ? WHERE id = ?",
                    (
                        fn.image,
                        fn.memory,
                        fn.timeout,
                        fn.idle_timeout,
                        _dumps(fn.config),
                        _dumps(fn.annotations),
                        fn.shape,
                        _ts(fn.updated_at),
                        fn.id,
                    ),
                )
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
                conn, f"SELECT {_FN_COLUMNS} FROM fns", where, cursor=cursor, per_page=per_page
            )
            return [_fn_from_row(row) for row in rows], next_cursor

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
                f"INSERT INTO triggers ({_TRIGGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trigger.id,
                    trigger.app_id,
                    trigger.fn_id,
                    trigger.name,
                    trigger.type,
                    trigger.source,
                    _dumps(trigger.annotations),
                    _ts(trigger.created_at),
                    _ts(trigger.updated_at),
                ),
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
                    "UPDATE triggers SET name = ?, source = ?, annotations = ?, updated_at = ? "
                    "WHERE id = ?",
                    (
                        trigger.name,
                        trigger.source,
                        _dumps(trigger.annotations),
                        _ts(trigger.updated_at),
                        trigger.id,
                    ),
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
            select = f"SELECT {_TRIGGER_COLUMNS} FROM triggers"
            rows, next_cursor = _page(conn, select, where, cursor=cursor, per_page=per_page)
            return [_trigger_from_row(row) for row in rows], next_cursor

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
                (app_id, name, sealed, _ts(now), _ts(now)),
            )
            row = _one(
                conn.execute(
                    f"SELECT {_SECRET_COLUMNS} FROM secrets WHERE app_id = ? AND name = ?",
                    (app_id, name),
                )
            )
            assert row is not None
            return _secret_from_row(row)

        return await self._run(put, write=True)

    async def list_secrets(
        self, *, app_id: str, cursor: str | None = None, per_page: int | None = None
    ) -> tuple[list[Secret], str | None]:
        """The app's secrets ordered by name, without values. 404 "App not found"."""

        def page(conn: sqlite3.Connection) -> tuple[list[Secret], str | None]:
            _get_app(conn, app_id)
            select = f"SELECT {_SECRET_COLUMNS} FROM secrets"
            where: list[tuple[str, object]] = [("app_id = ?", app_id)]
            rows, next_cursor = _page(conn, select, where, cursor=cursor, per_page=per_page)
            return [_secret_from_row(row) for row in rows], next_cursor

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
    row = _one(conn.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE id = ?", (app_id,)))
    if row is None:
        raise NotFoundError(MSG_APP_NOT_FOUND)
    return _app_from_row(row)


def _get_app_by_name(conn: sqlite3.Connection, name: str) -> App:
    row = _one(conn.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE name = ?", (name,)))
    if row is None:
        raise NotFoundError(MSG_APP_NOT_FOUND)
    return _app_from_row(row)


def _get_fn(conn: sqlite3.Connection, fn_id: str) -> FnRecord:
    row = _one(conn.execute(f"SELECT {_FN_COLUMNS} FROM fns WHERE id = ?", (fn_id,)))
    if row is None:
        raise NotFoundError(MSG_FN_NOT_FOUND)
    return _fn_from_row(row)


def _get_trigger(conn: sqlite3.Connection, trigger_id: str) -> Trigger:
    row = _one(conn.execute(f"SELECT {_TRIGGER_COLUMNS} FROM triggers WHERE id = ?", (trigger_id,)))
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return _trigger_from_row(row)


def _get_trigger_by_source(
    conn: sqlite3.Connection, app_id: str, type_: str, source: str
) -> Trigger:
    row = _one(
        conn.execute(
            f"SELECT {_TRIGGER_COLUMNS} FROM triggers WHERE app_id = ? AND type = ? AND source = ?",
            (app_id, type_, source),
        )
    )
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return _trigger_from_row(row)


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
    users = []
    rows = conn.execute(
        "SELECT name, annotations FROM fns WHERE app_id = ? ORDER BY name", (app_id,)
    )
    for row in rows:
        try:
            named = secret_names(json.loads(row["annotations"]))
        except InvalidInputError:
            continue  # stored before the rule: it names nothing the agent would mount
        if name in named:
            users.append(row["name"])
    return users


# mypy checks here that SQLiteStore keeps the Store protocol.
_conforms: type[Store] = SQLiteStore
