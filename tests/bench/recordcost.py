"""What recording costs in instructions, for ``valgrind --tool=callgrind`` (the records bench
runs it): ``python -m tests.bench.recordcost CALLS on|off`` makes CALLS calls' ends and hands
each to a ``Recorder`` on a SQLite file, as ``fnagent serve`` does: records buffered, written
on the event loop in batches of 64 (``flush``), retention pruning the fn to its 1,000 newest
every 640 calls. With ``off`` the recorder is disabled and the rest is the same: the
difference between the two, per call, is recording's whole cost, Python and SQLite's C alike.
Instruction counts do not move with the machine's load, unlike times."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio

from fnagent.agent import CallResult
from fnagent.models import Call, Fn
from fnagent.records import Recorder, Retention, prune_once
from fnagent.store.models import utcnow
from fnagent.store.sqlite import SQLiteStore

BATCH = 64
PRUNE_EVERY = 640
LOG = b"fn_call_id=x\nhello\n"


async def record_calls(folder: Path, calls: int, enabled: bool) -> None:
    async with SQLiteStore(folder / "fn.db") as store:
        app = await store.create_app({"name": "bench"})
        stored = await store.create_fn({"app_id": app.id, "name": "hello", "image": "hello"})
        fn = Fn(id=stored.id, name="hello", app_id=app.id, app_name="bench", image="hello")
        recorder = Recorder(store, enabled=enabled, flush_interval_s=3600)
        retention = Retention(count=1000)
        for n in range(1, calls + 1):
            created = utcnow()
            call = Call(fn=fn)
            result = CallResult(
                call_id=call.id,
                status=200,
                start="warm",
                logs=LOG,
                duration_s=0.002,
                queued_s=0.0001,
                exec_s=0.0019,
            )
            recorder.finished(call, result, created_at=created)
            if recorder.buffered >= BATCH:
                await recorder.flush()
            if n % PRUNE_EVERY == 0:
                await prune_once(store, retention, utcnow())
        await recorder.flush()


def main() -> None:
    calls, mode = int(sys.argv[1]), sys.argv[2]
    if mode not in ("on", "off"):
        raise SystemExit(f"usage: python -m tests.bench.recordcost CALLS on|off, not {mode!r}")
    with tempfile.TemporaryDirectory(prefix="fnagent-recordcost-") as folder:
        anyio.run(
            record_calls, Path(folder), calls, mode == "on", backend_options={"use_uvloop": True}
        )


if __name__ == "__main__":
    main()
