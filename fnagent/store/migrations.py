"""Versioned schema steps, the shape every SQL backend of the store shares.

Each backend keeps its own append-only ``MIGRATIONS`` list (``fnagent/store/sqlite.py``,
``fnagent/store/postgres.py``): the same numbers and descriptions in both, each step written in
that backend's SQL. A new table is one new ``Migration`` at the end of each list, its columns
in ``fnagent/store/rows.py`` when records of it are written by both. Never edit a released
step.
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
