"""The store conformance suite (fnagent.testing.store_conformance) run against every backend:
SQLite in memory and SQLite on a file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fnagent.store import SQLiteStore, Store
from fnagent.testing.store_conformance import CASES, Case, FakeClock

Backend = Callable[[Path], Store]

BACKENDS: dict[str, Backend] = {
    "sqlite-memory": lambda _: SQLiteStore(":memory:", clock=FakeClock()),
    "sqlite-file": lambda tmp: SQLiteStore(tmp / "fn.db", clock=FakeClock()),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with BACKENDS[request.param](tmp_path) as opened:
        yield opened


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_store_conforms(store: Store, case: Case) -> None:
    await case(store)
