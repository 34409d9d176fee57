"""The recorder: call records and logs written to the store behind the calls (write-behind).

The request path only puts a record into a bounded in-memory buffer (no I/O, a few
microseconds); a background task writes the buffer to the store every ``flush_interval_s``, or
as soon as ``batch_size`` records wait. Each transaction holds at most ``batch_size`` records and
``batch_log_bytes`` of logs (one larger log goes alone): the store serves one transaction at a
time, and a detached call's enqueue waits for the one under way, so a write of call records
must stay short (500 records held a SQLite store 8-24 ms under load and put 115 ms waits in
front of enqueues). A full buffer drops the record and counts it (``dropped``) rather than hold
the call up. Leaving the recorder writes what is buffered. So a record is lost only when the
process dies within a flush interval, or when the buffer overflows or a batch fails to write
(both counted).

Records are upserts by call id: a later state of a call replaces an earlier one, also within
one buffer (only the latest is written). The detached queue uses the same calls as the sync
path: ``queued`` when a call is accepted, ``running`` when it reaches the agent, ``finished``
when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from fnagent.agent import CallResult
from fnagent.errors import FnAgentError
from fnagent.models import Call
from fnagent.records.record import finished_record, pending_record
from fnagent.records.retention import Retention, prune_forever
from fnagent.store.base import Store
from fnagent.store.calls import CallRecord
from fnagent.store.models import utcnow

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_S = 0.1
# The SQLite store writes batches within these bounds on its event loop (fnagent/store/sqlite.py).
DEFAULT_BATCH_SIZE = 64
DEFAULT_BATCH_LOG_BYTES = 256 * 1024
DEFAULT_MAX_BUFFERED = 20_000
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
# Leaving the recorder: the last write may take this long, then what is left is dropped.
CLOSE_FLUSH_TIMEOUT_S = 10.0


class Recorder:
    """Buffers call records and logs and writes them to ``store`` in the background.

    An async context manager: entering starts the writer (and, with ``retention``, the task
    that prunes old records); leaving stops them and writes what is buffered (within
    CLOSE_FLUSH_TIMEOUT_S). ``enabled=False`` (FN_CALL_RECORDS=off) records nothing; retention
    still runs. The record methods never block, never do I/O and never raise for a full
    buffer; called outside the context, their records wait for the next one to be written.

    Bounds: at most ``max_buffered`` records, and ``max_buffered_bytes`` of logs, wait at
    once; a record past either is dropped and counted in ``dropped``.
    """

    def __init__(
        self,
        store: Store,
        *,
        enabled: bool = True,
        retention: Retention | None = None,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_log_bytes: int = DEFAULT_BATCH_LOG_BYTES,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.retention = retention
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.batch_log_bytes = batch_log_bytes
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self.now = now
        self.dropped = 0
        """Records never written: the buffer was full, or their batch failed to write."""
        self.written = 0
        """Records written (the latest state of a call counts once per batch)."""
        self._records: dict[str, CallRecord] = {}
        self._logs: dict[str, bytes] = {}
        self._log_bytes = 0
        self._writing: dict[str, CallRecord] = {}
        self._writing_logs: dict[str, bytes] = {}
        self._full = anyio.Event()
        self._flushing = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return (
            f"<Recorder buffered={len(self._records)} written={self.written} "
            f"dropped={self.dropped}>"
        )

    # -- what the call paths record ---------------------------------------------------------

    def queued(
        self,
        call: Call,
        *,
        created_at: datetime | None = None,
        detached: bool = True,
        attempts: int = 0,
    ) -> None:
        """``call`` was accepted and waits for its turn (``created_at``: now when None)."""
        if self.enabled:
            created = created_at or self.now()
            self.put(pending_record(call, created_at=created, detached=detached, attempts=attempts))

    def running(
        self,
        call: Call,
        *,
        created_at: datetime,
        detached: bool = True,
        attempts: int = 1,
    ) -> None:
        """``call`` (accepted at ``created_at``) went to the agent now; ``attempts`` counts
        this one."""
        if self.enabled:
            self.put(
                pending_record(
                    call,
                    created_at=created_at,
                    running_since=self.now(),
                    detached=detached,
                    attempts=attempts,
                )
            )

    def finished(
        self,
        call: Call,
        result: CallResult | None,
        *,
        created_at: datetime,
        detached: bool = False,
        attempts: int = 1,
    ) -> None:
        """``call`` (received or accepted at ``created_at``) ended now with the agent's
        ``result``, its log included; None: the caller went away first (``cancelled``)."""
        if not self.enabled:
            return
        completed = self.now()
        if result is not None and not detached:
            # A sync call took the agent's duration: no second clock to disagree with.
            completed = max(completed, created_at + timedelta(seconds=result.duration_s))
        record = finished_record(
            call,
            result,
            created_at=created_at,
            completed_at=completed,
            detached=detached,
            attempts=attempts,
        )
        self.put(record, result.logs if result is not None else b"")

    def put(self, record: CallRecord, log: bytes = b"") -> None:
        """Buffer ``record`` (replacing a buffered one of the same call) and its ``log`` (when
        not empty); drop and count it when the buffer is full."""
        replaces = record.id in self._records
        if not replaces and len(self._records) >= self.max_buffered:
            self.dropped += 1
            return
        if log:
            if self._log_bytes + len(log) > self.max_buffered_bytes:
                self.dropped += 1
                return
            self._log_bytes += len(log) - len(self._logs.get(record.id, b""))
            self._logs[record.id] = log
        self._records[record.id] = record
        if len(self._records) >= self.batch_size:
            self._full.set()

    @property
    def buffered(self) -> int:
        return len(self._records)

    def buffered_record(self, call_id: str) -> tuple[CallRecord, bytes] | None:
        """The record (and log, b"" when none) of ``call_id`` not yet in the store: still
        buffered, or in the batch being written; None otherwise."""
        for records, logs in ((self._records, self._logs), (self._writing, self._writing_logs)):
            record = records.get(call_id)
            if record is not None:
                return record, logs.get(call_id, b"")
        return None

    # -- writing ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what is buffered now, in transactions of at most ``batch_size`` records and
        ``batch_log_bytes`` of logs. A batch the store refuses is dropped (counted and
        logged), so a broken store cannot grow the buffer without bound. One flush at a time,
        so a call's states are written in order."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        records, logs = self._records, self._logs
        self._records, self._logs, self._log_bytes = {}, {}, 0
        self._writing, self._writing_logs = records, logs
        self._full = anyio.Event()
        try:
            for chunk, chunk_logs in self._batches(records, logs):
                try:
                    written = await self.store.put_calls(chunk, chunk_logs)
                except FnAgentError as exc:
                    self.dropped += len(chunk)
                    logger.warning(
                        "call records not written",
                        extra={"records": len(chunk), "error": exc.message},
                    )
                    continue
                self.written += written
        finally:
            self._writing, self._writing_logs = {}, {}

    def _batches(
        self, records: dict[str, CallRecord], logs: dict[str, bytes]
    ) -> Iterator[tuple[list[CallRecord], dict[str, bytes]]]:
        """``records`` in order, cut into transactions within ``batch_size`` records and
        ``batch_log_bytes`` of logs; a record whose log alone passes the bound goes alone."""
        chunk: list[CallRecord] = []
        chunk_logs: dict[str, bytes] = {}
        log_bytes = 0
        for record in records.values():
            log = logs.get(record.id)
            size = len(log) if log is not None else 0
            if chunk and (len(chunk) >= self.batch_size or log_bytes + size > self.batch_log_bytes):
                yield chunk, chunk_logs
                chunk, chunk_logs, log_bytes = [], {}, 0
            chunk.append(record)
            if log is not None:
                chunk_logs[record.id] = log
                log_bytes += size
        if chunk:
            yield chunk, chunk_logs

    async def _write_forever(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            with anyio.move_on_after(self.flush_interval_s):
                await self._full.wait()
            if self._records:
                # Shielded: records taken from the buffer are written (or counted), not lost
                # to a cancellation between the store's write and its answer.
                with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT_S, shield=True):
                    await self.flush()

    # -- life ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(self._write_forever)
        if self.retention is not None:
            await self._tg.start(prune_forever, self.store, self.retention, self.now)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT_S, shield=True):
                await self.flush()
            if self._records:  # the last write did not finish in time
                self.dropped += len(self._records)
                self._records, self._logs, self._log_bytes = {}, {}, 0
