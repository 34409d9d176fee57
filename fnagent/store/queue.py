"""Detached calls as the store keeps them: the durable queue behind ``Fn-Invoke-Type: detached``.

A row's life (every transition is one store transaction):

    queued --lease--> running --finish--> (deleted)
      ^                  |
      +----requeue-------+   (a retry: not before a later time)
      +----lease expired / released by a restarted owner

A lease names its owner (a server's instance id) and an expiry; a running call whose lease
expired is runnable again, so a call is run at least once, and ``attempts`` counts how often
it was leased. A finished call leaves the queue: its outcome is its call record's
(fnagent/store/calls.py), which retention bounds; a row kept would keep the request's body
for as long as the store lives.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

QUEUED = "queued"
RUNNING = "running"


@dataclass(frozen=True, kw_only=True)
class QueuedCall:
    """One detached call: the request as the function will get it, and where it stands.

    Times are Unix seconds (floats), passed in by the caller so that tests control them."""

    id: str
    fn_id: str
    app_id: str
    trigger: bool
    """Came through an HTTP trigger (the gateway protocol applies when it runs)."""
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    callback_url: str | None = None
    created_at: float
    status: str = QUEUED
    attempts: int = 0
    not_before: float = 0.0
    lease_owner: str | None = None
    lease_expires: float | None = None
    started_at: float | None = None
    last_error: str | None = None
    """Why the last attempt was retried."""


def runnable_when(
    now: float, hot: Collection[str], cold_due: float | None
) -> tuple[float, list[str]]:
    """A lease's bounds (``Store.lease_calls``): the ``not_before`` by which any queued call
    is runnable, and the fns whose calls are runnable by ``now`` (none when every call is)."""
    if cold_due is None or cold_due >= now:
        return now, []
    return cold_due, sorted(hot)
