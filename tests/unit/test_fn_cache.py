"""The invoke path's cache of function definitions under concurrent writes: a write committed
while a lookup reads (between its fn and app reads, or before its read's answer is used) never
leaves the old definition cached. The writes go through the real management API on a SQLite
store; the store pauses the lookup at the racy point, so every interleaving is deterministic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from fnagent.agent import CallResult
from fnagent.models import Call, Fn
from fnagent.server import invoke
from fnagent.server.app import ServerConfig, ServerState
from fnagent.store import App, FnRecord, NotFoundError, SQLiteStore, Trigger
from tests.apitest import request

pytestmark = pytest.mark.anyio


class PausingStore:
    """A store that, once armed, holds the next lookup after its last read (``get_app`` after
    ``get_fn``, or ``find_http_trigger``) until ``resume``: what it read may be stale by then,
    as when a write commits while the lookup's answer waits for the event loop."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.armed = False
        self.paused = anyio.Event()
        self.resume = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def _hold(self) -> None:
        if self.armed:
            self.armed = False
            self.paused.set()
            await self.resume.wait()

    async def get_app(self, app_id: str) -> App:
        app = await self.store.get_app(app_id)
        await self._hold()
        return app

    async def find_http_trigger(self, app_name: str, source: str) -> tuple[App, FnRecord, Trigger]:
        found = await self.store.find_http_trigger(app_name, source)
        await self._hold()
        return found


class StubAgent:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def submit(self, call: Call) -> CallResult:
        self.calls.append(call)
        return CallResult(call_id=call.id, status=200, body=b"served")

    async def update(self, fn: Fn) -> None:
        pass

    def fn_apps(self) -> dict[str, str]:
        return {}

    def forget(self, fn_id: str) -> None:
        pass


@pytest.fixture
async def state(anyio_backend: str) -> AsyncIterator[ServerState]:
    from fnagent.server.metrics import Metrics

    async with SQLiteStore(":memory:") as store:
        yield ServerState(
            config=ServerConfig(),
            store=PausingStore(store),
            agent=StubAgent(),  # type: ignore[arg-type]
            metrics=Metrics(lambda: {}),
        )


def pausing(state: ServerState) -> PausingStore:
    assert isinstance(state.store, PausingStore)
    return state.store


async def deployed(state: ServerState) -> FnRecord:
    store = pausing(state).store
    app = await store.create_app({"name": "app"})
    record: FnRecord = await store.create_fn(
        {"app_id": app.id, "name": "fn", "image": "img", "config": {"K": "old"}}
    )
    await store.create_trigger(
        {"app_id": app.id, "fn_id": record.id, "name": "t", "type": "http", "source": "/hook"}
    )
    return record


async def race(
    state: ServerState, lookup: Callable[[], Awaitable[Fn]], write: tuple[str, str, bytes]
) -> Fn | BaseException:
    """Run ``lookup``, commit ``write`` (method, path, JSON body) through the API while the
    lookup is held, then let it finish; what it answered."""
    outcome: list[Fn | BaseException] = []

    async def look() -> None:
        try:
            outcome.append(await lookup())
        except NotFoundError as exc:
            outcome.append(exc)

    pausing(state).armed = True
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            await pausing(state).paused.wait()
            method, path, body = write
            status, _, answer = await request(state, method, path, body)
            assert status in (200, 204), answer
            pausing(state).resume.set()
    return outcome[0]


async def test_a_fn_deleted_during_a_lookup_answers_404_at_once(state: ServerState) -> None:
    record = await deployed(state)
    seen = await race(
        state, lambda: invoke.fn_by_id(state, record.id), ("DELETE", f"/v2/fns/{record.id}", b"")
    )
    assert isinstance(seen, NotFoundError), "the lookup answered a fn deleted during it"
    status, _, body = await request(state, "POST", f"/invoke/{record.id}")
    assert status == 404, body
    assert state.agent.calls == []  # type: ignore[attr-defined]


async def test_a_fn_updated_during_a_lookup_serves_the_new_config(state: ServerState) -> None:
    record = await deployed(state)
    update = ("PUT", f"/v2/fns/{record.id}", b'{"config": {"K": "new"}}')
    seen = await race(state, lambda: invoke.fn_by_id(state, record.id), update)
    assert isinstance(seen, Fn) and seen.config == {"K": "new"}
    assert (await invoke.fn_by_id(state, record.id)).config == {"K": "new"}


async def test_an_app_deleted_during_a_lookup_answers_404_at_once(state: ServerState) -> None:
    record = await deployed(state)
    delete = ("DELETE", f"/v2/apps/{record.app_id}", b"")
    await race(state, lambda: invoke.fn_by_id(state, record.id), delete)
    status, _, body = await request(state, "POST", f"/invoke/{record.id}")
    assert status == 404, body


async def test_a_trigger_lookup_racing_an_update_serves_the_new_config(
    state: ServerState,
) -> None:
    record = await deployed(state)
    update = ("PUT", f"/v2/fns/{record.id}", b'{"config": {"K": "new"}}')
    seen = await race(state, lambda: invoke.fn_by_trigger(state, "app", "/hook"), update)
    assert isinstance(seen, Fn) and seen.config == {"K": "new"}
    assert (await invoke.fn_by_trigger(state, "app", "/hook")).config == {"K": "new"}


async def test_a_cache_hit_reads_nothing(state: ServerState) -> None:
    record = await deployed(state)
    await invoke.fn_by_id(state, record.id)
    pausing(state).store = None  # type: ignore[assignment]  # any read now fails
    assert (await invoke.fn_by_id(state, record.id)).id == record.id
