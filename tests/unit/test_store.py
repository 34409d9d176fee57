"""The SQLite registry (fnagent/store/sqlite.py): round trips, Fn's errors, merges, paging,
cascades, restarts, concurrency and storage failures."""

from __future__ import annotations

import functools
import itertools
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from drivers.errors import ClosedError, FnAgentError, InvalidInputError
from fnagent.store import (
    App,
    ConflictError,
    FnRecord,
    Migration,
    NotFoundError,
    SQLiteStore,
    StorageError,
    Trigger,
)
from fnagent.store import models as m
from fnagent.store.sqlite import MIGRATIONS, decode_cursor, encode_cursor

pytestmark = pytest.mark.anyio

T = TypeVar("T")


class FakeClock:
    """Moves 1 ms per reading, so every write gets a distinct, predictable timestamp."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        return datetime(2024, 1, 2, tzinfo=UTC) + timedelta(milliseconds=next(self._ticks))


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:", clock=FakeClock()) as opened:
        yield opened


async def raises(kind: type[FnAgentError], message: str, call: Awaitable[T]) -> FnAgentError:
    """Await ``call``; it must raise ``kind`` with exactly Fn's ``message``."""
    with pytest.raises(kind) as raised:
        await call
    assert raised.value.message == message
    return raised.value


async def app_fn_trigger(store: SQLiteStore, suffix: str = "") -> tuple[App, FnRecord, Trigger]:
    app = await store.create_app(f"app{suffix}")
    fn = await store.create_fn(app.id, f"fn{suffix}", "fnproject/hello")
    trigger = await store.create_trigger(app.id, fn.id, f"t{suffix}", "http", f"/t{suffix}")
    return app, fn, trigger


# --- round trips --------------------------------------------------------------------------


async def test_every_field_round_trips(store: SQLiteStore) -> None:
    app = await store.create_app(
        "myapp",
        config={"DB": "postgres://x", "EMPTY": ""},
        annotations={"k": "v", "nested": {"a": [1, 2.5, None, True]}, "n": 7},
        syslog_url="tcp://logs:514",
        shape="GENERIC_ARM",
    )
    assert (app.name, app.shape, app.syslog_url) == ("myapp", "GENERIC_ARM", "tcp://logs:514")
    assert len(app.id) == 26 and app.created_at == app.updated_at
    assert await store.get_app(app.id) == app
    assert await store.get_app_by_name("myapp") == app

    fn = await store.create_fn(
        app.id,
        "myfn",
        "registry.local:5000/team/fn:1.2",
        memory=512,
        timeout=120,
        idle_timeout=600,
        config={"FN_ONLY": "1"},
        annotations={"fnproject.io/custom": {"x": "y"}},
    )
    assert (fn.memory, fn.timeout, fn.idle_timeout) == (512, 120, 600)
    assert fn.shape == "GENERIC_ARM"  # inherited from the app, as in Fn
    assert await store.get_fn(fn.id) == fn
    defaults = await store.create_fn(app.id, "defaults", "fnproject/hello", shape="GENERIC_X86")
    assert (defaults.memory, defaults.timeout, defaults.idle_timeout) == (128, 30, 30)
    assert defaults.shape == "GENERIC_X86"

    trigger = await store.create_trigger(
        app.id, fn.id, "mytrigger", "http", "/my/path", annotations={"a": 1}
    )
    assert await store.get_trigger(trigger.id) == trigger
    assert await store.get_trigger_by_source(app.id, "http", "/my/path") == trigger
    assert trigger.to_json()["source"] == "/my/path"


async def test_find_http_trigger(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    assert await store.find_http_trigger("app", "/t") == (app, fn, trigger)
    assert await store.find_http_trigger("app", "t") == (app, fn, trigger)
    await raises(NotFoundError, "App not found", store.find_http_trigger("nope", "/t"))
    await raises(NotFoundError, "Trigger not found", store.find_http_trigger("app", "/nope"))


# --- Fn's errors ------------------------------------------------------------------------------


async def test_unique_constraints_conflict(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    other, other_fn, _ = await app_fn_trigger(store, "2")
    error = await raises(ConflictError, "App already exists", store.create_app("app"))
    assert error.status == 409
    await raises(
        ConflictError,
        "Fn with specified name already exists",
        store.create_fn(app.id, "fn", "fnproject/other"),
    )
    await store.create_fn(other.id, "fn", "fnproject/hello")  # names are per app
    await raises(
        ConflictError,
        "Trigger with the same type and source exists on this app",
        store.create_trigger(app.id, fn.id, "another", "http", "/t"),
    )
    await raises(
        ConflictError,
        "Trigger already exists",
        store.create_trigger(app.id, fn.id, "t", "http", "/elsewhere"),
    )
    # Another app may use the same trigger name and source.
    await store.create_trigger(other.id, other_fn.id, "t", "http", "/t")
    await raises(
        ConflictError,
        "Trigger with the same type and source exists on this app",
        store.update_trigger(
            (await store.create_trigger(app.id, fn.id, "u", "http", "/u")).id, {"source": "/t"}
        ),
    )
    renamed = await store.create_trigger(app.id, fn.id, "v", "http", "/v")
    await raises(
        ConflictError, "Trigger already exists", store.update_trigger(renamed.id, {"name": "t"})
    )
    assert await store.get_trigger(trigger.id) == trigger


async def test_missing_things_are_404_with_fns_messages(store: SQLiteStore) -> None:
    app, fn, _ = await app_fn_trigger(store)
    for call in [
        store.get_app("x"),
        store.get_app_by_name("x"),
        store.update_app("x", {}),
        store.delete_app("x"),
        store.create_fn("x", "f", "fnproject/hello"),
        store.create_trigger("x", fn.id, "t2", "http", "/t2"),
    ]:
        error = await raises(NotFoundError, "App not found", call)
        assert error.status == 404
    for call in [
        store.get_fn("x"),
        store.update_fn("x", {}),
        store.delete_fn("x"),
        store.create_trigger(app.id, "x", "t2", "http", "/t2"),
    ]:
        await raises(NotFoundError, "Fn not found", call)
    for call in [
        store.get_trigger("x"),
        store.update_trigger("x", {}),
        store.delete_trigger("x"),
        store.get_trigger_by_source(app.id, "http", "/nope"),
    ]:
        await raises(NotFoundError, "Trigger not found", call)


async def test_a_trigger_must_point_at_a_fn_of_its_app(store: SQLiteStore) -> None:
    app, _, _ = await app_fn_trigger(store)
    _, other_fn, _ = await app_fn_trigger(store, "2")
    await raises(
        InvalidInputError,
        "Invalid Fn ID - not owned by specified app",
        store.create_trigger(app.id, other_fn.id, "x", "http", "/x"),
    )


async def test_validation_comes_first_with_fns_messages(store: SQLiteStore) -> None:
    # Fn validates the body before it looks the app up.
    cases: list[tuple[Awaitable[Any], str]] = [
        (store.create_app(""), "Missing Name"),
        (store.create_app("a" * 256), "App name must be 255 characters or less"),
        (store.create_app("in valid"), "Invalid app name"),
        (store.create_app("a", annotations={"k": ""}), m.MSG_ANNOTATION_VALUE),
        (store.create_fn("", "f", "fnproject/hello"), "Missing AppID on Fn"),
        (store.create_fn("nope", "f", ""), "Missing image on Fn"),
        (store.create_fn("nope", " ", "fnproject/hello"), "name must be a valid string"),
        (store.create_fn("nope", "f", "i", timeout=3601), m.MSG_FN_INVALID_TIMEOUT),
        (
            store.create_trigger("nope", "f", "t", "http", "src"),
            "Missing Trigger Source Prefix '/'",
        ),
        (store.create_trigger("nope", "f", "t", "cron", "/src"), "Trigger Type Not Supported"),
        (store.create_trigger("nope", "f", "&&%@!#$#@$", "http", "/s"), "Invalid name for Trigger"),
    ]
    for call, message in cases:
        error = await raises(InvalidInputError, message, call)
        assert error.status == 400
    await raises(InvalidInputError, "Missing AppID on Fn", store.list_fns(app_id=""))
    await raises(InvalidInputError, "Missing App ID on Trigger", store.list_triggers(app_id=""))


# --- updates ----------------------------------------------------------------------------------


async def test_app_update_merges(store: SQLiteStore) -> None:
    app = await store.create_app("app", config={"A": "1", "B": "2"}, annotations={"x": 1, "y": 2})
    same = await store.update_app(app.id, {"name": "app", "config": {}, "annotations": None})
    assert same == app  # nothing changed: updated_at too
    updated = await store.update_app(
        app.id,
        {
            "config": {"A": "", "C": "3"},
            "annotations": {"x": "", "y": None, "z": [1]},
            "syslog_url": "udp://l:514",
        },
    )
    assert updated.config == {"B": "2", "C": "3"}
    assert updated.annotations == {"z": [1]}
    assert updated.syslog_url == "udp://l:514"
    assert updated.updated_at > app.updated_at and updated.created_at == app.created_at
    assert await store.get_app(app.id) == updated
    assert (await store.update_app(app.id, {"syslog_url": ""})).syslog_url is None
    error = await raises(
        ConflictError,
        "Could not update - name is immutable",
        store.update_app(app.id, {"name": "b"}),
    )
    assert error.status == 409
    await raises(
        InvalidInputError,
        "App ID in path does not match ID in body",
        store.update_app(app.id, {"id": "other"}),
    )


async def test_fn_update_merges(store: SQLiteStore) -> None:
    app = await store.create_app("app")
    fn = await store.create_fn(app.id, "fn", "fnproject/hello", memory=256, config={"A": "1"})
    zeros = {"image": "", "memory": 0, "timeout": 0, "idle_timeout": 0, "name": "fn"}
    assert await store.update_fn(fn.id, {**zeros, "app_id": app.id}) == fn
    updated = await store.update_fn(
        fn.id, {"timeout": 10, "config": {"A": "", "B": "b"}, "annotations": {"k": "v"}}
    )
    assert (updated.memory, updated.timeout, updated.config) == (256, 10, {"B": "b"})
    assert updated.annotations == {"k": "v"} and updated.updated_at > fn.updated_at
    assert await store.get_fn(fn.id) == updated
    for body in [{"name": "other"}, {"app_id": "other"}]:
        await raises(
            InvalidInputError, "Fn names and IDs cannot be modified", store.update_fn(fn.id, body)
        )
    await raises(
        InvalidInputError, m.MSG_FN_INVALID_MEMORY, store.update_fn(fn.id, {"memory": 9000})
    )
    assert await store.get_fn(fn.id) == updated  # a refused update stores nothing


async def test_trigger_update_merges(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    assert await store.update_trigger(trigger.id, {"name": "t", "type": "http"}) == trigger
    updated = await store.update_trigger(
        trigger.id, {"name": "renamed", "source": "/new", "annotations": {"a": 1}}
    )
    assert (updated.name, updated.source, updated.annotations) == ("renamed", "/new", {"a": 1})
    assert await store.find_http_trigger("app", "/new") == (app, fn, updated)
    await raises(NotFoundError, "Trigger not found", store.find_http_trigger("app", "/t"))
    await raises(
        InvalidInputError,
        "Trigger app_id, fn_id and type cannot be modified",
        store.update_trigger(trigger.id, {"fn_id": "another"}),
    )


# --- lists ------------------------------------------------------------------------------------


async def collect(
    page: Callable[[str | None], Awaitable[tuple[list[Any], str | None]]],
) -> tuple[list[Any], int]:
    """Every item, following cursors; and how many pages that took."""
    items: list[Any] = []
    cursor: str | None = None
    for pages in itertools.count(1):
        batch, cursor = await page(cursor)
        items.extend(batch)
        if cursor is None:
            return items, pages
    raise AssertionError("unreachable")


def list_apps_page(
    store: SQLiteStore, per_page: int, cursor: str | None
) -> Awaitable[tuple[list[App], str | None]]:
    return store.list_apps(cursor=cursor, per_page=per_page)


async def test_apps_page_by_name_with_cursors(store: SQLiteStore) -> None:
    names = [f"app-{i:03d}" for i in range(250)]
    random.Random(7).shuffle(names)
    for name in names:
        await store.create_app(name)
    for per_page, pages in [(100, 3), (7, 36), (250, 3), (1000, 3), (0, 9), (-1, 9), (30, 9)]:
        items, used = await collect(functools.partial(list_apps_page, store, per_page))
        assert [a.name for a in items] == sorted(names), per_page  # ordered, none lost, no dup
        assert used == pages, per_page
    first, cursor = await store.list_apps()
    assert len(first) == 30 and cursor == encode_cursor("app-029")
    assert decode_cursor(cursor) == "app-029"
    only, cursor = await store.list_apps(name="app-123")
    assert [a.name for a in only] == ["app-123"] and cursor is None
    assert await store.list_apps(cursor=encode_cursor("app-249")) == ([], None)
    await raises(InvalidInputError, "invalid cursor '%%%'", store.list_apps(cursor="%%%"))


async def test_fns_and_triggers_page_within_their_app(store: SQLiteStore) -> None:
    app = await store.create_app("app")
    other = await store.create_app("other")
    first = await store.create_fn(app.id, "aaa", "fnproject/hello")
    await store.create_fn(other.id, "stranger", "fnproject/hello")
    for i in range(120):
        fn = await store.create_fn(app.id, f"fn{i:03d}", "fnproject/hello")
        await store.create_trigger(app.id, fn.id, f"t{i:03d}", "http", f"/t/{i}")
    await store.create_trigger(app.id, first.id, "t-first", "http", "/first")
    fns, _ = await collect(lambda c: store.list_fns(app_id=app.id, cursor=c, per_page=50))
    assert [f.name for f in fns] == ["aaa"] + [f"fn{i:03d}" for i in range(120)]
    triggers, pages = await collect(lambda c: store.list_triggers(app_id=app.id, cursor=c))
    assert len(triggers) == 121 and pages == 5
    assert [t.name for t in triggers] == sorted(t.name for t in triggers)
    by_fn, _ = await store.list_triggers(app_id=app.id, fn_id=first.id)
    assert [t.name for t in by_fn] == ["t-first"]
    named, _ = await store.list_triggers(app_id=app.id, name="t007")
    assert [t.source for t in named] == ["/t/7"]
    assert await store.list_fns(app_id="no-such-app") == ([], None)
    assert [f.name for f in (await store.list_fns(app_id=other.id))[0]] == ["stranger"]


# --- deletes ----------------------------------------------------------------------------------


async def test_deleting_a_fn_deletes_its_triggers(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    keep = await store.create_fn(app.id, "keep", "fnproject/hello")
    kept = await store.create_trigger(app.id, keep.id, "kept", "http", "/kept")
    await store.delete_fn(fn.id)
    await raises(NotFoundError, "Fn not found", store.get_fn(fn.id))
    await raises(NotFoundError, "Trigger not found", store.get_trigger(trigger.id))
    assert await store.list_triggers(app_id=app.id) == ([kept], None)


async def test_deleting_an_app_deletes_its_fns_and_triggers(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    other = await app_fn_trigger(store, "2")
    await store.delete_app(app.id)
    await raises(NotFoundError, "App not found", store.get_app(app.id))
    await raises(NotFoundError, "Fn not found", store.get_fn(fn.id))
    await raises(NotFoundError, "Trigger not found", store.get_trigger(trigger.id))
    assert await store.list_fns(app_id=app.id) == ([], None)
    assert await store.find_http_trigger("app2", "/t2") == other
    # The name is free again.
    await store.create_app("app")


async def test_delete_trigger(store: SQLiteStore) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    await store.delete_trigger(trigger.id)
    await raises(NotFoundError, "Trigger not found", store.delete_trigger(trigger.id))
    assert await store.get_fn(fn.id) == fn


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
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrations_run_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "fn.db"
    async with SQLiteStore(path) as store:
        app = await store.create_app("app")
    version_2 = Migration(2, "apps: add owner", ("ALTER TABLE apps ADD COLUMN owner TEXT",))
    for _ in range(2):  # the second open finds version 2 and runs nothing
        async with SQLiteStore(path, migrations=(*MIGRATIONS, version_2)) as store:
            assert await store.get_app(app.id) == app
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (2,)
        assert "owner" in [row[1] for row in conn.execute("PRAGMA table_info(apps)")]
    # A file from a newer fnagent is refused rather than misread.
    with pytest.raises(StorageError, match="schema version 2, newer than this fnagent knows"):
        await SQLiteStore(path).open()
    with pytest.raises(ValueError, match="numbered 1, 2, 3"):
        SQLiteStore(path, migrations=(version_2,))


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
    app = await store.create_app("app")
    await store.open()  # idempotent
    assert await store.list_apps() == ([app], None)
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(ClosedError, match=r"used after aclose\(\)"):
        await store.create_app("app")
    with pytest.raises(ClosedError):
        await store.open()
    assert "closed" in repr(store)


# --- concurrency and failures -------------------------------------------------------------


async def test_concurrent_creates_lose_and_duplicate_nothing(store: SQLiteStore) -> None:
    outcomes: list[str] = []
    app = await store.create_app("shared")

    async def create(i: int) -> None:
        try:
            await store.create_app(f"app-{i % 25}")
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")
        await store.create_fn(app.id, f"fn-{i}", "fnproject/hello")

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(create, i)
    assert sorted(outcomes) == ["conflict"] * 25 + ["created"] * 25
    apps, _ = await store.list_apps(per_page=100)
    assert sorted(a.name for a in apps) == sorted([f"app-{i}" for i in range(25)] + ["shared"])
    fns, _ = await store.list_fns(app_id=app.id, per_page=100)
    assert sorted(f.name for f in fns) == sorted(f"fn-{i}" for i in range(50))
    assert len({f.id for f in fns}) == 50


async def test_a_full_disk_is_a_storage_error_and_keeps_committed_data(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "fn.db") as store:
        before = [await store.create_app(f"app{i}") for i in range(3)]
        conn = store._conn  # the test reaches in to make the disk "full"
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = {f"k{i}": "x" * 500 for i in range(100)}  # ~50 KB: needs new pages
        with pytest.raises(StorageError) as raised:
            await store.create_app("too-big", annotations=big)
        assert raised.value.status == 500
        assert raised.value.message.startswith("storage failure: database or disk is full")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert (await store.list_apps()) == (before, None)
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert (await store.create_app("too-big", annotations=big)).annotations == big


async def test_cancelled_requests_leave_the_store_usable(store: SQLiteStore) -> None:
    created: list[App] = []

    async def create(i: int) -> None:
        created.append(await store.create_app(f"app-{i:02d}"))
        if len(created) == 3:
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
    apps, _ = await store.list_apps(per_page=100)
    # A transaction runs to its end even when its caller is cancelled: each app is whole.
    assert {a.name for a in created} <= {a.name for a in apps} and len(apps) < 20
    for app in apps:
        assert await store.get_app(app.id) == app
    assert store._conn is not None and not store._conn.in_transaction
    await store.create_app("after")


async def test_unreadable_files_are_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="^storage failure: cannot open") as raised:
        await SQLiteStore(tmp_path).open()  # a directory
    assert isinstance(raised.value.__cause__, sqlite3.Error)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="file is not a database"):
        await SQLiteStore(garbage).open()
