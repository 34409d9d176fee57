"""What is PostgreSQL's own in the registry (fnagent/store/postgres.py): FN_DB_URL, migrations
under the advisory lock, and the database going away. What every backend must do is the
conformance suite's (test_store_conformance.py runs it on PostgreSQL too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest

from fnagent.errors import InvalidInputError, StorageError, StoreUnavailableError
from fnagent.store import Migration, SQLiteStore, store_from_url
from fnagent.store.postgres import MIGRATIONS, PostgresStore, lease_statement, parse_url
from fnagent.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from fnagent.store.urls import redact_url
from fnagent.testing.store_conformance import (
    app_body,
    app_fn_trigger,
    case_cancelled_calls_leave_the_store_usable,
    queued_call,
)
from tests.postgres import PASSWORD, PostgresServer

# --- FN_DB_URL ------------------------------------------------------------------------------


def test_postgres_urls_in_both_schemes_with_libpq_parameters() -> None:
    params = parse_url("postgresql://fn:secret@db.local:6543/fnagent?sslmode=disable")
    assert params == {
        "user": "fn",
        "password": "secret",
        "host": "db.local",
        "port": "6543",
        "dbname": "fnagent",
        "sslmode": "disable",
    }
    assert parse_url("postgres://fn@db/fnagent")["host"] == "db"
    store = store_from_url("postgres://fn:secret@db/fnagent")
    assert isinstance(store, PostgresStore)
    assert store.identity() == "postgresql://fn@db:5432/fnagent"
    assert "secret" not in repr(store)
    assert isinstance(store_from_url("sqlite3://:memory:"), SQLiteStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://fn:secret@db:port/fnagent", "the port must be a number from 1 to 65535"),
        ("postgresql://fn:secret@db:70000/fnagent", "the port must be a number from 1 to 65535"),
        ("postgresql://fn:secret@db:5432/", "names no database"),
        ("postgresql://fn:secret@/fnagent", "names no host"),
        ("postgresql://fn:secret@db/fnagent?bogus=1", 'invalid URI query parameter: "bogus"'),
        ("postgresql://fn:secret@[::1/fnagent", "is not a valid URL"),
    ],
)
def test_bad_postgres_urls_get_a_clear_message_without_the_password(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        store_from_url(url)
    assert message in raised.value.message
    assert "secret" not in raised.value.message
    assert "fn:***@" in raised.value.message


def test_an_unknown_scheme_lists_every_supported_form() -> None:
    with pytest.raises(InvalidInputError) as raised:
        store_from_url("mysql://fn:secret@tcp(db:3306)/fn")
    assert "sqlite3:///absolute/path.db" in raised.value.message
    assert "postgresql://user:password@host:port/database" in raised.value.message
    assert "secret" not in raised.value.message


def test_redact_url() -> None:
    assert redact_url("postgres://u:p%40ss@h:1/d?x=1") == "postgres://u:***@h:1/d?x=1"
    assert redact_url("postgres://u@h/d") == "postgres://u@h/d"
    assert redact_url("sqlite3:///var/fn.db") == "sqlite3:///var/fn.db"


# --- migrations ----------------------------------------------------------------------------


# One step past the real ones, whatever their number.
COUNTED = Migration(
    len(MIGRATIONS) + 1,
    "a step that counts its runs",
    (
        "CREATE TABLE migration_runs (n INTEGER NOT NULL)",
        "INSERT INTO migration_runs (n) VALUES (1)",
    ),
)


def schema(url: str) -> tuple[int, int]:
    """(schema version, runs of COUNTED)."""
    with psycopg.connect(url) as conn:
        version = conn.execute("SELECT version FROM schema_version").fetchall()
        runs = conn.execute("SELECT count(*) FROM migration_runs").fetchone()
    assert len(version) == 1
    assert runs is not None
    return int(version[0][0]), int(runs[0])


@pytest.mark.anyio
async def test_agents_starting_at_once_migrate_exactly_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, migrations=(*MIGRATIONS, COUNTED)) for _ in range(8)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        app = await stores[0].create_app(app_body("app"))
        for store in stores:
            assert await store.get_app(app.id) == app
    finally:
        for store in stores:
            await store.aclose()
    assert schema(postgres_url) == (COUNTED.version, 1)
    # A restart finds the schema current and runs nothing.
    async with PostgresStore(postgres_url, migrations=(*MIGRATIONS, COUNTED)):
        pass
    assert schema(postgres_url) == (COUNTED.version, 1)


@pytest.mark.anyio
async def test_a_database_from_a_newer_fnagent_is_refused(postgres_url: str) -> None:
    async with PostgresStore(postgres_url, migrations=(*MIGRATIONS, COUNTED)):
        pass
    newer = f"schema version {COUNTED.version}, newer than this fnagent knows"
    with pytest.raises(StorageError, match=newer):
        await PostgresStore(postgres_url).open()


# --- the database going away --------------------------------------------------------------


def unavailable(message: str, where: str) -> None:
    assert message.startswith("the database is unavailable"), message
    assert where in message and PASSWORD not in message


@pytest.mark.anyio
async def test_the_database_going_away_is_503_then_calls_work_again(
    own_postgres: PostgresServer,
) -> None:
    where = f"127.0.0.1:{own_postgres.port}/postgres"
    async with PostgresStore(
        own_postgres.url(), connect_timeout_s=2, statement_timeout_s=2
    ) as store:
        app, fn, _ = await app_fn_trigger(store)
        await anyio.to_thread.run_sync(own_postgres.stop)
        for call in [store.get_fn(fn.id), store.create_app(app_body("other")), store.list_apps()]:
            with pytest.raises(StoreUnavailableError) as raised:
                await call
            assert raised.value.status == 503
            unavailable(raised.value.message, where)
        await anyio.to_thread.run_sync(own_postgres.start)
        assert await store.get_fn(fn.id) == fn
        assert (await store.create_app(app_body("other"))).name == "other"
        assert [a.name for a in (await store.list_apps())[0]] == ["app", "other"]
        assert await store.get_app(app.id) == app


@pytest.mark.anyio
async def test_a_database_that_does_not_answer_fails_the_open_with_503(
    own_postgres: PostgresServer,
) -> None:
    await anyio.to_thread.run_sync(own_postgres.stop)
    store = PostgresStore(own_postgres.url(), connect_timeout_s=2)
    with pytest.raises(StoreUnavailableError) as raised:
        await store.open()
    unavailable(raised.value.message, f"127.0.0.1:{own_postgres.port}")
    assert "Connection refused" in raised.value.message
    wrong = own_postgres.url().replace(PASSWORD, "not-the-password")
    await anyio.to_thread.run_sync(own_postgres.start)
    with pytest.raises(StoreUnavailableError) as raised:
        await PostgresStore(wrong).open()
    assert "password authentication failed" in raised.value.message
    assert "not-the-password" not in raised.value.message


@pytest.mark.anyio
async def test_a_statement_past_its_timeout_is_503(postgres_url: str) -> None:
    async with PostgresStore(postgres_url, statement_timeout_s=0.3) as store:
        app = await store.create_app(app_body("app"))
        # Another session holds the app's row: the update waits for it past the timeout.
        async with await psycopg.AsyncConnection.connect(postgres_url) as holder:
            await holder.execute("SELECT id FROM apps WHERE id = %s FOR UPDATE", (app.id,))
            with pytest.raises(StoreUnavailableError, match="statement timeout"):
                await store.update_app(app.id, {"config": {"A": "1"}})
        assert (await store.update_app(app.id, {"config": {"A": "1"}})).config == {"A": "1"}


@pytest.mark.anyio
async def test_a_lease_skips_calls_another_agent_is_leasing(postgres_url: str) -> None:
    # SKIP LOCKED: a call whose row another transaction holds (another agent leasing it) is
    # passed over at once, neither waited for (past the statement timeout) nor leased twice.
    async with PostgresStore(postgres_url, statement_timeout_s=0.5) as store:
        for call_id in ("c1", "c2", "c3"):
            await store.enqueue_call(queued_call(call_id))
        async with await psycopg.AsyncConnection.connect(postgres_url) as holder:
            await holder.execute("SELECT id FROM detached_calls WHERE id = 'c1' FOR UPDATE")
            leased = await store.lease_calls(owner="a", limit=5, now=2000.0, lease_s=30)
            assert [c.id for c in leased] == ["c2", "c3"]
        [rest] = await store.lease_calls(owner="b", limit=5, now=2000.0, lease_s=30)
        assert (rest.id, rest.lease_owner) == ("c1", "b")


@pytest.mark.anyio
async def test_concurrent_enqueues_share_transactions(postgres_url: str) -> None:
    """Group commit: calls enqueued while a batch is written go together in the next
    transaction (one commit, one flush of the database's log), each returning only once its
    own is committed; without it each 202 waited for a pooled connection and its own
    flush."""
    async with PostgresStore(postgres_url) as store:
        run = store._run
        transactions = [0]

        async def counting(op: Any, *, one_statement: bool = False) -> Any:
            transactions[0] += 1
            return await run(op, one_statement=one_statement)

        store._run = counting  # type: ignore[method-assign]
        stored: list[str] = []

        async def enqueue(call_id: str) -> None:
            await store.enqueue_call(queued_call(call_id))
            with psycopg.connect(postgres_url) as conn:
                found = conn.execute("SELECT 1 FROM detached_calls WHERE id = %s", (call_id,))
                if found.fetchone():
                    stored.append(call_id)

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(enqueue, f"c{i:02}")
        store._run = run  # type: ignore[method-assign]
        assert transactions[0] <= 3  # the first alone, then the rest in one or two
        assert sorted(stored) == [f"c{i:02}" for i in range(16)]
        assert await store.count_queued() == 16


def _plan_rows(node: dict[str, Any]) -> Iterator[int]:
    yield int(node["Actual Rows"]) * int(node["Actual Loops"])
    for child in node.get("Plans", ()):
        yield from _plan_rows(child)


@pytest.mark.anyio
@pytest.mark.parametrize("hot", [(), ("fn1",)])
async def test_a_lease_reads_a_few_rows_whatever_the_queue_holds(
    postgres_url: str, hot: tuple[str, ...]
) -> None:
    """Thousands of calls queued and finished: the lease's statement reads a window of the
    runnable ones through the indexes (every plan node a few rows), where an OR of the kinds
    of runnable call fetched and sorted every queued call on each lease."""
    async with PostgresStore(postgres_url) as store:
        await store.enqueue_call(queued_call("first"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for status, prefix in (("queued", "q"), ("success", "f")):
            conn.execute(
                "INSERT INTO detached_calls (id, fn_id, app_id, is_trigger, method, url, "
                "headers, body, created_at, status, attempts, not_before) "
                "SELECT %s || g, 'fn1', 'app1', 0, 'POST', 'u', '[]', '', 1000, %s, 0, 1000 + g "
                "FROM generate_series(1, 3000) AS g",
                (prefix, status),
            )
        conn.execute("ANALYZE detached_calls")
        statement, params = lease_statement(
            owner="a", limit=8, now=9000.0, lease_s=30, hot=hot, cold_due=8999.5 if hot else None
        )
        conn.execute("BEGIN")
        try:
            [(plan,)] = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
        finally:
            conn.execute("ROLLBACK")
    rows = list(_plan_rows(plan[0]["Plan"]))
    assert plan[0]["Plan"]["Actual Rows"] == 8
    assert max(rows) <= 100, rows  # 3,001 queued ones read and sorted before


@pytest.mark.anyio
async def test_cancelled_calls_return_their_connections(postgres_url: str) -> None:
    # The cancellations themselves are the conformance suite's case; here, the server's view.
    async with PostgresStore(postgres_url, max_connections=2, connect_timeout_s=2) as store:
        await case_cancelled_calls_leave_the_store_usable(store)
        with psycopg.connect(postgres_url) as conn:
            states = conn.execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'fnagent'"
            ).fetchall()
        assert ("idle in transaction",) not in states and len(states) <= 2


def test_both_backends_list_the_same_migrations() -> None:
    """A table is added to both backends at once (fnagent/store/migrations.py): the same
    numbers and descriptions, each in its own SQL."""
    sqlite = [(m.version, m.description) for m in SQLITE_MIGRATIONS]
    postgres = [(m.version, m.description) for m in MIGRATIONS]
    assert postgres == sqlite, (
        "fnagent/store/postgres.py's MIGRATIONS must match fnagent/store/sqlite.py's: "
        "add each step to both"
    )
