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


@dataclass(frozen=True, kw_only=True)
class Retention:
    """Keep each fn's ``count`` newest calls, none older than ``max_age_s``; prune every
    ``interval_s`` (and once at start)."""

    count: int = DEFAULT_RETENTION_COUNT
    max_age_s: float = DEFAULT_RETENTION_S
    interval_s: float = DEFAULT_PRUNE_INTERVAL_S


async def prune_once(store: Store, retention: Retention, now: datetime) -> int:
    """Apply ``retention`` at ``now``; how many calls were deleted."""
    before = now - timedelta(seconds=retention.max_age_s)
    return await store.prune_calls(keep_per_fn=retention.count, before=before)


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
