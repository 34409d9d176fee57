"""A call's record from what the server and the agent know of it: the status table, the start
kinds in the record's words, and the timestamps and timings.

Statuses follow Fn v1's calls: ``success`` when the platform delivered the function's answer,
whatever HTTP status the function chose (a 404 or 500 of the function's own, e.g. through
``Fn-Http-Status``, is still a success of the call); ``timeout`` when the caller got 504 (the
call's timeout passed, or the container did not start in time); ``error`` for every other
failure the caller got an error answer for (the container failed, crashed, answered out of
contract, or the host was too busy); ``cancelled`` when the caller went away first.
``queued`` and ``running`` are the states of a detached call before it ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fnagent.agent import CallResult
from fnagent.models import Call
from fnagent.store.calls import (
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SUCCESS,
    STATUS_TIMEOUT,
    CallRecord,
)

START_KINDS = {"cold": "cold", "warm": "hot", "thawed": "thawed"}
"""The agent's word for how a call found its container -> the record's."""
CANCELLED_MESSAGE = "the caller went away before the call ended"


def start_kind(agent_start: str | None) -> str | None:
    """The record's start kind (cold, thawed, hot) for the agent's (cold, thawed, warm)."""
    return START_KINDS.get(agent_start) if agent_start is not None else None


def call_status(result: CallResult | None) -> str:
    """The record's status for what the caller got; None: the caller went away."""
    if result is None:
        return STATUS_CANCELLED
    if result.error is None:
        return STATUS_SUCCESS
    if result.status == 504:
        return STATUS_TIMEOUT
    return STATUS_ERROR


def _ms(seconds: float) -> float:
    # Not rounded here, on the call's path: the record's JSON rounds (CallRecord.to_json).
    return seconds * 1000


def pending_record(
    call: Call,
    *,
    created_at: datetime,
    running_since: datetime | None = None,
    detached: bool,
    attempts: int,
) -> CallRecord:
    """A call that has not ended: ``queued``, or ``running`` since ``running_since``."""
    return CallRecord(
        id=call.id,
        fn_id=call.fn.id,
        app_id=call.fn.app_id,
        status=STATUS_QUEUED if running_since is None else STATUS_RUNNING,
        created_at=created_at,
        started_at=running_since,
        detached=detached,
        attempts=attempts,
    )


def finished_record(
    call: Call,
    result: CallResult | None,
    *,
    created_at: datetime,
    completed_at: datetime,
    detached: bool,
    attempts: int,
) -> CallRecord:
    """An ended call. ``result`` is the agent's (None when the caller went away first:
    ``cancelled``, with no timings). ``started_at`` is when the call reached its container."""
    if result is None:
        return CallRecord(
            id=call.id,
            fn_id=call.fn.id,
            app_id=call.fn.app_id,
            status=STATUS_CANCELLED,
            created_at=created_at,
            completed_at=completed_at,
            error=CANCELLED_MESSAGE,
            detached=detached,
            attempts=attempts,
        )
    reached = result.start is not None
    started_at = completed_at - timedelta(seconds=result.exec_s) if reached else None
    return CallRecord(
        id=call.id,
        fn_id=call.fn.id,
        app_id=call.fn.app_id,
        status=call_status(result),
        created_at=created_at,
        started_at=started_at,
        completed_at=completed_at,
        http_status=result.status,
        error=result.error.message if result.error is not None else None,
        start=start_kind(result.start),
        detached=detached,
        attempts=attempts,
        queued_ms=_ms(result.queued_s),
        start_ms=_ms(result.start_s) if reached else None,
        exec_ms=_ms(result.exec_s) if reached else None,
    )
