"""Versioned schema steps, the shape every SQL backend of the store shares.

Each backend keeps its own append-only ``MIGRATIONS`` list (``fnagent/store/sqlite.py``,
``fnagent/store/postgres.py``): the same numbers and descriptions in both (a unit test checks),
each step written in that backend's SQL. Never edit a released step.

Adding a table (say, call records) to both backends:

1. One ``Migration(N, "calls", ...)`` at the end of each list. PostgreSQL spellings: ``BYTEA``
   for ``BLOB``, ``BIGINT`` for counters past 2**31, ``GENERATED ALWAYS AS IDENTITY`` for
   ``AUTOINCREMENT``, ``COLLATE "C"`` on a text column ordered for cursors (SQLite's byte
   order), and named constraints (``CONSTRAINT calls_..._unique UNIQUE (...)``).
2. Its columns, record -> values and row -> record in ``fnagent/store/rows.py`` (timestamps
   and JSON as text, the same in both), so each backend writes one SQL line per statement.
3. The methods in ``fnagent/store/base.py`` (the protocol), their cases in
   ``fnagent/testing/store_conformance.py`` (they then run on both), and each backend's
   methods: ``?`` placeholders for sqlite3, ``%s`` for psycopg; on PostgreSQL, a constraint
   whose violation the caller sees (409, 404) goes in ``postgres._CONSTRAINT_ERRORS``, and a
   call of one statement passes ``one_statement=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One schema step: its statements run in one transaction with the version bump."""

    version: int
    description: str
    statements: tuple[str, ...]


def latest_version(migrations: Sequence[Migration]) -> int:
    """The version the list ends at; ValueError unless numbered 1, 2, 3, ... in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ... in order; got {versions}")
    return len(versions)
