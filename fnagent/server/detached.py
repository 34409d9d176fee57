"""Detached calls: the dispatcher that runs calls from the store's queue on the agent.

``POST /invoke/{fn_id}`` (or ``/t/...``) with ``Fn-Invoke-Type: detached`` stores the call
(fnagent/server/invoke.py) and answers 202; the ``Dispatcher`` of each ``fnagent serve`` leases
queued calls from the store, a bounded number at a time, and runs each through the agent like a
sync call (same containers, limits and statuses). Its contract:

- At least once: a lease is renewed while the call runs; a server that dies leaves its calls
  running with a lease that expires (another server takes them then), and a restart on the
  same store takes its own back at once (``release_leases`` on start).
- Retries: a host too busy (503), a call that timed out waiting for a container (the function
  never saw it), or a function answering 429 or 503 is run again after a doubling backoff, up
  to ``max_attempts`` runs (each retry's reason kept in its row, ``last_error``); then the
  call fails with the last reason.
- A finished call leaves the queue (``finish_call`` deletes it); its outcome is reported to
  the observer, which records it.
- Background: the calls reach the agent as ``Call.background``: a burst of them starts its
  containers one at a time (fnagent/agent/launch.py), so they wait for containers longer
  than a waiting caller would, and a wait that outlasts the call's timeout is retried.
- Stop (``aclose``): no new lease; running calls and pending callbacks get ``drain_ms`` to
  finish; what still runs then is cancelled and left leased, to run again on the next start.
- Callbacks (fnagent/server/callback.py) run beside the calls, never in a call's slot.

Each transition is reported to a ``CallObserver`` (no-op by default), the seam for call
records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import anyio.abc

from fnagent.agent import CallResult
from fnagent.config import DetachedConfig
from fnagent.errors import (
    FnAgentError,
    FunctionTimeoutError,
    NotFoundError,
    ServerBusyError,
    StartTimeoutError,
)
from fnagent.models import Call, CallRequest, Fn
from fnagent.records import Recorder
from fnagent.server.callback import post_callback
from fnagent.server.metrics import Metrics
from fnagent.store.base import Store
from fnagent.store.calls import STATUS_ERROR, STATUS_SUCCESS
from fnagent.store.queue import QueuedCall

logger = logging.getLogger(__name__)

RETRY_STATUSES = (429, 503)
"""A host too busy, or a function that asks to be called later."""


class CallObserver(Protocol):
    """Told of every detached call's transitions; must not block (it runs on the call path).
    ``created_at`` is when the call was accepted (Unix seconds), in every transition."""

    def queued(
        self, call_id: str, fn: Fn, at: float, *, created_at: float, attempts: int = 0
    ) -> None:
        """Stored as queued (202 answered next), or queued again for a retry after
        ``attempts`` attempts (``at`` is when it may run)."""

    def running(self, call_id: str, fn: Fn, attempt: int, at: float, *, created_at: float) -> None:
        """Run ``attempt`` (1, 2, ...) starts."""

    def finished(
        self,
        call_id: str,
        fn: Fn | None,
        attempt: int,
        result: CallResult,
        *,
        created_at: float,
    ) -> None:
        """Completed for good (a retry is ``queued`` instead). ``fn`` is None when the fn was
        deleted before the call could run; ``result.error`` says why a call failed."""


class NoObserver:
    def queued(
        self, call_id: str, fn: Fn, at: float, *, created_at: float, attempts: int = 0
    ) -> None:
        pass

    def running(self, call_id: str, fn: Fn, attempt: int, at: float, *, created_at: float) -> None:
        pass

    def finished(
        self,
        call_id: str,
        fn: Fn | None,
        attempt: int,
        result: CallResult,
        *,
        created_at: float,
    ) -> None:
        pass


class RecordingObserver:
    """Detached calls' transitions as call records (``fnagent.records``): queued, running,
    then the outcome, each replacing the last. A call whose fn is gone has no record (the
    store drops records of deleted fns)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def queued(
        self, call_id: str, fn: Fn, at: float, *, created_at: float, attempts: int = 0
    ) -> None:
        self.recorder.queued(
            Call(fn=fn, id=call_id), created_at=_utc(created_at), attempts=attempts
        )

    def running(self, call_id: str, fn: Fn, attempt: int, at: float, *, created_at: float) -> None:
        call = Call(fn=fn, id=call_id)
        self.recorder.running(call, created_at=_utc(created_at), attempts=attempt)

    def finished(
        self,
        call_id: str,
        fn: Fn | None,
        attempt: int,
        result: CallResult,
        *,
        created_at: float,
    ) -> None:
        if fn is not None:
            call = Call(fn=fn, id=call_id)
            self.recorder.finished(
                call, result, created_at=_utc(created_at), detached=True, attempts=attempt
            )


def _utc(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


class Submitter(Protocol):
    async def submit(self, call: Call) -> CallResult: ...


Lookup = Callable[[str], Awaitable[Fn]]


class Dispatcher:
    """Runs the store's detached calls on ``agent``; an async context manager.

    ``owner`` names this server in the leases it takes (its instance id: the same after a
    restart on the same store). ``lookup`` returns a fn by id (NotFoundError when gone).
    ``clock`` gives Unix seconds."""

    def __init__(
        self,
        *,
        store: Store,
        agent: Submitter,
        lookup: Lookup,
        config: DetachedConfig,
        owner: str,
        observer: CallObserver | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        hot: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.store = store
        self.agent = agent
        self.lookup = lookup
        self.config = config
        self.owner = owner
        self.observer: CallObserver = observer or NoObserver()
        self.metrics = metrics
        self.clock = clock
        self.hot = hot
        """The fns this agent has an idle container of now; given (a shared store), a queued
        call of another fn is leased only once it waited ``config.prefer_hot_ms``, which
        leaves it to an agent that has its fn hot."""
        self.running: dict[str, QueuedCall] = {}
        self.callbacks = 0
        self.depth = 0
        """Calls queued in the store when last looked (the detached queue depth metric)."""
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._depth_due = 0.0
        self._stopping = False
        self._closing = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._callback_limiter = anyio.CapacityLimiter(config.callback_concurrency)

    def __repr__(self) -> str:
        return (
            f"<Dispatcher running={len(self.running)} callbacks={self.callbacks} "
            f"depth={self.depth}{' stopping' if self._stopping else ''}>"
        )

    async def __aenter__(self) -> Dispatcher:
        released = await self.store.release_leases(self.owner, now=self.clock())
        if released:
            logger.info("detached calls of an earlier run queued again", extra={"count": released})
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._lease_loop)
            await self._tg.start(self._renew_loop)
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def notify(self) -> None:
        """A call was enqueued here: look at the queue now, not at the next poll (when a
        slot is free: otherwise the next finished call looks)."""
        if len(self.running) < self.config.concurrency:
            self._wake.set()

    def stop(self) -> None:
        """Take no more calls (SIGTERM); the ones queued stay queued. Idempotent."""
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        """Stop; wait up to drain_ms for running calls and callbacks; cancel the rest (left
        leased: the next start runs them again). Idempotent."""
        self.stop()
        tg = self._tg
        if tg is None or self._closing:
            return
        # The task group stays while the calls drain: a call that finishes now still gets
        # its callback started.
        self._closing = True
        with anyio.move_on_after(self.config.drain_ms / 1000, shield=True):
            while self.running or self.callbacks:
                self._idle = anyio.Event()
                await self._idle.wait()
        if self.running:
            logger.warning(
                "detached calls still running at stop: they run again on the next start",
                extra={"count": len(self.running)},
            )
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)
        self._tg = None

    # --- loops ----------------------------------------------------------------------------

    async def _lease_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        poll_s = self.config.poll_ms / 1000
        prefer_s = self._prefer_hot_s()
        wait_s = poll_s
        while not self._stopping:
            self._wake = anyio.Event()
            leased = await self._lease(self.config.concurrency - len(self.running))
            assert self._tg is not None
            # Leased while a stop came: they are ours now, and run within the drain.
            for call in leased:
                self.running[call.id] = call
                self._tg.start_soon(self._run, call)
            with anyio.move_on_after(wait_s):
                await self._wake.wait()
            # Woken by a call queued here: if no agent has its fn hot, it is this one's to
            # take once the preference's wait is over, not at the next poll.
            wait_s = min(poll_s, prefer_s) if self._wake.is_set() and prefer_s else poll_s

    async def _lease(self, limit: int) -> list[QueuedCall]:
        """Up to ``limit`` calls (none when 0); the depth read afresh at most once a poll
        interval (a count costs a scan of the queued calls)."""
        try:
            now = self.clock()
            prefer_s = self._prefer_hot_s()
            leased = await self.store.lease_calls(
                owner=self.owner,
                limit=limit,
                now=now,
                lease_s=self.config.lease_ms / 1000,
                hot=self.hot() if self.hot is not None and prefer_s and limit else (),
                cold_due=now - prefer_s if prefer_s else None,
            )
            if time.monotonic() >= self._depth_due:
                self._depth_due = time.monotonic() + self.config.poll_ms / 1000
                self.depth = await self.store.count_queued()
        except FnAgentError as exc:
            logger.warning("detached queue unreadable", extra={"error": exc.message})
            return []
        return leased

    def _prefer_hot_s(self) -> float:
        return self.config.prefer_hot_ms / 1000 if self.hot is not None else 0.0

    async def _renew_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        lease_s = self.config.lease_ms / 1000
        while True:
            await anyio.sleep(lease_s / 3)
            ids = list(self.running)
            if not ids:
                continue
            try:
                held = await self.store.renew_leases(
                    owner=self.owner, call_ids=ids, now=self.clock(), lease_s=lease_s
                )
            except FnAgentError as exc:
                logger.warning("detached leases not renewed", extra={"error": exc.message})
                continue
            for call_id in ids:
                if call_id not in held and call_id in self.running:
                    logger.warning("detached call's lease lost", extra={"call_id": call_id})

    # --- one call -------------------------------------------------------------------------

    async def _run(self, row: QueuedCall) -> None:
        try:
            await self._run_one(row)
        except FnAgentError as exc:  # the store failed: the lease expires, the call runs again
            logger.warning(
                "detached call left to run again", extra={"call_id": row.id, "error": exc.message}
            )
        except Exception:  # a bug: this call's, not every detached call's end
            logger.exception("detached call failed unexpectedly", extra={"call_id": row.id})
        finally:
            del self.running[row.id]
            self._wake.set()
            self._idle.set()

    async def _run_one(self, row: QueuedCall) -> None:
        attempt = row.attempts
        try:
            fn = await self.lookup(row.fn_id)
        except NotFoundError as exc:
            await self._finish(row, None, _failed(row.id, exc), attempt)
            return
        self.observer.running(row.id, fn, attempt, self.clock(), created_at=row.created_at)
        call = Call(
            fn=fn,
            id=row.id,
            trigger=row.trigger,
            background=True,
            request=CallRequest(
                method=row.method, url=row.url, headers=list(row.headers), body=row.body
            ),
        )
        result = await self.agent.submit(call)
        if self.metrics is not None:
            self.metrics.observe(fn.id, result.status, result.start, result.duration_s)
        if result.status in RETRY_STATUSES or _never_ran(result):
            reason = _reason(result)
            if attempt < self.config.max_attempts:
                due = self.clock() + self.config.backoff_s(attempt)
                if await self.store.requeue_call(
                    row.id, owner=self.owner, not_before=due, error=reason
                ):
                    self.observer.queued(
                        row.id, fn, due, created_at=row.created_at, attempts=attempt
                    )
                return
            # Busy, whoever said so (the host or the function): the reason says which.
            result.error = ServerBusyError(f"gave up after {attempt} attempts: {reason}")
        await self._finish(row, fn, result, attempt)

    async def _finish(
        self, row: QueuedCall, fn: Fn | None, result: CallResult, attempt: int
    ) -> None:
        if not await self.store.finish_call(row.id, owner=self.owner):
            return  # the lease was lost: whoever holds it now reports the outcome
        self.observer.finished(row.id, fn, attempt, result, created_at=row.created_at)
        if row.callback_url and self._tg is not None:
            status = STATUS_SUCCESS if result.error is None else STATUS_ERROR
            self.callbacks += 1
            self._tg.start_soon(self._callback, row, status, result)

    async def _callback(self, row: QueuedCall, status: str, result: CallResult) -> None:
        assert row.callback_url is not None
        try:
            async with self._callback_limiter:
                body, headers = callback_payload(row.id, status, result)
                await post_callback(
                    row.callback_url,
                    headers=headers,
                    body=body,
                    timeout_s=self.config.callback_timeout_ms / 1000,
                    attempts=self.config.callback_attempts,
                )
        except Exception:  # a bug: never the dispatcher's end
            logger.exception("callback failed unexpectedly", extra={"call_id": row.id})
        finally:
            self.callbacks -= 1
            self._idle.set()


def callback_payload(
    call_id: str, status: str, result: CallResult
) -> tuple[bytes, list[tuple[str, str]]]:
    """What a callback POSTs: the function's response body (a failed call's JSON
    ``{"message": ...}``) with its Content-Type, ``Fn-Call-Id``, ``Fn-Call-Status`` (success or
    error) and ``Fn-Http-Status`` (the status a sync caller would have got)."""
    if result.error is not None:
        body = json.dumps({"message": result.error.message}).encode()
        content_type = "application/json"
    else:
        body = result.body
        content_type = next(
            (value for name, value in result.headers if name.lower() == "content-type"), ""
        )
    headers = [
        ("Fn-Call-Id", call_id),
        ("Fn-Call-Status", status),
        ("Fn-Http-Status", str(result.status)),
    ]
    # A function's header value never reaches the receiver with a line break in it.
    if content_type and not any(char in content_type for char in "\r\n"):
        headers.append(("Content-Type", content_type))
    return body, headers


def _failed(call_id: str, error: FnAgentError) -> CallResult:
    return CallResult(call_id=call_id, status=error.status, error=error)


def _never_ran(result: CallResult) -> bool:
    """Timed out waiting for a container: the function never saw the call (not a container
    that failed to start, which would fail again)."""
    return (
        result.start is None
        and isinstance(result.error, FunctionTimeoutError)
        and not isinstance(result.error, StartTimeoutError)
    )


def _reason(result: CallResult) -> str:
    if result.error is not None:
        return f"{result.status} {result.error.message}"
    return f"the function answered {result.status}"
