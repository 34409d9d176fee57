"""What changed in the registry: one ``Change`` per row of apps, fns, triggers or secrets
created, updated or deleted.

A server applies a change the same way whichever agent made it (fnagent/server/sync.py): its
own writes as they commit, another agent's as the shared store tells of them. The PostgreSQL
store tells of every committed change on the ``CHANNEL`` notification channel, from a trigger on
each of the four tables (so a cascade, an app's fns deleted with it, is told too), in the
payload ``{"table": ..., "op": ..., "id": ..., "app_id": ...}``, and of every detached call
queued (``QUEUE_TABLE``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

CHANNEL = "fnagent_changes"
"""The PostgreSQL notification channel every agent listens on."""

Table = Literal["apps", "fns", "triggers", "secrets", "detached_calls"]
Op = Literal["insert", "update", "delete"]
TABLES: tuple[Table, ...] = ("apps", "fns", "triggers", "secrets")
"""The registry's tables: every change of their rows is told."""
QUEUE_TABLE: Table = "detached_calls"
"""A detached call queued is told too (``insert``; ``id`` the call's),
so an agent with the fn hot can take it at once."""
OPS: tuple[Op, ...] = ("insert", "update", "delete")


@dataclass(frozen=True)
class Change:
    """One row changed: ``id`` is the row's id (a secret's: its name), ``app_id`` the app it
    belongs to (an app's: its own id)."""

    table: Table
    op: Op
    id: str
    app_id: str

    def payload(self) -> str:
        return json.dumps(
            {"table": self.table, "op": self.op, "id": self.id, "app_id": self.app_id},
            separators=(",", ":"),
        )


def parse_change(payload: str) -> Change | None:
    """The change a notification's payload tells of; None for one this fnagent does not know
    (a newer agent's, or garbage: the periodic re-read covers whatever it meant)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    table, op = document.get("table"), document.get("op")
    row_id, app_id = document.get("id"), document.get("app_id")
    if (
        (table in TABLES or table == QUEUE_TABLE)
        and op in OPS
        and isinstance(row_id, str)
        and isinstance(app_id, str)
    ):
        return Change(table=cast(Table, table), op=cast(Op, op), id=row_id, app_id=app_id)
    return None


class ChangeFeed(Protocol):
    """A store shared with other agents that tells of their changes (the PostgreSQL store)."""

    async def follow_changes(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_listening: Callable[[], Awaitable[None]],
    ) -> None: ...
