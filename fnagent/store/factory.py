"""``FN_DB_URL`` -> the store behind it: ``sqlite3://`` (the embedded default) or
``postgresql://`` / ``postgres://`` (several agents sharing one database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnagent.config import (
    DEFAULT_DB_CONNECT_TIMEOUT_S,
    DEFAULT_DB_MAX_CONNECTIONS,
    DEFAULT_DB_STATEMENT_TIMEOUT_S,
    DEFAULT_DB_SYNC,
)
from fnagent.store.sqlite import SQLiteStore
from fnagent.store.urls import is_postgres_url

if TYPE_CHECKING:
    from fnagent.store.postgres import PostgresStore


def store_from_url(
    url: str,
    *,
    max_connections: int = DEFAULT_DB_MAX_CONNECTIONS,
    connect_timeout_s: float = DEFAULT_DB_CONNECT_TIMEOUT_S,
    statement_timeout_s: float = DEFAULT_DB_STATEMENT_TIMEOUT_S,
    sqlite_sync: str = DEFAULT_DB_SYNC,
) -> SQLiteStore | PostgresStore:
    """A new, unopened store for ``url``; the connection settings apply to PostgreSQL only,
    ``sqlite_sync`` (FN_DB_SYNC) to SQLite only (PostgreSQL's ``synchronous_commit`` is the
    database's setting).
    InvalidInputError for another scheme or a malformed URL, with a message that never shows
    a password."""
    if not is_postgres_url(url):
        return SQLiteStore.from_url(url, synchronous=sqlite_sync)
    # Only a PostgreSQL URL loads psycopg.
    from fnagent.store import postgres

    return postgres.PostgresStore(
        url,
        max_connections=max_connections,
        connect_timeout_s=connect_timeout_s,
        statement_timeout_s=statement_timeout_s,
    )
