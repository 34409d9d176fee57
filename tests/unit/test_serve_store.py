"""How ``fnagent serve`` picks its store from FN_DB_URL and what makes its instance
(fnagent/server/serve.py): a SQLite file is one server's own, a PostgreSQL database is shared
and each agent is its host and address."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from fnagent.config import ServerConfig
from fnagent.errors import InvalidInputError
from fnagent.server.serve import freeze_startup_heap, instance_for, make_store, store_claim
from fnagent.store import SQLiteStore
from fnagent.store.postgres import PostgresStore

PG = "postgresql://fn:secret@db.local:5432/fnagent"


def test_the_db_settings_come_from_the_environment() -> None:
    config = ServerConfig.from_env(
        {
            "FN_DB_URL": PG,
            "FN_DB_MAX_CONNECTIONS": "3",
            "FN_DB_CONNECT_TIMEOUT_MSECS": "1500",
            "FN_DB_STATEMENT_TIMEOUT_MSECS": "2s",
        }
    )
    assert (config.db_max_connections, config.db_connect_timeout_s) == (3, 1.5)
    assert config.db_statement_timeout_s == 2.0
    store = make_store(config, PG)
    assert isinstance(store, PostgresStore)
    for name in ["FN_DB_MAX_CONNECTIONS", "FN_DB_CONNECT_TIMEOUT_MSECS"]:
        with pytest.raises(InvalidInputError, match=name):
            ServerConfig.from_env({name: "0"})


def test_fn_db_sync_reaches_a_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite3://{tmp_path}/fn.db"
    default = make_store(ServerConfig.from_env({}), url)
    full = make_store(ServerConfig.from_env({"FN_DB_SYNC": "full"}), url)
    assert isinstance(default, SQLiteStore) and isinstance(full, SQLiteStore)
    assert (default.synchronous, full.synchronous) == ("normal", "full")


def test_a_sqlite_file_is_locked_and_names_the_instance_on_any_port(tmp_path: Path) -> None:
    store = make_store(ServerConfig(), f"sqlite3://{tmp_path}/fn.db")
    assert isinstance(store, SQLiteStore)
    lock, identity = store_claim(store, "127.0.0.1", 8080)
    assert lock == f"{tmp_path}/fn.db" and identity == f"{tmp_path}/fn.db"
    assert store_claim(store, "127.0.0.1", 9090) == (lock, identity)


def test_agents_sharing_postgres_are_told_apart_by_their_address() -> None:
    store = make_store(ServerConfig(), PG)
    lock, identity = store_claim(store, "127.0.0.1", 8080)
    assert lock is None  # shared by design: only the address is held
    assert "secret" not in identity and "fn@db.local:5432/fnagent" in identity
    other_port = store_claim(store, "127.0.0.1", 8081)[1]
    same_again = store_claim(make_store(ServerConfig(), PG), "127.0.0.1", 8080)[1]
    assert instance_for(identity) != instance_for(other_port)
    assert instance_for(identity) == instance_for(same_again)
    other_db = store_claim(make_store(ServerConfig(), PG + "2"), "127.0.0.1", 8080)[1]
    assert instance_for(identity) != instance_for(other_db)


def test_what_start_up_made_is_left_out_of_the_collectors_scans() -> None:
    """A full collection walked every object start-up made (modules, docker-py, the app):
    a 60 ms pause of the event loop in a 24 s detached run, the 202s in flight waiting it
    out. Frozen, those objects are never scanned again."""
    assert gc.get_freeze_count() == 0
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
