"""Per-fn concurrency (``fnagent.io/max-concurrency``): bookkeeping only, no I/O.

A fn with the annotation has at most that many containers at once, counted across its
versions, from the moment a launch is decided until the container is removed (starting, busy,
idle, frozen, draining after an update, doomed or evicted and being removed). A container
serves one call at a time, so the limit is also how many of the fn's calls run at once. Calls
beyond it wait in their version's queue, which hands containers to the oldest waiter first;
one still waiting at its deadline that no launch was headed for answers 429 with Retry-After
(``TooManyRequestsError``).
"""

from __future__ import annotations

import math

from fnagent.models import Fn

# Retry-After for a call the limit turned away: the queue's expected wait, within these.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60
# A call time assumed before one was seen.
DEFAULT_CALL_TIME_S = 1.0


class Concurrency:
    """fn id -> how many of its containers exist (launch decided, not yet removed)."""

    def __init__(self) -> None:
        self._existing: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Concurrency fns={len(self._existing)} containers={sum(self._existing.values())}>"

    def existing(self, fn_id: str) -> int:
        return self._existing.get(fn_id, 0)

    def room(self, fn: Fn) -> int | None:
        """How many more containers ``fn`` may have now; None when it has no limit. The limit
        is ``fn``'s own (the version asking), applied to the containers of every version."""
        limit = fn.max_concurrency
        if limit is None:
            return None
        return max(0, limit - self.existing(fn.id))

    def added(self, fn_id: str) -> None:
        """A launch of ``fn_id`` was decided."""
        self._existing[fn_id] = self.existing(fn_id) + 1

    def removed(self, fn_id: str) -> None:
        """A container of ``fn_id`` is gone (removed, or its launch ended)."""
        left = self.existing(fn_id) - 1
        if left > 0:
            self._existing[fn_id] = left
        else:
            self._existing.pop(fn_id, None)


def capped(wanted: int, room: int | None) -> int:
    """Launches to start of ``wanted``, within ``room`` (None: no limit)."""
    return wanted if room is None else min(wanted, room)


def limit_blocks(*, position: int, starting: int, room: int | None) -> bool:
    """Whether a waiter that gave up at ``position`` in its queue (0 = oldest) was held back by
    the limit: the fn is at its limit and none of the ``starting`` launches was headed for it
    (a queue serves its waiters in order, so launches under way serve the oldest first). A
    waiter whose own launch was slow, or whose fn had room, timed out for another reason."""
    return room == 0 and position >= starting


def retry_after_s(*, call_time_s: float | None, waiters: int, limit: int) -> int:
    """Seconds a call the limit turned away should wait before trying again: the time the
    ``waiters`` still queued (and the call itself) take on ``limit`` containers, within
    MIN_RETRY_AFTER_S and MAX_RETRY_AFTER_S."""
    call = DEFAULT_CALL_TIME_S if call_time_s is None else call_time_s
    wait = math.ceil(call * (waiters + 1) / max(limit, 1))
    return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, wait))
