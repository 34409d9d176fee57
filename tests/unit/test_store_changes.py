"""The PostgreSQL store tells of every committed change to apps, fns, triggers and secrets
(fnagent/store/changes.py): a listener on another store sees each one, cascades included, and
after the database restarts it listens again by itself and says so (``on_listening``)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from fnagent.store.changes import QUEUE_TABLE, Change, parse_change
from fnagent.store.postgres import PostgresStore
from fnagent.testing.store_conformance import app_fn_trigger, queued_call
from tests.postgres import PostgresServer

pytestmark = pytest.mark.anyio


class Heard:
    """What a listener was told: changes, and how many times it (re)started listening."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.listening = 0
        self.news = anyio.Event()

    async def on_change(self, change: Change) -> None:
        self.changes.append(change)
        self.news.set()

    async def on_listening(self) -> None:
        self.listening += 1
        self.news.set()

    async def until(self, check: Callable[[], bool], timeout_s: float = 20) -> None:
        with anyio.fail_after(timeout_s):
            while not check():
                self.news = anyio.Event()
                await self.news.wait()

    def told(self) -> set[tuple[str, str, str, str]]:
        return {(c.table, c.op, c.id, c.app_id) for c in self.changes}


def test_a_payload_that_is_not_a_known_change_is_skipped() -> None:
    change = Change(table="fns", op="update", id="f1", app_id="a1")
    assert parse_change(change.payload()) == change
    for payload in (
        "",
        "[]",
        "{",
        '{"table": "calls", "op": "update", "id": "x", "app_id": "y"}',
        '{"table": "fns", "op": "truncate", "id": "x", "app_id": "y"}',
        '{"table": "fns", "op": "update", "id": 1, "app_id": "y"}',
    ):
        assert parse_change(payload) is None, payload


async def test_every_write_is_told_to_a_listener_of_another_store(postgres_url: str) -> None:
    heard = Heard()
    async with (
        PostgresStore(postgres_url) as writer,
        PostgresStore(postgres_url) as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.follow_changes, heard.on_change, heard.on_listening)
        await heard.until(lambda: heard.listening == 1)
        app = await writer.create_app({"name": "app"})
        fn = await writer.create_fn({"app_id": app.id, "name": "fn", "image": "img"})
        await writer.update_fn(fn.id, {"config": {"K": "v"}})
        trigger = await writer.create_trigger(
            {"app_id": app.id, "fn_id": fn.id, "name": "t", "type": "http", "source": "/t"}
        )
        await writer.put_secret(app.id, "token", b"sealed")
        await writer.update_app(app.id, {"config": {"A": "1"}})
        # The app's delete takes its fn, trigger and secret along: each is told.
        await writer.delete_app(app.id)
        expected = {
            ("apps", "insert", app.id, app.id),
            ("fns", "insert", fn.id, app.id),
            ("fns", "update", fn.id, app.id),
            ("triggers", "insert", trigger.id, app.id),
            ("secrets", "insert", "token", app.id),
            ("apps", "update", app.id, app.id),
            ("apps", "delete", app.id, app.id),
            ("fns", "delete", fn.id, app.id),
            ("triggers", "delete", trigger.id, app.id),
            ("secrets", "delete", "token", app.id),
        }
        await heard.until(lambda: expected <= heard.told())
        assert heard.told() == expected
        assert heard.changes[0] == Change("apps", "insert", app.id, app.id)  # in commit order
        tg.cancel_scope.cancel()


async def test_a_failed_write_is_not_told(postgres_url: str) -> None:
    heard = Heard()
    async with (
        PostgresStore(postgres_url) as writer,
        PostgresStore(postgres_url) as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.follow_changes, heard.on_change, heard.on_listening)
        await heard.until(lambda: heard.listening == 1)
        await writer.create_app({"name": "app"})
        with pytest.raises(Exception, match="App already exists"):
            await writer.create_app({"name": "app"})
        last = await writer.create_app({"name": "last"})
        await heard.until(lambda: ("apps", "insert", last.id, last.id) in heard.told())
        assert [c.table for c in heard.changes] == ["apps", "apps"]
        tg.cancel_scope.cancel()


async def test_the_listener_comes_back_after_the_database_restarts(
    own_postgres: PostgresServer,
) -> None:
    heard = Heard()
    async with (
        PostgresStore(own_postgres.url(), connect_timeout_s=2, statement_timeout_s=2) as writer,
        PostgresStore(own_postgres.url(), connect_timeout_s=2, statement_timeout_s=2) as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.follow_changes, heard.on_change, heard.on_listening)
        await heard.until(lambda: heard.listening == 1)
        await anyio.to_thread.run_sync(own_postgres.stop)
        await anyio.to_thread.run_sync(own_postgres.start)
        # Listening again: told so (what changed meanwhile must be read again), and told of
        # the changes from now on.
        await heard.until(lambda: heard.listening == 2, timeout_s=30)
        app = await writer.create_app({"name": "after"})
        await heard.until(lambda: ("apps", "insert", app.id, app.id) in heard.told())
        tg.cancel_scope.cancel()


async def test_a_queued_detached_call_is_told(postgres_url: str) -> None:
    heard = Heard()
    async with (
        PostgresStore(postgres_url) as writer,
        PostgresStore(postgres_url) as listener,
        anyio.create_task_group() as tg,
    ):
        app, fn, _ = await app_fn_trigger(writer)
        tg.start_soon(listener.follow_changes, heard.on_change, heard.on_listening)
        await heard.until(lambda: heard.listening == 1)
        await writer.enqueue_call(queued_call("c1", fn_id=fn.id, app_id=app.id))
        await heard.until(lambda: bool(heard.changes))
        assert heard.changes == [Change(QUEUE_TABLE, "insert", "c1", app.id)]
        tg.cancel_scope.cancel()
