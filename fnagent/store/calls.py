"""Call records as the store keeps them: one per call, upserted by call id as the call moves
from queued to running to its outcome, and the call's log beside it.

The rules every backend shares live here: the statuses and start kinds a record may carry, the
JSON a record is served as, and the parsing of the list filters (``CallFilter``), so that every
backend answers the same 400 messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from fnagent.errors import InvalidInputError
from fnagent.store.models import format_timestamp

STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_SUCCESS = "success"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_CANCELLED = "cancelled"
CALL_STATUSES = (
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SUCCESS,
    STATUS_ERROR,
    STATUS_TIMEOUT,
    STATUS_CANCELLED,
)
START_KINDS = ("cold", "thawed", "hot")

MSG_CALL_NOT_FOUND = "Call not found"  # 404
MSG_CALL_LOG_NOT_FOUND = "Call log not found"  # 404
# Unix seconds from 0 to the end of year 9999: what a datetime can hold.
MAX_UNIX_S = 253402300799


# Not frozen: a record is made for every call, and a frozen dataclass sets each of its
# fields through object.__setattr__ (several times the cost of the rest of the recording on
# the call's path). Nothing changes a record once made: a call's next state is a new one.
@dataclass(kw_only=True)
class CallRecord:
    """One call: Fn v1's call fields plus how its container was found and where time went.

    ``status`` is one of CALL_STATUSES; ``start`` one of START_KINDS (None until the call has a
    container); ``http_status`` and ``error`` are what the caller got (None while the call is
    queued or running); timings are milliseconds, None when the call never reached that step.
    """

    id: str
    fn_id: str
    app_id: str
    status: str
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    http_status: int | None = None
    error: str | None = None
    start: str | None = None
    detached: bool = False
    attempts: int = 1
    queued_ms: float | None = None
    start_ms: float | None = None
    exec_ms: float | None = None

    def __post_init__(self) -> None:
        if self.status not in CALL_STATUSES:
            raise ValueError(f"call status {self.status!r} is not one of {CALL_STATUSES}")
        if self.start is not None and self.start not in START_KINDS:
            raise ValueError(f"call start {self.start!r} is not one of {START_KINDS}")

    def to_json(self) -> dict[str, object]:
        """The record as the calls routes serve it: every field present, null when unknown."""
        return {
            "id": self.id,
            "fn_id": self.fn_id,
            "app_id": self.app_id,
            "status": self.status,
            "created_at": format_timestamp(self.created_at),
            "started_at": _stamp(self.started_at),
            "completed_at": _stamp(self.completed_at),
            "http_status": self.http_status,
            "error": self.error,
            "start": self.start,
            "detached": self.detached,
            "attempts": self.attempts,
            "timings": {
                "queued_ms": _ms(self.queued_ms),
                "start_ms": _ms(self.start_ms),
                "exec_ms": _ms(self.exec_ms),
            },
        }


def _ms(value: float | None) -> float | None:
    """Milliseconds to the microsecond."""
    return round(value, 3) if value is not None else None


def _stamp(when: datetime | None) -> str | None:
    return format_timestamp(when) if when is not None else None


@dataclass(frozen=True, kw_only=True)
class CallFilter:
    """Which calls of a fn a list returns: one status, and ``created_at`` within
    [from_time, to_time] (either end open when None)."""

    status: str | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CallFilter:
        """``status``, ``from_time`` and ``to_time`` (Unix seconds, Fn v1's names) from a
        query; InvalidInputError (400) naming the parameter for a bad value."""
        status = query.get("status") or None
        if status is not None and status not in CALL_STATUSES:
            raise InvalidInputError(
                f"invalid status {status!r}: use one of {', '.join(CALL_STATUSES)}"
            )
        return cls(
            status=status,
            from_time=_unix_time(query, "from_time"),
            to_time=_unix_time(query, "to_time"),
        )


def _unix_time(query: Mapping[str, str], name: str) -> datetime | None:
    text = query.get(name, "")
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_UNIX_S:
        raise InvalidInputError(
            f"invalid {name} {text[:40]!r}: must be Unix seconds, a whole number from 0 to "
            f"{MAX_UNIX_S}"
        )
    return datetime.fromtimestamp(int(text), UTC)
