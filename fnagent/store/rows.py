"""How records become table rows and back, the same for every SQL backend of the store.

Both backends keep the same columns with the same representations, so a record read back from
either equals the one written and a new table is written once here for both:

- timestamps are text, ``%Y-%m-%dT%H:%M:%S.%fZ`` in UTC (microseconds, so a record read back
  equals the one written; fixed width, so text order is time order), except the detached
  queue's, which are Unix seconds as the dispatcher passes them (8-byte floats in both);
- ``config`` and ``annotations`` are JSON text exactly as encoded here (PostgreSQL's ``jsonb``
  would refuse the ``\\u0000`` a body may carry, and neither backend queries inside them).

``*_values`` give a record's values in the order of its ``*_COLUMNS``; ``*_changes`` the
columns an update may set, for ``update_statement``; ``*_from_row`` read a row that maps column
names to values (``sqlite3.Row`` or psycopg's ``dict_row``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from fnagent.store.calls import STATUS_QUEUED, STATUS_RUNNING, CallFilter, CallRecord
from fnagent.store.models import App, FnRecord, Trigger
from fnagent.store.queue import QUEUED, QueuedCall
from fnagent.store.secrets import Secret

APP_COLUMNS = "id, name, config, annotations, syslog_url, shape, created_at, updated_at"
FN_COLUMNS = (
    "id, app_id, name, image, memory, timeout, idle_timeout, config, annotations, shape, "
    "created_at, updated_at"
)
TRIGGER_COLUMNS = "id, app_id, fn_id, name, type, source, annotations, created_at, updated_at"
CALL_COLUMNS = (
    "id, fn_id, app_id, status, created_at, started_at, completed_at, http_status, error, "
    "start, detached, attempts, queued_ms, start_ms, exec_ms"
)
SECRET_COLUMNS = "app_id, name, created_at, updated_at"
# Headers are a JSON list of [name, value] pairs (order and repeats kept).
QUEUE_COLUMNS = (
    "id, fn_id, app_id, is_trigger, method, url, headers, body, callback_url, created_at, "
    "status, attempts, not_before, lease_owner, lease_expires, started_at, last_error"
)

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def ts(when: datetime) -> str:
    """``when`` as the stored text (``_TIMESTAMP_FORMAT`` in UTC, the year always four
    digits). Every call record writes three, so the text up to the second is made once per
    second (records come in time order: most share their seconds) and only the microseconds
    each time."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    second = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _MAX_SECONDS:
            _SECONDS.clear()
        year, month, day, hour, minute, sec = second
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{sec:02d}."
        _SECONDS[second] = text
    return f"{text}{when.microsecond:06d}Z"


# ts's texts by second: a cache that is emptied when full.
_SECONDS: dict[tuple[int, ...], str] = {}
_MAX_SECONDS = 4096


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def app_values(app: App) -> tuple[Any, ...]:
    return (
        app.id,
        app.name,
        dumps(app.config),
        dumps(app.annotations),
        app.syslog_url,
        app.shape,
        ts(app.created_at),
        ts(app.updated_at),
    )


def fn_values(fn: FnRecord) -> tuple[Any, ...]:
    return (
        fn.id,
        fn.app_id,
        fn.name,
        fn.image,
        fn.memory,
        fn.timeout,
        fn.idle_timeout,
        dumps(fn.config),
        dumps(fn.annotations),
        fn.shape,
        ts(fn.created_at),
        ts(fn.updated_at),
    )


def trigger_values(trigger: Trigger) -> tuple[Any, ...]:
    return (
        trigger.id,
        trigger.app_id,
        trigger.fn_id,
        trigger.name,
        trigger.type,
        trigger.source,
        dumps(trigger.annotations),
        ts(trigger.created_at),
        ts(trigger.updated_at),
    )


_encode_headers = json.JSONEncoder(ensure_ascii=False).encode
"""A queued call's headers (pairs, as JSON lists) as ``json.dumps(..., ensure_ascii=False)``
writes them, without building an encoder for each call (a detached call's 202 waits for it)."""


def queued_call_values(call: QueuedCall) -> tuple[Any, ...]:
    """A new call's row: queued, never leased, due at ``not_before`` or else at once."""
    return (
        call.id,
        call.fn_id,
        call.app_id,
        int(call.trigger),
        call.method,
        call.url,
        _encode_headers(call.headers),
        call.body,
        call.callback_url,
        call.created_at,
        QUEUED,
        0,
        call.not_before or call.created_at,
        None,
        None,
        None,
        None,
    )


def update_statement(
    table: str, changes: Mapping[str, Any], row_id: str, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """``UPDATE table SET ... WHERE id = ...`` and its parameters, with the backend's
    placeholder ``mark`` (``?`` for sqlite3, ``%s`` for psycopg)."""
    sets = ", ".join(f"{column} = {mark}" for column in changes)
    return f"UPDATE {table} SET {sets} WHERE id = {mark}", (*changes.values(), row_id)


def _call_progress(table: str) -> str:
    """SQL for how far a call record of ``table`` (``calls`` or ``excluded``) has come, a number
    that only grows along a call's life: waiting for attempt n (queued after n - 1 attempts),
    then running attempt n, then its outcome."""
    return (
        f"((CASE WHEN {table}.status = '{STATUS_QUEUED}' THEN {table}.attempts + 1 "
        f"ELSE {table}.attempts END) * 3 + (CASE {table}.status WHEN '{STATUS_QUEUED}' THEN 0 "
        f"WHEN '{STATUS_RUNNING}' THEN 1 ELSE 2 END))"
    )


def value_rows(mark: str, width: int, rows: int) -> str:
    """A multi-row ``VALUES`` list: ``rows`` rows of ``width`` placeholders ``mark`` each,
    ``(?, ?), (?, ?)`` for ``("?", 2, 2)``."""
    row = f"({', '.join([mark] * width)})"
    return ", ".join([row] * rows)


def call_upsert_statement(mark: str, rows: int = 1) -> str:
    """``INSERT`` of ``rows`` call records, each replacing the stored one only when it is
    not behind it (``_call_progress``), with the backend's placeholder ``mark``. Records of
    one call come from more than one writer: on a shared store the agent that queued a
    detached call writes "queued" while the agent that ran it writes the outcome, each batched
    behind, so the queued record may arrive last; it must not undo the outcome."""
    columns = CALL_COLUMNS.split(", ")
    return (
        f"INSERT INTO calls ({CALL_COLUMNS}) VALUES {value_rows(mark, len(columns), rows)} "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        + f" WHERE {_call_progress('excluded')} >= {_call_progress('calls')}"
    )


def calls_page_statement(
    fn_id: str, after: str | None, where: CallFilter, limit: int, mark: str
) -> tuple[str, list[Any]]:
    """``SELECT`` of one page of a fn's calls, newest first (by id), after the call id
    ``after``, filtered by ``where``, at most ``limit`` rows; and its parameters, with the
    backend's placeholder ``mark``."""
    clauses: list[tuple[str, Any]] = [(f"fn_id = {mark}", fn_id)]
    if after is not None:
        clauses.append((f"id < {mark}", after))
    if where.status is not None:
        clauses.append((f"status = {mark}", where.status))
    if where.from_time is not None:
        clauses.append((f"created_at >= {mark}", ts(where.from_time)))
    if where.to_time is not None:
        clauses.append((f"created_at <= {mark}", ts(where.to_time)))
    sql = (
        f"SELECT {CALL_COLUMNS} FROM calls WHERE "
        + " AND ".join(clause for clause, _ in clauses)
        + f" ORDER BY id DESC LIMIT {mark}"
    )
    return sql, [value for _, value in clauses] + [limit]


def app_changes(app: App) -> dict[str, Any]:
    return {
        "config": dumps(app.config),
        "annotations": dumps(app.annotations),
        "syslog_url": app.syslog_url,
        "shape": app.shape,
        "updated_at": ts(app.updated_at),
    }


def fn_changes(fn: FnRecord) -> dict[str, Any]:
    return {
        "image": fn.image,
        "memory": fn.memory,
        "timeout": fn.timeout,
        "idle_timeout": fn.idle_timeout,
        "config": dumps(fn.config),
        "annotations": dumps(fn.annotations),
        "shape": fn.shape,
        "updated_at": ts(fn.updated_at),
    }


def trigger_changes(trigger: Trigger) -> dict[str, Any]:
    return {
        "name": trigger.name,
        "source": trigger.source,
        "annotations": dumps(trigger.annotations),
        "updated_at": ts(trigger.updated_at),
    }


def app_from_row(row: Row) -> App:
    return App(
        id=row["id"],
        name=row["name"],
        config=json.loads(row["config"]),
        annotations=json.loads(row["annotations"]),
        syslog_url=row["syslog_url"],
        shape=row["shape"],
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
    )


def fn_from_row(row: Row) -> FnRecord:
    return FnRecord(
        id=row["id"],
        app_id=row["app_id"],
        name=row["name"],
        image=row["image"],
        memory=row["memory"],
        timeout=row["timeout"],
        idle_timeout=row["idle_timeout"],
        config=json.loads(row["config"]),
        annotations=json.loads(row["annotations"]),
        shape=row["shape"],
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
    )


def trigger_from_row(row: Row) -> Trigger:
    return Trigger(
        id=row["id"],
        app_id=row["app_id"],
        fn_id=row["fn_id"],
        name=row["name"],
        type=row["type"],
        source=row["source"],
        annotations=json.loads(row["annotations"]),
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
    )


def queued_call_from_row(row: Row) -> QueuedCall:
    return QueuedCall(
        id=row["id"],
        fn_id=row["fn_id"],
        app_id=row["app_id"],
        trigger=bool(row["is_trigger"]),
        method=row["method"],
        url=row["url"],
        headers=tuple((name, value) for name, value in json.loads(row["headers"])),
        body=bytes(row["body"]),
        callback_url=row["callback_url"],
        created_at=row["created_at"],
        status=row["status"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        started_at=row["started_at"],
        last_error=row["last_error"],
    )


def _optional_ts(when: datetime | None) -> str | None:
    return ts(when) if when is not None else None


def _optional_parse_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text is not None else None


def call_values(call: CallRecord) -> tuple[Any, ...]:
    return (
        call.id,
        call.fn_id,
        call.app_id,
        call.status,
        ts(call.created_at),
        _optional_ts(call.started_at),
        _optional_ts(call.completed_at),
        call.http_status,
        call.error,
        call.start,
        int(call.detached),
        call.attempts,
        call.queued_ms,
        call.start_ms,
        call.exec_ms,
    )


def call_from_row(row: Row) -> CallRecord:
    return CallRecord(
        id=row["id"],
        fn_id=row["fn_id"],
        app_id=row["app_id"],
        status=row["status"],
        created_at=parse_ts(row["created_at"]),
        started_at=_optional_parse_ts(row["started_at"]),
        completed_at=_optional_parse_ts(row["completed_at"]),
        http_status=row["http_status"],
        error=row["error"],
        start=row["start"],
        detached=bool(row["detached"]),
        attempts=row["attempts"],
        queued_ms=row["queued_ms"],
        start_ms=row["start_ms"],
        exec_ms=row["exec_ms"],
    )


def secret_from_row(row: Row) -> Secret:
    return Secret(
        app_id=row["app_id"],
        name=row["name"],
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
    )
