"""One path for every change (fnagent/server/sync.py): a change told by another agent does
what the same change made here does; the periodic re-read catches a change whose telling was
lost; and a store that fails the re-read leaves the cached definitions in place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from fnagent.errors import StoreUnavailableError
from fnagent.server.invoke import fn_by_id, fn_by_trigger
from fnagent.server.state import ServerState
from fnagent.server.sync import apply_changes, follow, resync
from fnagent.store import FnRecord, SQLiteStore
from fnagent.store.changes import Change
from tests.apitest import StubAgent, make_state

pytestmark = pytest.mark.anyio


class FailingStore:
    """A store whose reads fail as a database that went away does, once ``down``."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:
            raise StoreUnavailableError("the database is unavailable (test): down")
        return getattr(self.store, name)


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:") as store:
        yield store


async def running_fn(store: SQLiteStore, state: ServerState) -> FnRecord:
    """A fn the agent runs (as after a call), its definition cached."""
    app = await store.create_app({"name": "app"})
    record = await store.create_fn({"app_id": app.id, "name": "fn", "image": "img"})
    agent = state.agent
    assert isinstance(agent, StubAgent)
    agent.running[record.id] = app.id
    await fn_by_id(state, record.id)
    assert f"fn:{record.id}" in state.cache
    return record


def stub(state: ServerState) -> StubAgent:
    assert isinstance(state.agent, StubAgent)
    return state.agent


async def test_a_change_told_by_another_agent_updates_and_deletes_as_a_local_one(
    store: SQLiteStore,
) -> None:
    state = make_state(store)
    record = await running_fn(store, state)
    await store.update_fn(record.id, {"config": {"K": "new"}})  # through another agent
    await apply_changes(state, [Change("fns", "update", record.id, record.app_id)])
    assert [fn.config for fn in stub(state).updated] == [{"K": "new"}]
    assert state.cache == {}
    assert (await fn_by_id(state, record.id)).config == {"K": "new"}

    # The app's config: each fn of the app the agent runs rolls forward.
    await store.update_app(record.app_id, {"config": {"A": "1"}})
    await apply_changes(state, [Change("apps", "update", record.app_id, record.app_id)])
    assert stub(state).updated[-1].app_config == {"A": "1"}

    # A fn the agent does not run is not read: the dropped cache is enough.
    other = await store.create_fn({"app_id": record.app_id, "name": "other", "image": "img"})
    await apply_changes(state, [Change("fns", "update", other.id, other.app_id)])
    assert [fn.id for fn in stub(state).updated] == [record.id, record.id]

    await store.delete_app(record.app_id)
    await apply_changes(state, [Change("apps", "delete", record.app_id, record.app_id)])
    assert stub(state).forgotten == [record.id]


async def test_the_resync_catches_a_lost_change_and_keeps_the_cache_while_the_store_fails(
    store: SQLiteStore,
) -> None:
    failing = FailingStore(store)
    state = make_state(failing)
    record = await running_fn(store, state)
    await store.update_fn(record.id, {"config": {"K": "new"}})  # told to nobody
    cached = state.cache[f"fn:{record.id}"]

    failing.down = True
    assert await resync(state) is False
    assert state.cache == {f"fn:{record.id}": cached}  # invokes keep being served
    assert stub(state).updated == []

    failing.down = False
    assert await resync(state) is True
    assert [fn.config for fn in stub(state).updated] == [{"K": "new"}]
    # The cache holds the new definition (kept, not dropped: the next outage serves it).
    assert state.cache[f"fn:{record.id}"].config == {"K": "new"}

    await store.delete_fn(record.id)  # told to nobody either
    assert await resync(state) is True
    assert stub(state).forgotten == [record.id]
    assert state.cache == {}


async def test_the_resync_refreshes_cached_triggers_and_yields_to_a_change(
    store: SQLiteStore,
) -> None:
    state = make_state(store)
    record = await running_fn(store, state)
    trigger = await store.create_trigger(
        {"app_id": record.app_id, "fn_id": record.id, "name": "t", "type": "http", "source": "/a"}
    )
    await fn_by_trigger(state, "app", "/a")
    await store.update_trigger(trigger.id, {"source": "/b"})  # told to nobody
    assert await resync(state) is True
    assert set(state.cache) == {f"fn:{record.id}"}  # /a routes nowhere now

    # A change applied while the resync reads wins: the resync applies nothing.
    failing = PausedStore(store)
    state.store = failing
    async with anyio.create_task_group() as tg:
        done: list[bool] = []
        tg.start_soon(lambda: _append(done, resync(state)))
        await failing.paused.wait()
        await apply_changes(state, [Change("fns", "update", record.id, record.app_id)])
        failing.resume.set()
    assert done == [False]
    assert len(stub(state).updated) == 2  # the resync's first run, then the change's


async def _append(done: list[bool], ran: Awaitable[bool]) -> None:
    done.append(await ran)


class PausedStore:
    """A store whose first ``get_fn`` waits for ``resume`` after reading."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.paused = anyio.Event()
        self.resume = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get_fn(self, fn_id: str) -> FnRecord:
        record = await self.store.get_fn(fn_id)
        if not self.paused.is_set():
            self.paused.set()
            await self.resume.wait()
        return record


class Feed:
    """A change feed that starts listening, tells one change and then stays quiet."""

    def __init__(self, change: Change) -> None:
        self.change = change

    async def follow_changes(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_listening: Callable[[], Awaitable[None]],
    ) -> None:
        await on_listening()
        await on_change(self.change)
        await anyio.sleep_forever()


async def test_follow_applies_what_the_feed_tells_and_resyncs(store: SQLiteStore) -> None:
    state = make_state(store)
    record = await running_fn(store, state)
    await store.update_fn(record.id, {"config": {"K": "new"}})
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: follow(state, Feed(Change("fns", "delete", record.id, "")), resync_s=0.01)
        )
        with anyio.fail_after(10):
            while not stub(state).forgotten or len(stub(state).updated) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    # Listening started: everything read again (the update); then the delete told.
    assert stub(state).updated[0].config == {"K": "new"}
    assert stub(state).forgotten[0] == record.id
