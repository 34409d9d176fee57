"""Call records: the fields of each row of the status table on the fake driver, the
write-behind recorder (batching, flush, upserts, drops, shutdown) and retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from drivers.fake import ProgramContext
from fnagent.agent import CallResult
from fnagent.errors import StorageError
from fnagent.models import Call
from fnagent.records import Recorder, Retention, finished_record, prune_once
from fnagent.server.detached import RecordingObserver
from fnagent.store import SQLiteStore
from fnagent.store.calls import CallRecord
from fnagent.testing.fakefn import Answer, Request, http_function
from tests.helpers import poll
from tests.unit.helpers import handler_of, make_call, make_fn, running

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, tzinfo=UTC)


async def behave(request: Request, ctx: ProgramContext) -> Answer:
    """What the body asks: ``status N``, ``crash``, ``sleep``, ``big``, else 200 with logs."""
    what = request.body.decode()
    await ctx.stdout.write(f"doing {what}\n".encode())
    if what.startswith("status "):
        return Answer(status=int(what.split()[1]))
    if what == "crash":
        return Answer(exit_code=1)
    if what == "sleep":
        await ctx.sleep(10)
    if what == "big":
        return Answer(body=b"x" * 5000)
    if what == "fn-http-404":
        return Answer(headers={"Fn-Http-Status": "404"}, body=b"no such thing")
    return Answer(body=b"done")


def record_of(call: Call, result: CallResult) -> CallRecord:
    return finished_record(
        call,
        result,
        created_at=T0,
        completed_at=T0 + timedelta(seconds=result.duration_s),
        detached=False,
        attempts=1,
    )


# (body, fn fields, status, http_status, error starts with, start kind)
ROWS: list[tuple[str, dict[str, Any], str, int, str | None, str | None]] = [
    ("hello", {}, "success", 200, None, "cold"),
    ("status 502", {}, "error", 502, "function failed", "hot"),
    ("status 504", {}, "timeout", 504, "Timed out", "hot"),
    ("status 418", {}, "error", 502, "invalid function response", "hot"),
    ("crash", {}, "error", 502, "error receiving function response", "cold"),
    ("big", {}, "error", 502, "function response body too large", "cold"),
    ("sleep", {"timeout_s": 1}, "timeout", 504, "Timed out", "cold"),
]


async def test_each_row_of_the_status_table_makes_its_record() -> None:
    async with running({"fn/echo": handler_of(behave)}, max_response_size_bytes=1000) as (
        agent,
        _,
    ):
        for body, fields, status, http_status, error, start in ROWS:
            fn = make_fn(**fields)
            call = make_call(fn, body.encode())
            result = await agent.submit(call)
            record = record_of(call, result)
            assert (record.status, record.http_status, record.start) == (
                status,
                http_status,
                start,
            ), body
            if error is None:
                assert record.error is None
            else:
                assert record.error is not None and record.error.startswith(error), record
            assert (record.id, record.fn_id, record.app_id) == (call.id, "fn1", "app1")
            assert (record.detached, record.attempts) == (False, 1)
            assert record.created_at == T0 and record.completed_at is not None
            assert record.started_at is not None and T0 <= record.started_at
            assert record.started_at <= record.completed_at
            assert record.queued_ms is not None and record.queued_ms >= 0
            assert record.exec_ms is not None and record.exec_ms > 0
            assert record.start_ms is not None and (record.start_ms > 0) == (start == "cold")
            assert f"doing {body}".encode() in result.logs


async def test_a_function_s_own_error_status_through_a_trigger_is_a_success() -> None:
    async with running({"fn/echo": handler_of(behave)}) as (agent, _):
        call = make_call(make_fn(), b"fn-http-404")
        call.trigger = True
        record = record_of(call, await agent.submit(call))
        assert (record.status, record.http_status, record.error) == ("success", 404, None)


@pytest.mark.parametrize(
    ("images", "settings", "status", "http_status", "error"),
    [
        ({}, {"missing_images": ["fn/echo"]}, "error", 404, "pull access denied"),
        (
            {"fn/echo": http_function(exit_before=3)},
            {},
            "error",
            502,
            "Container failed to initialize",
        ),
        (
            {"fn/echo": http_function(listen_delay_s=10)},
            {"hot_start_timeout_ms": 200},
            "timeout",
            504,
            "Container initialization timed out",
        ),
    ],
    ids=["image-missing", "exit-before-listening", "start-timeout"],
)
async def test_calls_that_never_started_have_no_start_and_waited_all_along(
    images: dict[str, Any], settings: dict[str, Any], status: str, http_status: int, error: str
) -> None:
    async with running(images, **settings) as (agent, _):
        call = make_call(make_fn())
        result = await agent.submit(call)
        record = record_of(call, result)
        assert (record.status, record.http_status, record.start) == (status, http_status, None)
        assert record.error is not None and error in record.error
        assert record.started_at is None and record.start_ms is None and record.exec_ms is None
        assert record.queued_ms == result.duration_s * 1000


async def test_a_caller_that_went_away_is_cancelled() -> None:
    call = make_call(make_fn())
    record = finished_record(
        call,
        None,
        created_at=T0,
        completed_at=T0 + timedelta(seconds=1),
        detached=False,
        attempts=1,
    )
    assert (record.status, record.http_status, record.start) == ("cancelled", None, None)
    assert record.error == "the caller went away before the call ended"
    assert record.completed_at == T0 + timedelta(seconds=1)


# -- the recorder -----------------------------------------------------------------------------


class MemoryStore:
    """What the recorder needs of a store, in memory; ``fail`` refuses writes; ``gate``
    holds them."""

    def __init__(self) -> None:
        self.batches: list[list[CallRecord]] = []
        self.logs: dict[str, bytes] = {}
        self.fail = False
        self.gate: anyio.Event | None = None

    async def put_calls(self, calls: Sequence[CallRecord], logs: Mapping[str, bytes]) -> int:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StorageError("storage failure: disk full")
        self.batches.append(list(calls))
        self.logs.update(logs)
        return len(calls)

    async def prune_calls(
        self, *, keep_per_fn: int, before: datetime, max_rows: int | None = None
    ) -> int:
        return 0

    @property
    def records(self) -> dict[str, CallRecord]:
        return {r.id: r for batch in self.batches for r in batch}


def ok_result(call: Call, logs: bytes = b"") -> CallResult:
    return CallResult(call_id=call.id, status=200, start="warm", logs=logs, duration_s=0.01)


def recorder(store: MemoryStore, **options: Any) -> Recorder:
    return Recorder(store, **options)  # type: ignore[arg-type]  # only what it uses


async def test_records_wait_for_the_interval_then_go_in_one_batch() -> None:
    store = MemoryStore()
    async with recorder(store, flush_interval_s=0.2) as rec:
        calls = [make_call(make_fn()) for _ in range(5)]
        for call in calls:
            rec.finished(call, ok_result(call, b"log of " + call.id.encode()), created_at=T0)
        assert store.batches == [] and rec.buffered == 5  # nothing written on the call path
        await poll(lambda: len(store.batches) == 1, "the flush")
    assert [r.id for r in store.batches[0]] == [c.id for c in calls]
    assert store.logs == {c.id: b"log of " + c.id.encode() for c in calls}
    assert store.batches[0][0].start == "hot" and rec.written == 5 and rec.dropped == 0


async def test_a_full_batch_is_written_before_the_interval() -> None:
    store = MemoryStore()
    async with recorder(store, flush_interval_s=60, batch_size=3) as rec:
        for _ in range(7):
            call = make_call(make_fn())
            rec.finished(call, ok_result(call), created_at=T0)
        await poll(lambda: rec.written >= 6, "two full batches")
        assert all(len(batch) <= 3 for batch in store.batches)
    # Leaving writes the rest.
    assert rec.written == 7 and rec.buffered == 0


async def test_a_transaction_holds_a_bounded_size_of_logs_and_a_larger_log_goes_alone() -> None:
    """The store serves one transaction at a time and a detached call's enqueue waits for
    it: batches are cut by records and by bytes of logs."""
    store = MemoryStore()
    async with recorder(store, flush_interval_s=60, batch_size=3, batch_log_bytes=100) as rec:
        calls = [make_call(make_fn()) for _ in range(7)]
        for call, size in zip(calls, (40, 40, 40, 0, 150, 10, 10), strict=True):
            rec.finished(call, ok_result(call, b"x" * size), created_at=T0)
    assert [[r.id for r in batch] for batch in store.batches] == [
        [calls[0].id, calls[1].id],  # a third 40-byte log would pass 100 bytes
        [calls[2].id, calls[3].id],
        [calls[4].id],  # 150 bytes: alone
        [calls[5].id, calls[6].id],
    ]
    assert rec.written == 7 and len(store.logs) == 6


async def test_later_states_replace_earlier_ones() -> None:
    store = MemoryStore()
    call = make_call(make_fn())
    async with recorder(store, flush_interval_s=60) as rec:
        rec.queued(call, created_at=T0)
        rec.running(call, created_at=T0, attempts=1)
        assert rec.buffered == 1
        rec.finished(call, ok_result(call), created_at=T0, detached=True, attempts=2)
    (record,) = store.records.values()
    assert (record.status, record.detached, record.attempts) == ("success", True, 2)
    assert len(store.batches) == 1 and len(store.batches[0]) == 1


async def test_queued_and_running_records() -> None:
    store = MemoryStore()
    call = make_call(make_fn())
    async with recorder(store, flush_interval_s=60, now=lambda: T0 + timedelta(seconds=5)) as r:
        r.queued(call)
        await r.flush()
        queued = store.records[call.id]
        assert (queued.status, queued.created_at, queued.started_at) == (
            "queued",
            T0 + timedelta(seconds=5),
            None,
        )
        assert (queued.detached, queued.attempts) == (True, 0)
        r.running(call, created_at=T0, attempts=1)
        await r.flush()
        running_ = store.records[call.id]
        assert (running_.status, running_.created_at) == ("running", T0)
        assert running_.started_at == T0 + timedelta(seconds=5)


async def test_a_full_buffer_drops_and_counts_rather_than_wait() -> None:
    store = MemoryStore()
    async with recorder(store, flush_interval_s=60, max_buffered=3, max_buffered_bytes=10) as rec:
        calls = [make_call(make_fn()) for _ in range(5)]
        for call in calls[:2]:
            rec.finished(call, ok_result(call), created_at=T0)
        rec.finished(calls[2], ok_result(calls[2], b"x" * 11), created_at=T0)  # logs too big
        rec.finished(calls[3], ok_result(calls[3], b"x" * 10), created_at=T0)
        rec.finished(calls[4], ok_result(calls[4]), created_at=T0)  # one record too many
        assert (rec.buffered, rec.dropped) == (3, 2)
        # A later state of a buffered call still gets in.
        rec.finished(calls[0], None, created_at=T0)
        assert (rec.buffered, rec.dropped) == (3, 2)
    assert set(store.records) == {calls[0].id, calls[1].id, calls[3].id}
    assert store.records[calls[0].id].status == "cancelled"


async def test_a_failed_write_is_counted_and_the_recorder_goes_on() -> None:
    store = MemoryStore()
    async with recorder(store, flush_interval_s=0.05) as rec:
        store.fail = True
        call = make_call(make_fn())
        rec.finished(call, ok_result(call), created_at=T0)
        await poll(lambda: rec.dropped == 1, "the failed write")
        store.fail = False
        again = make_call(make_fn())
        rec.finished(again, ok_result(again), created_at=T0)
        await poll(lambda: rec.written == 1, "the next write")
    assert set(store.records) == {again.id}


async def test_leaving_writes_what_is_buffered_even_mid_write() -> None:
    store = MemoryStore()
    store.gate = anyio.Event()
    async with recorder(store, flush_interval_s=0.01) as rec:
        first = make_call(make_fn())
        rec.finished(first, ok_result(first), created_at=T0)
        await poll(lambda: rec.buffered == 0, "the write under way")
        second = make_call(make_fn())
        rec.finished(second, ok_result(second), created_at=T0)
        store.gate.set()
    assert set(store.records) == {first.id, second.id} and rec.dropped == 0


async def test_recording_off_records_nothing() -> None:
    store = MemoryStore()
    async with recorder(store, enabled=False) as rec:
        call = make_call(make_fn())
        rec.queued(call)
        rec.finished(call, ok_result(call), created_at=T0)
        assert rec.buffered == 0
    assert store.batches == []


# -- retention --------------------------------------------------------------------------------


async def test_retention_prunes_by_count_and_age_in_the_background() -> None:
    async with SQLiteStore(":memory:") as store:
        app = await store.create_app({"name": "app"})
        fn = await store.create_fn({"app_id": app.id, "name": "fn", "image": "fn/echo"})
        agent_fn = make_fn(id=fn.id, app_id=app.id)
        now = T0 + timedelta(days=30)
        retention = Retention(count=3, max_age_s=3600, interval_s=0.05, rows_per_write=2)
        writer = Recorder(store, now=lambda: now, flush_interval_s=0.01)
        async with writer:
            calls = [make_call(agent_fn) for _ in range(5)]
            old = make_call(agent_fn)
            for call in calls:
                writer.finished(call, ok_result(call, b"log"), created_at=now)
            writer.finished(old, ok_result(old), created_at=now - timedelta(hours=2))
            await poll(lambda: writer.written == 6, "the records written")
        listed, _ = await store.list_calls(fn.id)
        assert len(listed) == 6
        assert await prune_once(store, retention, now) == 3
        listed, _ = await store.list_calls(fn.id)
        assert len(listed) == 3 and old.id not in {c.id for c in listed}
        # The recorder runs it in the background when given a retention.
        more = [make_call(agent_fn) for _ in range(4)]
        deleted: list[int] = []

        class Counting(SQLiteStore):
            async def prune_calls(
                self, *, keep_per_fn: int, before: datetime, max_rows: int | None = None
            ) -> int:
                deleted.append(
                    await store.prune_calls(
                        keep_per_fn=keep_per_fn, before=before, max_rows=max_rows
                    )
                )
                return deleted[-1]

        async with Recorder(store, now=lambda: now, flush_interval_s=0.01) as again:
            for call in more:
                again.finished(call, ok_result(call), created_at=now)
        assert len((await store.list_calls(fn.id))[0]) == 7
        async with Recorder(
            Counting(":memory:"), retention=retention, now=lambda: now, enabled=False
        ):
            await poll(lambda: len(deleted) >= 4, "two prunes")
        assert deleted[:4] == [2, 2, 0, 0]  # 2 calls a transaction; then nothing left
        listed, _ = await store.list_calls(fn.id)
        # The newest by id (ids made within one millisecond sort in any order).
        assert [c.id for c in listed] == sorted((c.id for c in more + calls), reverse=True)[:3]


async def test_a_detached_calls_transitions_become_its_record() -> None:
    store = MemoryStore()
    fn = make_fn()
    call_id, accepted = "detached-1", T0.timestamp()
    async with recorder(store, flush_interval_s=60) as rec:
        observer = RecordingObserver(rec)
        observer.queued(call_id, fn, accepted, created_at=accepted)
        await rec.flush()
        assert (store.records[call_id].status, store.records[call_id].created_at) == ("queued", T0)
        observer.running(call_id, fn, 2, accepted + 5, created_at=accepted)
        await rec.flush()
        assert (store.records[call_id].status, store.records[call_id].attempts) == ("running", 2)
        done = CallResult(call_id=call_id, status=200, start="warm", exec_s=0.01)
        observer.finished(call_id, fn, 2, done, created_at=accepted)
        observer.finished("fn-gone", None, 1, done, created_at=accepted)  # no fn: no record
    record = store.records[call_id]
    assert (record.status, record.detached, record.attempts, record.start) == (
        "success",
        True,
        2,
        "hot",
    )
    assert record.created_at == T0 and "fn-gone" not in store.records
