"""Retention of call records: per fn, at most a count and at most an age, enforced by a
background task (the recorder runs it) that prunes the store now and then."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import anyio.abc

from fnagent.errors import FnAgentError
from fnagent.store.base import Store

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_COUNT = 1000
DEFAULT_RETENTION_S = 7 * 24 * 3600
DEFAULT_PRUNE_INTERVAL_S = 60.0
# Calls deleted per transaction: a few milliseconds of the store, which serves one transaction
# at a time (a detached call's enqueue waits for it). One transaction for a minute of calls
# at 2,000/s held the store for seconds.
DEFAULT_PRUNE_ROWS_PER_WRITE = 256


@dataclass(frozen=True, kw_only=True)
class Retention:
    """Keep each fn's ``count`` newest calls, none older than ``max_age_s``; prune every
    ``interval_s`` (and once at start), ``rows_per_write`` calls per transaction."""

    count: int = DEFAULT_RETENTION_COUNT
    max_age_s: float = DEFAULT_RETENTION_S
    interval_s: float = DEFAULT_PRUNE_INTERVAL_S
    rows_per_write: int = DEFAULT_PRUNE_ROWS_PER_WRITE


async def prune_once(store: Store, retention: Retention, now: datetime) -> int:
    """Apply ``retention`` at ``now``, in transactions of at most ``rows_per_write`` calls;
    how many calls were deleted."""
    before = now - timedelta(seconds=retention.max_age_s)
    deleted = 0
    while True:
        batch = await store.prune_calls(
            keep_per_fn=retention.count, before=before, max_rows=retention.rows_per_write
        )
        deleted += batch
        if batch < retention.rows_per_write:
            return deleted


async def prune_forever(
    store: Store,
    retention: Retention,
    now: Callable[[], datetime],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Prune at start, then every ``retention.interval_s``, until cancelled. A failed prune
    is logged and tried again next time."""
    task_status.started()
    while True:
        try:
            deleted = await prune_once(store, retention, now())
        except FnAgentError as exc:
            logger.warning("call records not pruned", extra={"error": exc.message})
        else:
            if deleted:
                logger.info("call records pruned", extra={"deleted": deleted})
        await anyio.sleep(retention.interval_s)
