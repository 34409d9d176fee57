from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's own PostgreSQL (tests/postgres.py), stopped and removed at the end."""
    server = PostgresServer()
    try:
        server.init().start()
    except RuntimeError as exc:
        server.remove()
        pytest.fail(f"cannot start a PostgreSQL for the tests: {exc}")
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL."""
    return postgres.create_database()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop and start."""
    server = PostgresServer()
    try:
        yield server.init().start()
    finally:
        server.remove()
