"""The store conformance suite (fnagent.testing.store_conformance) run against every backend:
SQLite in memory, SQLite on a file, and PostgreSQL (the session's own server,
tests/postgres.py); the cases for several stores on one database run where a database can be
shared."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from fnagent.store import SQLiteStore, Store
from fnagent.store.postgres import PostgresStore
from fnagent.testing.store_conformance import CASES, SHARED_CASES, Case, FakeClock, SharedCase

MakeStore = Callable[[], Store]
SHARED_BACKENDS = ["sqlite-file", "postgres"]


@pytest.fixture(params=["sqlite-memory", *SHARED_BACKENDS])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A new store on the backend's one database (for sqlite-memory: a new database)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore(url, clock=FakeClock())
    if request.param == "sqlite-file":
        return lambda: SQLiteStore(tmp_path / "fn.db", clock=FakeClock())
    return lambda: SQLiteStore(":memory:", clock=FakeClock())


@pytest.fixture
async def store(make_store: MakeStore) -> AsyncIterator[Store]:
    async with make_store() as opened:
        yield opened


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_store_conforms(store: Store, case: Case) -> None:
    await case(store)


@pytest.mark.anyio
@pytest.mark.parametrize("make_store", SHARED_BACKENDS, indirect=True)
@pytest.mark.parametrize("case", SHARED_CASES, ids=lambda case: case.__name__)
async def test_stores_sharing_a_database_conform(make_store: MakeStore, case: SharedCase) -> None:
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(make_store()) for _ in range(4)]
        await case(stores)
