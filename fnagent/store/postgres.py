"""The shared registry: apps, fns, triggers, secrets, call records and the detached calls'
queue in PostgreSQL, for agents that share a database.

``FN_DB_URL=postgresql://user:pass@host:port/db`` (or ``postgres://``) selects it; libpq's URL
query parameters (``sslmode``, ...) pass through. Same ``Store`` contract, same columns and
values as the SQLite store (``fnagent/store/rows.py``), so both answer alike.

Connections: psycopg 3's async pool (``psycopg_pool``), at most ``max_connections``, one kept
open. A connection is checked when taken from the pool (one round trip), so a database that
restarted costs no failed call: broken connections are dropped and new ones made.

Timeouts: a connection must be made (or taken from a full pool) within ``connect_timeout_s``;
the server cancels any statement after ``statement_timeout_s``; and each store call as a whole
ends within the sum of both, on the client, even when the network drops the packets.

Errors map into the project's tree: a taken name or source is Fn's 409 with the SQLite store's
message (by constraint name), a parent deleted meanwhile 404, the database unreachable, down or
too slow ``StoreUnavailableError`` (503, with a message naming the server but never the
password), anything else ``StorageError`` (500). Every call is one transaction; one that loses
a deadlock or serialization conflict is retried. A key holding NUL, which no stored text does,
finds nothing without a query (PostgreSQL's text cannot take it).

Between agents: a lease picks its calls ``FOR UPDATE SKIP LOCKED`` (each call to one agent, no
agent waiting on another's pick); a fn naming a secret holds its row ``FOR SHARE`` and a delete
of the secret holds it ``FOR UPDATE``, so the two never both win; records hold their fns ``FOR
KEY SHARE``, so a fn deleted meanwhile waits instead of breaking the batch.

Schema: ``MIGRATIONS`` (same numbers as the SQLite store's), applied by ``open()`` on its own
connection that holds a session advisory lock (``MIGRATION_LOCK_KEY``) meanwhile, so agents
starting at once migrate exactly once: the others wait for the lock, then find the schema
current. Names sort with the "C" collation (byte order, as in SQLite), so cursors page the same
whatever the database's locale.

Changes: migration 5 adds a trigger to apps, fns, triggers and secrets that tells every committed
change of a row on ``CHANNEL`` (fnagent/store/changes.py); ``follow_changes`` listens on a
connection of its own, outside the pool, and reconnects by itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import psycopg
import psycopg.errors
from anyio.abc import AsyncResource
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from fnagent.config import (
    DEFAULT_DB_CONNECT_TIMEOUT_S,
    DEFAULT_DB_MAX_CONNECTIONS,
    DEFAULT_DB_STATEMENT_TIMEOUT_S,
)
from fnagent.errors import (
    ClosedError,
    ConflictError,
    FnAgentError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    StoreUnavailableError,
)
from fnagent.ids import new_id
from fnagent.store.base import Store
from fnagent.store.calls import (
    MSG_CALL_LOG_NOT_FOUND,
    MSG_CALL_NOT_FOUND,
    CallFilter,
    CallRecord,
)
from fnagent.store.changes import CHANNEL, QUEUE_TABLE, TABLES, Change, parse_change
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
from fnagent.store.urls import POSTGRES_URL_FORM, is_postgres_url, redact_url

logger = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]

# Migrations may rewrite tables and wait for another agent's migration: a longer bound.
DEFAULT_MIGRATION_TIMEOUT_S = 120.0
# pg_advisory_lock's key for schema migrations: "fnagent" in ASCII.
MIGRATION_LOCK_KEY = 0x666E6167656E74
# A call that loses a deadlock or serialization conflict is run again, up to this many times.
_ATTEMPTS = 3
# The change listener (follow_changes): how often a quiet connection is checked, and its
# reconnect backoff.
LISTEN_CHECK_S = 5.0
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0

# Append-only, numbered as the SQLite store's list (fnagent/store/migrations.py).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "apps, fns and triggers",
        (
            """CREATE TABLE apps (
                id TEXT PRIMARY KEY,
                name TEXT COLLATE "C" NOT NULL,
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
                app_id TEXT NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                image TEXT NOT NULL,
                memory INTEGER NOT NULL,
                timeout INTEGER NOT NULL,
                idle_timeout INTEGER NOT NULL,
                config TEXT NOT NULL,
                annotations TEXT NOT NULL,
                shape TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT fns_app_fk FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
                CONSTRAINT fns_app_id_name_unique UNIQUE (app_id, name),
                -- the parent key for triggers' (fn_id, app_id): a trigger's fn is in its app
                CONSTRAINT fns_id_app_id_unique UNIQUE (id, app_id)
            )""",
            """CREATE TABLE triggers (
                id TEXT PRIMARY KEY,
                app_id TEXT NOT NULL,
                fn_id TEXT NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                type TEXT NOT NULL,
                source TEXT COLLATE "C" NOT NULL,
                annotations TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT triggers_app_fk
                    FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
                CONSTRAINT triggers_fn_fk
                    FOREIGN KEY (fn_id, app_id) REFERENCES fns (id, app_id) ON DELETE CASCADE,
                CONSTRAINT triggers_app_id_name_unique UNIQUE (app_id, name),
                CONSTRAINT triggers_app_id_type_source_unique UNIQUE (app_id, type, source)
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
            # runs with the reason kept. Times are DOUBLE PRECISION: PostgreSQL's REAL has
            # 24 bits, too few for Unix seconds. The "C" id orders ties as SQLite does.
            """CREATE TABLE detached_calls (
                id TEXT COLLATE "C" PRIMARY KEY,
                fn_id TEXT NOT NULL,
                app_id TEXT NOT NULL,
                is_trigger INTEGER NOT NULL,
                method TEXT NOT NULL,
                url TEXT NOT NULL,
                headers TEXT NOT NULL,
                body BYTEA NOT NULL,
                callback_url TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                not_before DOUBLE PRECISION NOT NULL,
                lease_owner TEXT,
                lease_expires DOUBLE PRECISION,
                started_at DOUBLE PRECISION,
                completed_at DOUBLE PRECISION,
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
            # ids sort by time and lists page by id, created_at compares as text: "C" order.
            """CREATE TABLE calls (
                id TEXT COLLATE "C" PRIMARY KEY,
                fn_id TEXT NOT NULL,
                app_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT COLLATE "C" NOT NULL,
                started_at TEXT,
                completed_at TEXT,
                http_status INTEGER,
                error TEXT,
                start TEXT,
                detached INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                queued_ms DOUBLE PRECISION,
                start_ms DOUBLE PRECISION,
                exec_ms DOUBLE PRECISION,
                CONSTRAINT calls_fn_fk FOREIGN KEY (fn_id) REFERENCES fns (id) ON DELETE CASCADE
            )""",
            # The list by fn, newest first, and the retention's count per fn.
            "CREATE INDEX calls_fn_id_id ON calls (fn_id, id)",
            # The retention's age bound.
            "CREATE INDEX calls_created_at ON calls (created_at)",
            """CREATE TABLE call_logs (
                call_id TEXT COLLATE "C" PRIMARY KEY,
                log BYTEA NOT NULL,
                CONSTRAINT call_logs_call_fk
                    FOREIGN KEY (call_id) REFERENCES calls (id) ON DELETE CASCADE
            )""",
        ),
    ),
    Migration(
        4,
        "secrets (sealed values)",
        (
            """CREATE TABLE secrets (
                app_id TEXT NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                sealed BYTEA NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                CONSTRAINT secrets_app_fk
                    FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
                CONSTRAINT secrets_pkey PRIMARY KEY (app_id, name)
            )""",
        ),
    ),
    Migration(
        5,
        "change notifications",
        (
            # Every committed change of a row of these four tables, cascades included, is told
            # on CHANNEL (fnagent/store/changes.py); a secret's id is its name, an app's app_id
            # its own id. pg_notify in the writing transaction: delivered at its commit, never
            # for a rolled-back write.
            f"""CREATE FUNCTION fnagent_notify_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                r jsonb;
            BEGIN
                IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
                PERFORM pg_notify('{CHANNEL}', json_build_object(
                    'table', TG_TABLE_NAME,
                    'op', lower(TG_OP),
                    'id', COALESCE(r ->> 'id', r ->> 'name'),
                    'app_id', COALESCE(r ->> 'app_id', r ->> 'id')
                )::text);
                RETURN NULL;
            END
            $$""",
            *(
                f"""CREATE TRIGGER {table}_notify_change
                AFTER INSERT OR UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION fnagent_notify_change()"""
                for table in TABLES
            ),
            # A call queued: agents wake their dispatchers (one with the fn hot leases it).
            f"""CREATE FUNCTION fnagent_notify_queued() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{CHANNEL}', json_build_object(
                    'table', '{QUEUE_TABLE}', 'op', 'insert', 'id', NEW.id, 'app_id', NEW.app_id
                )::text);
                RETURN NULL;
            END
            $$""",
            """CREATE TRIGGER detached_calls_notify_queued AFTER INSERT ON detached_calls
            FOR EACH ROW EXECUTE FUNCTION fnagent_notify_queued()""",
        ),
    ),
    # SQLite's count of the queued calls held the store and the event loop's writes; here the
    # count runs in the database server, and a counter row that every agent's enqueues
    # updated would be one lock they all queue for.
    Migration(6, "detached calls: the queue's depth", ()),
    # A finish now deletes its call (fnagent/store/queue.py); those finished before keep
    # their requests' bodies and nothing else reads them.
    Migration(
        7,
        "detached calls: finished calls leave the queue",
        ("DELETE FROM detached_calls WHERE status IN ('success', 'error')",),
    ),
)

_CALL_UPSERT = call_upsert_statement("%s")

# A violated constraint -> the error Fn gives for it.
_CONSTRAINT_ERRORS: dict[str, tuple[type[FnAgentError], str]] = {
    "apps_name_unique": (ConflictError, MSG_APP_EXISTS),
    "fns_app_id_name_unique": (ConflictError, MSG_FN_EXISTS),
    "triggers_app_id_name_unique": (ConflictError, MSG_TRIGGER_EXISTS),
    "triggers_app_id_type_source_unique": (ConflictError, MSG_TRIGGER_SOURCE_EXISTS),
    # The parent went away between our read and the insert.
    "fns_app_fk": (NotFoundError, MSG_APP_NOT_FOUND),
    "triggers_app_fk": (NotFoundError, MSG_APP_NOT_FOUND),
    "triggers_fn_fk": (NotFoundError, MSG_FN_NOT_FOUND),
    "secrets_app_fk": (NotFoundError, MSG_APP_NOT_FOUND),
}


def parse_url(url: str) -> dict[str, str]:
    """libpq's connection parameters for a ``postgresql://`` or ``postgres://`` URL that
    names a host and a database; InvalidInputError with a message that never shows the
    password otherwise."""
    shown = redact_url(url)
    if not is_postgres_url(url):
        raise InvalidInputError(
            f"FN_DB_URL {shown!r} is not a PostgreSQL URL: use {POSTGRES_URL_FORM}"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).split(" in URI:", 1)[0].replace(url, shown)
        password = urlsplit(url).password if "[" not in url else None
        if password:
            reason = reason.replace(password, "***").replace(unquote(password), "***")
        raise InvalidInputError(f"FN_DB_URL {shown!r} is not a valid URL: {reason}") from None
    for port in str(params.get("port", "5432")).split(","):
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInputError(
                f"FN_DB_URL {shown!r}: the port must be a number from 1 to 65535"
            )
    if not params.get("host") and not params.get("hostaddr"):
        raise InvalidInputError(f"FN_DB_URL {shown!r} names no host: use {POSTGRES_URL_FORM}")
    if not params.get("dbname"):
        raise InvalidInputError(f"FN_DB_URL {shown!r} names no database: use {POSTGRES_URL_FORM}")
    return {key: str(value) for key, value in params.items()}


class PostgresStore(AsyncResource):
    """The ``Store`` contract (fnagent/store/base.py) in PostgreSQL, plus
    ``StoreUnavailableError`` (503) when the database cannot be reached in time."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        migrations: Sequence[Migration] = MIGRATIONS,
        max_connections: int = DEFAULT_DB_MAX_CONNECTIONS,
        connect_timeout_s: float = DEFAULT_DB_CONNECT_TIMEOUT_S,
        statement_timeout_s: float = DEFAULT_DB_STATEMENT_TIMEOUT_S,
        migration_timeout_s: float = DEFAULT_MIGRATION_TIMEOUT_S,
    ) -> None:
        self._params = parse_url(url)
        self.url = redact_url(url)
        self._clock = clock
        self._migrations = tuple(migrations)
        self._latest = latest_version(self._migrations)
        if max_connections < 1:
            raise InvalidInputError("the store needs at least one database connection")
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_s = statement_timeout_s
        self._migration_timeout_s = migration_timeout_s
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._opening = anyio.Lock()
        self._closed = False
        self._enqueues = GroupCommit(self._write_enqueued)

    @property
    def where(self) -> str:
        """``host:port/database``, naming the server in messages."""
        params = self._params
        host = params.get("host") or params.get("hostaddr", "")
        return f"{host}:{params.get('port', '5432')}/{params['dbname']}"

    def identity(self) -> str:
        """Which database this is, without credentials: ``postgresql://user@host:port/db``."""
        user = self._params.get("user", "")
        return f"postgresql://{user}{'@' if user else ''}{self.where}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._pool else "new"
        return f"<PostgresStore {self.url!r} {state}>"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Migrate to the latest schema (under the advisory lock), then open the pool.
        Idempotent while open; ClosedError after ``aclose()``; StoreUnavailableError when the
        database cannot be reached within the connect timeout."""
        async with self._opening:
            if self._closed:
                raise ClosedError("store used after aclose()")
            if self._pool is not None:
                return
            await self._migrate()
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                "",
                kwargs={**self._connect_kwargs(), "row_factory": dict_row},
                min_size=1,
                max_size=self._max_connections,
                open=False,
                configure=self._configure,
                check=AsyncConnectionPool.check_connection,
                timeout=self._connect_timeout_s,
                name="fnagent-store",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await pool.close()
                if isinstance(exc, psycopg.Error):
                    raise self._error(exc) from exc
                raise
            self._pool = pool

    async def aclose(self) -> None:
        """Close the pool after the running calls. Idempotent; later calls raise
        ClosedError."""
        async with self._opening:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await pool.close(timeout=self._connect_timeout_s)

    async def __aenter__(self) -> Self:
        # AsyncResource's __aexit__ closes; entering also opens.
        await self.open()
        return self

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            **self._params,
            "autocommit": True,
            # libpq counts whole seconds, at least 2.
            "connect_timeout": max(2, math.ceil(self._connect_timeout_s)),
            "application_name": self._params.get("application_name", "fnagent"),
        }

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(f"SET statement_timeout = {int(self._statement_timeout_s * 1000)}")

    async def _migrate(self) -> None:
        try:
            with anyio.fail_after(self._connect_timeout_s):
                conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs())
        except TimeoutError:
            raise StoreUnavailableError(
                f"the database is unavailable: no connection to {self.where} within "
                f"{self._connect_timeout_s:g} s"
            ) from None
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        # Closing the connection releases the advisory lock, whatever happened.
        async with conn:
            try:
                await conn.execute(
                    f"SET statement_timeout = {int(self._migration_timeout_s * 1000)}"
                )
                await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                await self._migrate_locked(conn)
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    async def _migrate_locked(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO schema_version (version) SELECT 0 "
                "WHERE NOT EXISTS (SELECT 1 FROM schema_version)"
            )
        for migration in self._migrations:
            async with conn.transaction():
                row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
                current = int(row[0]) if row else 0
                if current > self._latest:
                    raise StorageError(
                        f"storage failure: {self.where} has schema version {current}, newer "
                        f"than this fnagent knows ({self._latest})"
                    )
                if current >= migration.version:
                    continue
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute("UPDATE schema_version SET version = %s", (migration.version,))
                logger.info(
                    "store schema migrated",
                    extra={"db": self.identity(), "version": migration.version},
                )

    # --- changes told by other agents ---------------------------------------------------------

    async def follow_changes(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_listening: Callable[[], Awaitable[None]],
        *,
        check_s: float = LISTEN_CHECK_S,
    ) -> None:
        """Until cancelled: LISTEN on ``CHANNEL`` on a connection of its own (outside the pool,
        which it never holds a slot of) and await ``on_change`` for each change told, in
        order; payloads this fnagent does not know are skipped. A quiet connection is checked
        every ``check_s``; a lost one is made again with backoff (RECONNECT_MIN_S doubling to
        RECONNECT_MAX_S). ``on_listening()`` is awaited each time the listener (re)starts,
        the first time included: changes made while nobody listened were not told, so
        everything must be read again. The callbacks must not raise (a raise ends this)."""
        delay = RECONNECT_MIN_S
        down = False
        while True:
            try:
                with anyio.fail_after(self._connect_timeout_s):
                    conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs())
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if down:
                        logger.info("listening for changes again", extra={"db": self.identity()})
                    down, delay = False, RECONNECT_MIN_S
                    await on_listening()
                    while True:
                        async for notify in conn.notifies(timeout=check_s):
                            change = parse_change(notify.payload)
                            if change is not None:
                                await on_change(change)
                        with anyio.fail_after(self._statement_timeout_s):
                            await conn.execute("SELECT 1")
            except (psycopg.Error, TimeoutError, OSError) as exc:
                if not down:
                    message = (
                        self._error(exc).message
                        if isinstance(exc, psycopg.Error)
                        else (f"the database is unavailable: {self.where} did not answer in time")
                    )
                    logger.warning(
                        "lost the change listener; reconnecting",
                        extra={"db": self.identity(), "error": message},
                    )
                down = True
            await anyio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    # --- running queries ------------------------------------------------------------------

    async def _run(self, op: Callable[[Conn], Awaitable[T]], *, one_statement: bool = False) -> T:
        """``op`` in one transaction on a pooled connection, with the errors mapped.
        ``one_statement``: ``op`` runs a single statement, atomic by itself, so the BEGIN and
        COMMIT round trips are left out."""
        pool = self._pool
        if pool is None:
            raise ClosedError("store used after aclose()" if self._closed else "store not open")
        limit_s = self._connect_timeout_s + self._statement_timeout_s
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with anyio.fail_after(limit_s):
                    async with pool.connection() as conn:
                        if one_statement:
                            return await op(conn)
                        async with conn.transaction():
                            return await op(conn)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if attempt == _ATTEMPTS:
                    raise self._error(exc) from exc
            except PoolClosed:
                raise ClosedError("store used after aclose()") from None
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            except TimeoutError:
                raise StoreUnavailableError(
                    f"the database is unavailable: {self.where} did not answer within {limit_s:g} s"
                ) from None
        raise AssertionError("unreachable")

    def _error(self, exc: psycopg.Error) -> FnAgentError:
        """The project's error for a psycopg one; never shows the password."""
        constraint = exc.diag.constraint_name
        if isinstance(exc, psycopg.errors.IntegrityError) and constraint in _CONSTRAINT_ERRORS:
            kind, message = _CONSTRAINT_ERRORS[constraint]
            return kind(message)
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return ConflictError(f"conflict: {exc.diag.message_primary}")
        if isinstance(exc, PoolTimeout):
            return StoreUnavailableError(
                f"the database is unavailable: no connection to {self.where} within "
                f"{self._connect_timeout_s:g} s (it is down or unreachable, or all "
                f"{self._max_connections} connections stayed busy)"
            )
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return StoreUnavailableError(
                f"the database is unavailable: a statement on {self.where} passed the "
                f"statement timeout ({self._statement_timeout_s:g} s)"
            )
        detail = " ".join(str(exc).split()) or type(exc).__name__
        password = self._params.get("password")
        if password:
            detail = detail.replace(password, "***")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(f"the database is unavailable ({self.where}): {detail}")
        return StorageError(f"storage failure: {detail}")

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # --- apps -----------------------------------------------------------------------------

    async def create_app(self, body: Mapping[str, Any]) -> App:
        """A new app from a POST body. 409 "App already exists" for a taken name."""
        app = app_from_body(body, id=new_id(), now=self._now())

        async def insert(conn: Conn) -> App:
            await conn.execute(
                f"INSERT INTO apps ({APP_COLUMNS}) VALUES ({_marks(8)})", app_values(app)
            )
            return app

        return await self._run(insert, one_statement=True)

    async def get_app(self, app_id: str) -> App:
        return await self._run(lambda conn: _get_app(conn, app_id), one_statement=True)

    async def get_app_by_name(self, name: str) -> App:
        async def get(conn: Conn) -> App:
            row = await _one(conn, f"SELECT {APP_COLUMNS} FROM apps WHERE name = %s", (name,))
            if row is None:
                raise NotFoundError(MSG_APP_NOT_FOUND)
            return app_from_row(row)

        return await self._run(get, one_statement=True)

    async def update_app(self, app_id: str, patch: Mapping[str, Any]) -> App:
        """Merge the PUT body (models.apply_app_patch), the row locked meanwhile."""
        now = self._now()

        async def update(conn: Conn) -> App:
            current = await _get_app(conn, app_id, lock=True)
            app = apply_app_patch(current, patch, now)
            if app is not current:
                await conn.execute(*update_statement("apps", app_changes(app), app.id, "%s"))
            return app

        return await self._run(update)

    async def delete_app(self, app_id: str) -> None:
        """The app with its fns and triggers (the foreign keys cascade)."""
        await self._run(
            lambda conn: _delete(conn, "apps", app_id, MSG_APP_NOT_FOUND), one_statement=True
        )

    async def list_apps(
        self,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[App], str | None]:
        where: list[tuple[str, object]] = [("name = %s", name)] if name else []
        return await self._run(
            lambda conn: _page(conn, "apps", APP_COLUMNS, app_from_row, where, cursor, per_page),
            one_statement=True,
        )

    # --- fns ------------------------------------------------------------------------------

    async def create_fn(self, body: Mapping[str, Any]) -> FnRecord:
        """A new fn in an existing app; without a shape it takes the app's."""
        fn = fn_from_body(body, id=new_id(), now=self._now())
        named = secret_names(fn.annotations)

        async def insert(conn: Conn) -> FnRecord:
            app = await _get_app(conn, fn.app_id)
            await _check_secrets_exist(conn, app, named)
            record = fn if fn.shape else replace(fn, shape=app.shape)
            await conn.execute(
                f"INSERT INTO fns ({FN_COLUMNS}) VALUES ({_marks(12)})", fn_values(record)
            )
            return record

        return await self._run(insert)

    async def get_fn(self, fn_id: str) -> FnRecord:
        return await self._run(lambda conn: _get_fn(conn, fn_id), one_statement=True)

    async def update_fn(self, fn_id: str, patch: Mapping[str, Any]) -> FnRecord:
        """Merge the PUT body (models.apply_fn_patch), the row locked meanwhile."""
        now = self._now()

        async def update(conn: Conn) -> FnRecord:
            current = await _get_fn(conn, fn_id, lock=True)
            fn = apply_fn_patch(current, patch, now)
            if fn is not current:
                named = secret_names(fn.annotations)
                if named:
                    await _check_secrets_exist(conn, await _get_app(conn, fn.app_id), named)
                await conn.execute(*update_statement("fns", fn_changes(fn), fn.id, "%s"))
            return fn

        return await self._run(update)

    async def delete_fn(self, fn_id: str) -> None:
        await self._run(
            lambda conn: _delete(conn, "fns", fn_id, MSG_FN_NOT_FOUND), one_statement=True
        )

    async def list_fns(
        self,
        *,
        app_id: str,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[FnRecord], str | None]:
        if not app_id:
            raise InvalidInputError(MSG_FN_MISSING_APP_ID)
        where: list[tuple[str, object]] = [("app_id = %s", app_id)]
        if name:
            where.append(("name = %s", name))
        return await self._run(
            lambda conn: _page(conn, "fns", FN_COLUMNS, fn_from_row, where, cursor, per_page),
            one_statement=True,
        )

    # --- triggers -------------------------------------------------------------------------

    async def create_trigger(self, body: Mapping[str, Any]) -> Trigger:
        trigger = trigger_from_body(body, id=new_id(), now=self._now())

        async def insert(conn: Conn) -> Trigger:
            await _get_app(conn, trigger.app_id)
            fn = await _get_fn(conn, trigger.fn_id)
            if fn.app_id != trigger.app_id:
                raise InvalidInputError(MSG_TRIGGER_FN_NOT_IN_APP)
            # Fn checks the source before the name; a racing insert hits the unique keys.
            await _check_source_free(conn, trigger)
            await conn.execute(
                f"INSERT INTO triggers ({TRIGGER_COLUMNS}) VALUES ({_marks(9)})",
                trigger_values(trigger),
            )
            return trigger

        return await self._run(insert)

    async def get_trigger(self, trigger_id: str) -> Trigger:
        return await self._run(lambda conn: _get_trigger(conn, trigger_id), one_statement=True)

    async def update_trigger(self, trigger_id: str, patch: Mapping[str, Any]) -> Trigger:
        now = self._now()

        async def update(conn: Conn) -> Trigger:
            current = await _get_trigger(conn, trigger_id, lock=True)
            trigger = apply_trigger_patch(current, patch, now)
            if trigger is not current:
                await _check_source_free(conn, trigger)
                await conn.execute(
                    *update_statement("triggers", trigger_changes(trigger), trigger.id, "%s")
                )
            return trigger

        return await self._run(update)

    async def delete_trigger(self, trigger_id: str) -> None:
        await self._run(
            lambda conn: _delete(conn, "triggers", trigger_id, MSG_TRIGGER_NOT_FOUND),
            one_statement=True,
        )

    async def list_triggers(
        self,
        *,
        app_id: str,
        fn_id: str | None = None,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[Trigger], str | None]:
        if not app_id:
            raise InvalidInputError(MSG_TRIGGER_MISSING_APP_ID)
        where: list[tuple[str, object]] = [("app_id = %s", app_id)]
        if fn_id:
            where.append(("fn_id = %s", fn_id))
        if name:
            where.append(("name = %s", name))
        return await self._run(
            lambda conn: _page(
                conn, "triggers", TRIGGER_COLUMNS, trigger_from_row, where, cursor, per_page
            ),
            one_statement=True,
        )

    async def get_trigger_by_source(self, app_id: str, type: str, source: str) -> Trigger:
        return await self._run(
            lambda conn: _get_trigger_by_source(conn, app_id, type, source), one_statement=True
        )

    async def find_http_trigger(self, app_name: str, source: str) -> tuple[App, FnRecord, Trigger]:
        """What ``/t/{app_name}/{source}`` calls, read in one transaction."""
        if not source.startswith("/"):
            source = "/" + source

        async def find(conn: Conn) -> tuple[App, FnRecord, Trigger]:
            row = await _one(conn, f"SELECT {APP_COLUMNS} FROM apps WHERE name = %s", (app_name,))
            if row is None:
                raise NotFoundError(MSG_APP_NOT_FOUND)
            app = app_from_row(row)
            trigger = await _get_trigger_by_source(conn, app.id, TRIGGER_TYPE_HTTP, source)
            return app, await _get_fn(conn, trigger.fn_id), trigger

        return await self._run(find)

    # --- detached calls -------------------------------------------------------------------

    async def enqueue_call(self, call: QueuedCall) -> None:
        """Store ``call`` as queued; returns once committed. Group commit
        (fnagent/store/group.py): calls that arrive while a batch is being written go
        together in the next transaction, one commit (and one flush of the database's log)
        for all of them instead of one each, each waiting for a pooled connection."""
        await self._enqueues.submit(call)

    async def _write_enqueued(self, calls: list[QueuedCall]) -> None:
        rows = [queued_call_values(call) for call in calls]

        async def insert(conn: Conn) -> None:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO detached_calls ({QUEUE_COLUMNS}) VALUES ({_marks(17)})", rows
                )

        await self._run(insert, one_statement=len(rows) == 1)

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
        first, leased to ``owner`` until ``now + lease_s`` with attempts + 1.

        One statement: the rows are picked ``FOR UPDATE SKIP LOCKED``, so agents leasing at
        once each take other calls, and none waits for a row another one is taking."""
        if limit <= 0:
            return []

        statement, params = lease_statement(
            owner=owner, limit=limit, now=now, lease_s=lease_s, hot=hot, cold_due=cold_due
        )

        async def lease(conn: Conn) -> list[QueuedCall]:
            result = await conn.execute(statement, params)
            calls = [queued_call_from_row(row) for row in await result.fetchall()]
            # RETURNING keeps no order.
            return sorted(calls, key=lambda call: (call.not_before, call.id))

        return await self._run(lease, one_statement=True)

    async def renew_leases(
        self, *, owner: str, call_ids: Sequence[str], now: float, lease_s: float
    ) -> set[str]:
        """Extend the leases ``owner`` still holds among ``call_ids``; returns their ids."""
        if not call_ids:
            return set()

        async def renew(conn: Conn) -> set[str]:
            result = await conn.execute(
                "UPDATE detached_calls SET lease_expires = %s "
                "WHERE id = ANY(%s) AND status = %s AND lease_owner = %s RETURNING id",
                (now + lease_s, list(call_ids), RUNNING, owner),
            )
            return {row["id"] for row in await result.fetchall()}

        return await self._run(renew, one_statement=True)

    async def requeue_call(
        self, call_id: str, *, owner: str, not_before: float, error: str | None
    ) -> bool:
        """Back to queued from ``not_before`` while ``owner`` holds the lease."""

        async def requeue(conn: Conn) -> bool:
            result = await conn.execute(
                "UPDATE detached_calls SET status = %s, not_before = %s, last_error = %s, "
                "lease_owner = NULL, lease_expires = NULL "
                "WHERE id = %s AND status = %s AND lease_owner = %s",
                (QUEUED, not_before, error, call_id, RUNNING, owner),
            )
            return result.rowcount > 0

        return await self._run(requeue, one_statement=True)

    async def finish_call(self, call_id: str, *, owner: str) -> bool:
        """Delete the call while ``owner`` holds its lease."""

        async def finish(conn: Conn) -> bool:
            result = await conn.execute(
                "DELETE FROM detached_calls WHERE id = %s AND status = %s AND lease_owner = %s",
                (call_id, RUNNING, owner),
            )
            return result.rowcount > 0

        return await self._run(finish, one_statement=True)

    async def release_leases(self, owner: str, *, now: float) -> int:
        """Every call ``owner`` runs goes back to queued, due ``now``."""

        async def release(conn: Conn) -> int:
            result = await conn.execute(
                "UPDATE detached_calls SET status = %s, not_before = %s, "
                "lease_owner = NULL, lease_expires = NULL WHERE status = %s AND lease_owner = %s",
                (QUEUED, now, RUNNING, owner),
            )
            return result.rowcount

        return await self._run(release, one_statement=True)

    async def get_queued_call(self, call_id: str) -> QueuedCall:
        """404 "Call not found"."""

        async def get(conn: Conn) -> QueuedCall:
            row = await _one(
                conn, f"SELECT {QUEUE_COLUMNS} FROM detached_calls WHERE id = %s", (call_id,)
            )
            if row is None:
                raise NotFoundError(MSG_CALL_NOT_FOUND)
            return queued_call_from_row(row)

        return await self._run(get, one_statement=True)

    async def count_queued(self) -> int:
        """Calls in status queued."""

        async def count(conn: Conn) -> int:
            row = await _one(
                conn, "SELECT count(*) AS n FROM detached_calls WHERE status = %s", (QUEUED,)
            )
            return int(row["n"]) if row else 0

        return await self._run(count, one_statement=True)

    # --- call records and logs --------------------------------------------------------------

    async def put_calls(self, calls: Sequence[CallRecord], logs: Mapping[str, bytes]) -> int:
        """Upsert ``calls`` and the logs given for them in one transaction, skipping records
        of fns that no longer exist. Returns how many records were written."""
        if not calls:
            return 0

        async def put(conn: Conn) -> int:
            # FOR KEY SHARE: a fn found here cannot be deleted before the commit, so the
            # inserts never meet a missing parent (deletes wait; other writes do not).
            result = await conn.execute(
                "SELECT id FROM fns WHERE id = ANY(%s) FOR KEY SHARE",
                (sorted({call.fn_id for call in calls}),),
            )
            live = {row["id"] for row in await result.fetchall()}
            kept = [call for call in calls if call.fn_id in live]
            async with conn.cursor() as cursor:
                await cursor.executemany(_CALL_UPSERT, [call_values(call) for call in kept])
                await cursor.executemany(
                    "INSERT INTO call_logs (call_id, log) VALUES (%s, %s) "
                    "ON CONFLICT (call_id) DO UPDATE SET log = EXCLUDED.log",
                    [(call.id, logs[call.id]) for call in kept if call.id in logs],
                )
            return len(kept)

        return await self._run(put)

    async def get_call(self, fn_id: str, call_id: str) -> CallRecord:
        """404 "Fn not found" / "Call not found"."""

        async def get(conn: Conn) -> CallRecord:
            await _get_fn(conn, fn_id)
            row = await _one(
                conn,
                f"SELECT {CALL_COLUMNS} FROM calls WHERE id = %s AND fn_id = %s",
                (call_id, fn_id),
            )
            if row is None:
                raise NotFoundError(MSG_CALL_NOT_FOUND)
            return call_from_row(row)

        return await self._run(get)

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
        statement = calls_page_statement(fn_id, after, where, limit + 1, "%s")

        async def page(conn: Conn) -> tuple[list[CallRecord], str | None]:
            await _get_fn(conn, fn_id)
            result = await conn.execute(*statement)
            rows = await result.fetchall()
            records = [call_from_row(row) for row in rows[:limit]]
            more = len(rows) > limit
            return records, encode_cursor(records[-1].id) if more else None

        return await self._run(page)

    async def get_call_log(self, fn_id: str, call_id: str) -> bytes:
        """404 "Fn not found" / "Call log not found"."""

        async def get(conn: Conn) -> bytes:
            await _get_fn(conn, fn_id)
            row = await _one(
                conn,
                "SELECT call_logs.log FROM call_logs JOIN calls ON calls.id = call_logs.call_id "
                "WHERE calls.id = %s AND calls.fn_id = %s",
                (call_id, fn_id),
            )
            if row is None:
                raise NotFoundError(MSG_CALL_LOG_NOT_FOUND)
            return bytes(row["log"])

        return await self._run(get)

    async def prune_calls(
        self, *, keep_per_fn: int, before: datetime, max_rows: int | None = None
    ) -> int:
        """Delete calls created before ``before`` and each fn's beyond its ``keep_per_fn``
        newest (their logs go with them), at most ``max_rows`` (None: all), each fn's oldest
        first. Returns how many calls were deleted."""

        async def prune(conn: Conn) -> int:
            aged = await conn.execute(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE created_at < %s "
                "ORDER BY created_at LIMIT %s)",
                (ts(before), max_rows),
            )
            deleted = aged.rowcount
            left = None if max_rows is None else max_rows - deleted
            if left is not None and left <= 0:
                return deleted
            # Per fn, on the (fn_id, id) index: the newest call past the count, and all older.
            counted = await conn.execute(
                "DELETE FROM calls WHERE id IN (SELECT c.id FROM calls AS c JOIN ("
                "SELECT f.id AS fn_id, (SELECT id FROM calls WHERE fn_id = f.id "
                "ORDER BY id DESC OFFSET %s LIMIT 1) AS first_dropped FROM fns AS f) AS d "
                "ON c.fn_id = d.fn_id AND c.id <= d.first_dropped ORDER BY c.id LIMIT %s)",
                (keep_per_fn, left),
            )
            return deleted + counted.rowcount

        return await self._run(prune)

    # --- secrets --------------------------------------------------------------------------

    async def put_secret(self, app_id: str, name: str, sealed: bytes) -> Secret:
        """Create the app's secret ``name`` or replace its sealed value (created_at kept).
        400 for an invalid name; 404 "App not found"."""
        validate_secret_name(name)
        now = ts(self._now())

        async def put(conn: Conn) -> Secret:
            # An app deleted meanwhile breaks secrets_app_fk: 404 too.
            await _get_app(conn, app_id)
            row = await _one(
                conn,
                "INSERT INTO secrets (app_id, name, sealed, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (app_id, name) DO UPDATE SET "
                "sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at "
                f"RETURNING {SECRET_COLUMNS}",
                (app_id, name, sealed, now, now),
            )
            assert row is not None
            return secret_from_row(row)

        return await self._run(put)

    async def list_secrets(
        self, *, app_id: str, cursor: str | None = None, per_page: int | None = None
    ) -> tuple[list[Secret], str | None]:
        """The app's secrets ordered by name, without values. 404 "App not found"."""
        where: list[tuple[str, object]] = [("app_id = %s", app_id)]

        async def page(conn: Conn) -> tuple[list[Secret], str | None]:
            await _get_app(conn, app_id)
            return await _page(
                conn, "secrets", SECRET_COLUMNS, secret_from_row, where, cursor, per_page
            )

        return await self._run(page)

    async def get_sealed_secrets(self, app_id: str, names: Sequence[str]) -> list[SealedSecret]:
        """The app's sealed values among ``names``, in that order; missing names left out."""
        wanted = list(names)
        searched = [name for name in wanted if not _holds_nul([name])]
        if not searched or _holds_nul([app_id]):
            return []

        async def read(conn: Conn) -> list[SealedSecret]:
            result = await conn.execute(
                "SELECT name, sealed FROM secrets WHERE app_id = %s AND name = ANY(%s)",
                (app_id, searched),
            )
            found = {row["name"]: bytes(row["sealed"]) for row in await result.fetchall()}
            return [
                SealedSecret(app_id=app_id, name=name, sealed=found[name])
                for name in wanted
                if name in found
            ]

        return await self._run(read, one_statement=True)

    async def delete_secret(self, app_id: str, name: str) -> None:
        """404 "App not found" / "Secret not found"; 409 while a fn of the app names it.

        The secret's row is locked first, and a fn naming it locks it ``FOR SHARE`` (see
        ``_check_secrets_exist``): of a delete and a fn naming the secret at once, one waits
        for the other, so no fn is left naming a deleted secret."""

        async def delete(conn: Conn) -> None:
            await _get_app(conn, app_id)
            exists = await _one(
                conn,
                "SELECT 1 FROM secrets WHERE app_id = %s AND name = %s FOR UPDATE",
                (app_id, name),
            )
            if exists is None:
                raise NotFoundError(MSG_SECRET_NOT_FOUND)
            users = await _fns_naming(conn, app_id, name)
            if users:
                raise ConflictError(secret_in_use_message(name, users))
            await conn.execute(
                "DELETE FROM secrets WHERE app_id = %s AND name = %s", (app_id, name)
            )

        await self._run(delete)

    async def any_sealed_secret(self) -> SealedSecret | None:
        """One stored secret (the first by app and name), or None."""

        async def first(conn: Conn) -> SealedSecret | None:
            row = await _one(
                conn,
                "SELECT app_id, name, sealed FROM secrets ORDER BY app_id, name LIMIT 1",
                (),
            )
            if row is None:
                return None
            return SealedSecret(app_id=row["app_id"], name=row["name"], sealed=bytes(row["sealed"]))

        return await self._run(first, one_statement=True)


# --- queries, inside a call's transaction ----------------------------------------------------


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


LEASE_CANDIDATES_PER_CALL = 4
"""A lease looks at this many of the first runnable calls per call it may take: enough that
agents leasing at once, each skipping the rows the others are locking, still fill theirs."""


def lease_statement(
    *,
    owner: str,
    limit: int,
    now: float,
    lease_s: float,
    hot: Collection[str],
    cold_due: float | None,
) -> tuple[str, tuple[Any, ...]]:
    """The lease's one statement (``PostgresStore.lease_calls``) and its parameters.

    The candidates come from one indexed search per kind of runnable call (queued and due;
    queued for a fn this agent has hot; running with an expired lease), each ordered and
    limited in its index, so the statement reads a few rows whatever the table holds: an
    ``OR`` of the kinds made PostgreSQL fetch and sort every queued call on each lease (17-34
    ms with 20,000 queued). The candidates are then locked ``FOR UPDATE SKIP LOCKED`` (not
    allowed in the ``UNION`` itself), re-checked, oldest due first, and leased."""
    due, hot_due = runnable_when(now, hot, cold_due)
    window = limit * LEASE_CANDIDATES_PER_CALL
    order = "ORDER BY not_before, id LIMIT %s"
    kinds: list[tuple[str, tuple[Any, ...]]] = [("status = %s AND not_before <= %s", (QUEUED, due))]
    if hot_due:
        kinds.append(
            (
                "status = %s AND not_before > %s AND not_before <= %s AND fn_id = ANY(%s)",
                (QUEUED, due, now, hot_due),
            )
        )
    kinds.append(("status = %s AND lease_expires <= %s", (RUNNING, now)))
    candidates = " UNION ALL ".join(
        f"(SELECT id FROM detached_calls WHERE {where} {order})" for where, _ in kinds
    )
    statement = (
        f"WITH candidates AS MATERIALIZED ({candidates}), "
        "picked AS MATERIALIZED ("
        "SELECT id FROM detached_calls WHERE id = ANY(ARRAY(SELECT id FROM candidates)) AND "
        "((status = %s AND (not_before <= %s OR (not_before <= %s AND fn_id = ANY(%s)))) "
        "OR (status = %s AND lease_expires <= %s)) "
        "ORDER BY not_before, id LIMIT %s FOR UPDATE SKIP LOCKED) "
        "UPDATE detached_calls AS d SET status = %s, lease_owner = %s, "
        "lease_expires = %s, attempts = d.attempts + 1, started_at = %s "
        f"FROM picked WHERE d.id = picked.id RETURNING {_qualified('d', QUEUE_COLUMNS)}"
    )
    params = (
        *(value for _, values in kinds for value in (*values, window)),
        QUEUED,
        due,
        now,
        hot_due,
        RUNNING,
        now,
        limit,
        RUNNING,
        owner,
        now + lease_s,
        now,
    )
    return statement, params


def _qualified(alias: str, columns: str) -> str:
    """``a, b`` -> ``d.a, d.b``: the columns of one table in a statement that joins two."""
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def _holds_nul(values: Sequence[object]) -> bool:
    """Whether a text among ``values`` holds NUL. No stored text does (every write refuses
    it, as PostgreSQL's text type must), so a lookup by one finds nothing, as on SQLite; here
    it is answered without asking, since psycopg cannot send it."""
    return any(isinstance(value, str) and "\x00" in value for value in values)


async def _one(conn: Conn, sql: str, params: Sequence[object]) -> DictRow | None:
    """The first row a lookup finds; None when none (or a key holds NUL: see _holds_nul)."""
    if _holds_nul(params):
        return None
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()


async def _by_id(conn: Conn, table: str, columns: str, row_id: str, lock: bool) -> DictRow | None:
    # FOR UPDATE: a read-modify-write holds the row until its commit (SQLite's BEGIN IMMEDIATE).
    suffix = " FOR UPDATE" if lock else ""
    return await _one(conn, f"SELECT {columns} FROM {table} WHERE id = %s{suffix}", (row_id,))


async def _get_app(conn: Conn, app_id: str, *, lock: bool = False) -> App:
    row = await _by_id(conn, "apps", APP_COLUMNS, app_id, lock)
    if row is None:
        raise NotFoundError(MSG_APP_NOT_FOUND)
    return app_from_row(row)


async def _get_fn(conn: Conn, fn_id: str, *, lock: bool = False) -> FnRecord:
    row = await _by_id(conn, "fns", FN_COLUMNS, fn_id, lock)
    if row is None:
        raise NotFoundError(MSG_FN_NOT_FOUND)
    return fn_from_row(row)


async def _get_trigger(conn: Conn, trigger_id: str, *, lock: bool = False) -> Trigger:
    row = await _by_id(conn, "triggers", TRIGGER_COLUMNS, trigger_id, lock)
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return trigger_from_row(row)


async def _get_trigger_by_source(conn: Conn, app_id: str, type_: str, source: str) -> Trigger:
    row = await _one(
        conn,
        f"SELECT {TRIGGER_COLUMNS} FROM triggers WHERE app_id = %s AND type = %s AND source = %s",
        (app_id, type_, source),
    )
    if row is None:
        raise NotFoundError(MSG_TRIGGER_NOT_FOUND)
    return trigger_from_row(row)


async def _check_source_free(conn: Conn, trigger: Trigger) -> None:
    row = await _one(
        conn,
        "SELECT id FROM triggers WHERE app_id = %s AND type = %s AND source = %s AND id != %s",
        (trigger.app_id, trigger.type, trigger.source, trigger.id),
    )
    if row is not None:
        raise ConflictError(MSG_TRIGGER_SOURCE_EXISTS)


async def _delete(conn: Conn, table: str, row_id: str, missing: str) -> None:
    if _holds_nul([row_id]):
        raise NotFoundError(missing)
    cursor = await conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))
    if cursor.rowcount == 0:
        raise NotFoundError(missing)


async def _page(
    conn: Conn,
    table: str,
    columns: str,
    from_row: Callable[[DictRow], T],
    where: list[tuple[str, object]],
    cursor: str | None,
    per_page: int | None,
) -> tuple[list[T], str | None]:
    """Rows ordered by name after ``cursor``; one extra row tells whether a next page exists
    (the same rule as the SQLite store)."""
    limit = clamp_per_page(per_page)
    clauses = list(where)
    if cursor:
        clauses.append(("name > %s", decode_cursor(cursor)))
    if _holds_nul([value for _, value in clauses]):
        return [], None
    sql = f"SELECT {columns} FROM {table}"
    if clauses:
        sql += " WHERE " + " AND ".join(clause for clause, _ in clauses)
    sql += " ORDER BY name LIMIT %s"
    result = await conn.execute(sql, [value for _, value in clauses] + [limit + 1])
    rows = await result.fetchall()
    if len(rows) > limit:
        rows = rows[:limit]
        return [from_row(row) for row in rows], encode_cursor(rows[-1]["name"])
    return [from_row(row) for row in rows], None


async def _check_secrets_exist(conn: Conn, app: App, names: Sequence[str]) -> None:
    """400 naming the first of ``names`` the app has no secret by. The rows found stay
    locked ``FOR SHARE`` until the commit: a delete_secret of one of them waits for it."""
    if not names:
        return
    result = await conn.execute(
        "SELECT name FROM secrets WHERE app_id = %s AND name = ANY(%s) FOR SHARE",
        (app.id, list(names)),
    )
    found = {row["name"] for row in await result.fetchall()}
    for name in names:
        if name not in found:
            raise InvalidInputError(missing_secret_message(name, app.name))


async def _fns_naming(conn: Conn, app_id: str, name: str) -> list[str]:
    """The names of the app's fns whose fnagent.io/secrets names ``name``."""
    result = await conn.execute(
        "SELECT name, annotations FROM fns WHERE app_id = %s ORDER BY name", (app_id,)
    )
    rows = await result.fetchall()
    return [row["name"] for row in rows if stored_annotations_name(row["annotations"], name)]


# mypy checks here that PostgresStore keeps the Store protocol.
_conforms: type[Store] = PostgresStore
