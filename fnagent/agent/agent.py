"""The agent: calls become container tasks on hot http-stream containers.

A call goes to its function version's ``SlotQueue``: the most recently used idle container
(thawed if frozen), or a newly launched one it waits for (scale from zero). Each container lives
in one task of the agent's task group, which launches it, waits for its listener, runs its idle
policy (freeze after FN_FREEZE_IDLE_MSECS, remove when the keep-alive plan says) and removes it.
Each version's keep-alive policy (``fnagent.keepalive``) hears when its calls start and end and
plans when an idle container goes and when one is pre-warmed (launched, then frozen) before a
predicted call; the container life tasks and one waiting task per planned pre-warm carry the
plans out on the agent's clock.
Launches reserve memory and CPU from ``Admission``, evicting idle containers of other functions
when the budget is full; a fn's ``fnagent.io/max-concurrency`` caps its containers across
versions (``concurrency.py``), and its ``fnagent.io/init-timeout-ms`` times its starts. A
changed function is pre-pulled while the old version serves; only then do new calls go to the
new version, and the old containers drain.

``submit`` never raises for what happens to a call: the ``CallResult`` carries the status the
caller gets (the status table in docs/design.md) and, for a failed call, the error (the server
renders it as HTTP), with what was learned either way (how the container was found, its logs,
resource samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from drivers.backoff import backoff_s
from drivers.base import ContainerTask, Driver, RunResult, RunStatus, TaskLogger, WaitResult
from drivers.stats import Stat, decimate
from fnagent.agent.admission import Admission, Budget, detect_budget
from fnagent.agent.calllogs import CappedLog, LineForwarder, LogLine, OutputRouter, log_call
from fnagent.agent.concurrency import Concurrency, capped, limit_blocks, retry_after_s
from fnagent.agent.eviction import MIN_COLD_START_S, EvictionPolicy, greedy_dual
from fnagent.agent.follow import FollowHub
from fnagent.agent.hostcpu import HostCpu
from fnagent.agent.httpclient import (
    BodyTooLarge,
    ConnectFailed,
    ProtocolError,
    RequestTimeout,
    Response,
    UnixHTTPConnection,
)
from fnagent.agent.launch import (
    cpus_have_room,
    launch_patience,
    launches_for_waiters,
    launches_towards_minimum,
)
from fnagent.agent.launch import min_hot_bound as launch_min_hot_bound
from fnagent.agent.protocol import (
    fn_environment,
    listener_address,
    request_headers,
    response_headers,
    status_error,
)
from fnagent.agent.readiness import CONTRACT_HINT, listen_within
from fnagent.agent.slots import HotContainer, Prewarm, SlotQueue, State, Waiter
from fnagent.agent.sockdir import SocketDir, remove_root
from fnagent.agent.versions import Moves, Versions
from fnagent.bounds import DEFAULT_IDLE_TIMEOUT_S
from fnagent.clock import Clock
from fnagent.config import LOG_PIPE_DIRECT, AgentConfig
from fnagent.errors import (
    ContainerGoneError,
    FnAgentError,
    FnDeletedError,
    FunctionTimeoutError,
    InvalidInputError,
    InvalidResponseError,
    OutOfMemoryError,
    ReceiveError,
    ResponseTooLargeError,
    ServerBusyError,
    StartFailedError,
    StartTimeoutError,
    TooManyRequestsError,
)
from fnagent.ids import new_id
from fnagent.keepalive import GreedyDual, KeepAlivePolicy, Plan
from fnagent.models import FORMAT_HTTP_STREAM, Call, Fn

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_STAT_SAMPLES = 240
STATS_INTERVAL_S = 1.0
DEFAULT_STOP_GRACE_S = 30.0
# After a failed update, the new version is retried no sooner than this.
UPDATE_RETRY_S = 10.0
# How long a failed call waits to learn how its container ended (to name an OOM kill).
EXIT_REPORT_WAIT_S = 2.0
# The same when its listener still accepts connections (the function hung up and lives on).
ALIVE_EXIT_REPORT_WAIT_S = 0.5
MAX_ATTEMPTS = 3
# After a response, the call's output still on its way is waited for (_settle_output) at
# most LOG_SETTLE_S; calllogs.py's SETTLE_QUIET_S says when it is all in.
LOG_SETTLE_S = 0.25
SETTLE_POLL_S = 0.005
FN_LABEL = "fnagent.fn_id"
APP_LABEL = "fnagent.app_id"


@dataclass(kw_only=True)
class CallResult:
    """What the caller gets, and what the agent learned running the call."""

    call_id: str
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: FnAgentError | None = None
    """Set when the call failed: ``status`` is its status; ``headers`` and ``body`` are empty
    (the caller's answer is the server's to make)."""
    start: str | None = None
    """How the container was found: "cold" (launched for it), "warm" or "thawed"."""
    logs: bytes = b""
    stats: list[Stat] = field(default_factory=list)
    duration_s: float = 0.0
    queued_s: float = 0.0
    """Of ``duration_s``: waiting for a container (all of it when the call never got one)."""
    start_s: float = 0.0
    """Of ``duration_s``: launching the container (cold) or thawing it (thawed)."""
    exec_s: float = 0.0
    """Of ``duration_s``: running the call on its container."""


@dataclass(frozen=True, kw_only=True)
class KeepAliveView:
    """One fn version's keep-alive now (``Agent.keepalive``)."""

    version: str
    serving: bool
    """Its fn's calls go to this version (others drain)."""
    policy: str
    learned: bool
    """The latest plan came from the histogram (else: the fixed keep-alive)."""
    representative: bool
    """The histogram decides the next plan."""
    idle_samples: int
    keepalive_s: float
    """How long the latest plan keeps a container idle after its call (idle_timeout before
    any call ended)."""
    unload_in_s: float | None
    """When that plan removes it, from now (negative: past); None before any call ended."""


@dataclass(frozen=True, kw_only=True)
class PrewarmView:
    """The next planned pre-warm of a fn (``Agent.keepalive``)."""

    version: str
    in_s: float
    """When the container is started, from now."""
    keep_s: float
    """How long it is kept from then unless a call takes it."""


class _Retry(Exception):
    """Nothing reached the container: the call may go to another one."""


class Agent:
    """Runs calls on hot containers. An async context manager that owns one task group.

    Leaving it stops new calls (503), lets calls in flight finish within ``stop_grace_s``,
    removes every container it made, and leaves the driver (the caller's) open.
    """

    def __init__(
        self,
        driver: Driver,
        config: AgentConfig,
        *,
        budget: Budget | None = None,
        clock: Clock | None = None,
        host_idle: Callable[[], float | None] | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        evict: EvictionPolicy[HotContainer] | None = None,
        log_sink: LineForwarder | None = None,
    ) -> None:
        self.driver = driver
        self.config = config
        self.host_idle = host_idle or HostCpu().idle_share
        """The host's idle CPU share lately (None: unknown); see launch.cpus_have_room."""
        self.admission = Admission(
            budget or detect_budget(config.max_total_memory_bytes, config.max_total_cpu_mcpus)
        )
        self.clock = clock or Clock()
        self.stop_grace_s = stop_grace_s
        self.priorities: GreedyDual[HotContainer] = GreedyDual()
        """Each container's Greedy-Dual priority, kept as calls use containers."""
        self.evict = evict or greedy_dual(self.priorities)
        """Which idle container makes room for a launch that does not fit (eviction.py):
        the lowest Greedy-Dual priority unless the caller chose another policy."""
        self.versions = Versions(min_hot_bound=lambda fn: self.min_hot_bound(fn)[0])
        self.update_errors = self.versions.update_errors
        """fn id -> why its newest version could not be prepared (the old one still serves)."""
        self.log_sink = log_sink
        """Gets every line containers print, with its fn and call (the syslog forwarder)."""
        self.concurrency = Concurrency()
        """fn id -> its containers now, for ``fnagent.io/max-concurrency`` (concurrency.py)."""
        self.follow = FollowHub()
        """Every line the containers print, for the server's follow route."""
        self.output_dropped_bytes: dict[str, int] = {}
        """fn id -> bytes of output between calls dropped over FN_MAX_IDLE_LOG_BYTES_PER_SEC."""
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._waiting_for_room = 0
        """Launches (and one-off runs) waiting for room in the budget now: a pre-warm never
        takes room one of them waits for."""
        self._inflight = 0
        self._idle_calls = anyio.Event()
        self.socket_root = socket_root(config)
        os.makedirs(self.socket_root, exist_ok=True)

    def __repr__(self) -> str:
        return f"<Agent queues={len(self.versions)} in_flight={self._inflight} {self.admission!r}>"

    @property
    def queues(self) -> list[SlotQueue]:
        """The per-version queues now (a copy: adding or dropping one goes through the agent)."""
        return list(self.versions.queues)

    def serving_version(self, fn_id: str) -> str | None:
        """The version key ``fn_id``'s calls go to now; None when it has none."""
        return self.versions.serving_version(fn_id)

    def hot_fns(self) -> set[str]:
        """The fns whose calls an idle container (frozen or not) of this agent would take
        now."""
        return {queue.fn.id for queue in self.versions.queues if queue.idle and not queue.draining}

    def fn_apps(self) -> dict[str, str]:
        """The fns this agent has a queue of (a draining one too): fn id -> app id."""
        return {queue.fn.id: queue.fn.app_id for queue in self.versions.queues}

    # -- life ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closing = True
        # Calls can no longer start: once none is in flight (the event is set then), none will be.
        with anyio.move_on_after(self.stop_grace_s, shield=True):
            if self._inflight:
                await self._idle_calls.wait()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            # Every container (and its socket dir) is gone: so goes this instance's share.
            remove_root(self.socket_root)
            with contextlib.suppress(OSError):
                os.rmdir(self.config.iofs_path)  # only when no other instance uses it

    # -- calls --------------------------------------------------------------------------------

    async def submit(self, call: Call) -> CallResult:
        """Run ``call``; the result says what the caller gets (never raises for the call)."""
        started = self.clock.now()
        self._inflight += 1
        try:
            if self._closing or self._tg is None:
                raise ServerBusyError("the agent is shutting down")
            result = await self._submit(call)
        except FnAgentError as exc:
            result = error_result(call.id, exc)
        finally:
            self._inflight -= 1
            if self._closing and not self._inflight:
                self._idle_calls.set()
        result.duration_s = self.clock.now() - started
        if result.start is None:  # it never had a container: it waited all along
            result.queued_s = result.duration_s
        return result

    async def _submit(self, call: Call) -> CallResult:
        fn = call.fn
        if fn.format != FORMAT_HTTP_STREAM:
            raise InvalidInputError(
                f"format {fn.format!r} cannot be served hot; use `fnagent run` for cold functions"
            )
        self.admission.check_fits_ever(fn.memory_mb * MIB, self.cpus_of(fn))
        queue = self._route(fn)
        waiting_since = self.clock.now()
        # One call to the version's policy, however many containers it tries: each attempt
        # would otherwise count as a call, with an idle time of 0 s that never happened.
        self._keepalive(queue).before_call(waiting_since)
        for _ in range(MAX_ATTEMPTS):
            try:
                try:
                    container, start = await self._acquire(queue, call)
                except _Retry:
                    raise
                except BaseException:
                    self._after_call(queue)  # no container: only the pairing and the pre-warm
                    raise
                waited = self.clock.now() - waiting_since
                result = await self._dispatch(queue, container, call, start)
                # The launch may have begun before this call came (for another waiter).
                result.start_s = min(waited, container.start_s if start != "warm" else 0.0)
                result.queued_s = waited - result.start_s
                return result
            except _Retry:
                # Again on the version serving the fn now, which may be newer than this
                # call's: routing the call's own version would switch the fn back to it.
                retry = self.versions.serving(fn.id) or self._route(fn)
                if retry is not queue:  # another version's policy hears the call from now
                    self._after_call(queue)
                    queue = retry
                    self._keepalive(queue).before_call(self.clock.now())
        self._after_call(queue)
        raise ContainerGoneError("error receiving function response: containers kept failing")

    def _route(self, fn: Fn) -> SlotQueue:
        """The queue of the version that serves ``fn`` now; starts preparing a new version."""
        routed = self.versions.route(fn)
        if isinstance(routed, SlotQueue):
            return routed
        self._carry_out(routed)
        assert routed.queue is not None
        return routed.queue

    def _carry_out(self, moves: Moves | None) -> None:
        """Do what a routing decision left to do (versions.py has done the bookkeeping)."""
        if moves is None:
            return
        for queue in self.versions.queues:
            if queue.draining:
                self._cancel_prewarm(queue)
        for queue in moves.dropped:
            self._cancel_prewarm(queue)
        for container in moves.doom:
            self._doom(container)
        for waiter in moves.retry:
            waiter.answer(None)
        for waiter in moves.deleted:
            waiter.answer(FnDeletedError())
        if moves.prepare is not None:
            assert self._tg is not None
            self._tg.start_soon(self._prepare_version, moves.prepare)
        if moves.fill is not None:
            self._keep_minimum(moves.fill)

    async def _acquire(self, queue: SlotQueue, call: Call) -> tuple[HotContainer, str]:
        """A container for ``call``, busy and thawed, and how it was found."""
        while True:
            container = queue.take_idle(self.clock.now())
            start = "warm"
            if container is None:
                container = await self._wait_for_container(queue, call)
                start = "cold" if container.calls == 0 else "warm"
            # A freeze may be under way (its lock held, the pause not yet answered): wait for
            # it, or the call would go to a paused container.
            if not container.frozen and not container.lock.locked():
                return container, start
            try:
                async with container.lock:
                    if container.frozen and not container.doomed:
                        assert container.cookie is not None
                        thawing_since = self.clock.now()
                        await container.cookie.unfreeze()
                        container.frozen = False
                        container.start_s = self.clock.now() - thawing_since
                        start = "thawed"
                        container.notify()  # its life task waits on the removal timer: re-time
                if not container.doomed:
                    return container, start
                # The freeze we waited for failed and doomed it: find another.
                queue.release(container, self.clock.now())
            except FnAgentError as exc:
                logger.warning(
                    "thaw failed", extra={"container": container.name, "error": exc.message}
                )
                self._doom(container)
            except BaseException:
                # Cancelled (the caller went away) while waiting for the lock or the thaw: the
                # container is taken and may be half-thawed, and nobody else will release it.
                self._doom(container)
                raise

    async def _wait_for_container(self, queue: SlotQueue, call: Call) -> HotContainer:
        waiter = Waiter(background=call.background)
        queue.waiters.append(waiter)
        patience = self._patience(queue)
        if patience <= 0:
            self._launch_for(queue, call.extensions)
        try:
            if patience > 0:
                with anyio.move_on_after(min(patience, call.remaining_s())):
                    await waiter.ready.wait()
                if (
                    not waiter.ready.is_set()
                    and not queue.starting
                    and queue.needs_launch()
                    and cpus_have_room(self.host_idle())
                ):
                    if capped(1, self.concurrency.room(queue.fn)):
                        self._spawn(queue, call.extensions, background=call.background)
                    else:
                        queue.limit_refused = True
            if not waiter.ready.is_set():
                with anyio.fail_after(call.remaining_s()):
                    await waiter.ready.wait()
        except BaseException as exc:
            position = queue.waiting_ahead(waiter)
            if waiter.container is not None:
                # Handed a container just as we gave up (timeout or cancellation): give it back.
                queue.release(waiter.container, self.clock.now())
            else:
                waiter.ready.set()  # abandoned: release() and fail_one() skip it
                if waiter in queue.waiters:
                    queue.waiters.remove(waiter)
                self._carry_out(self.versions.settle(queue))
            if isinstance(exc, TimeoutError):
                room = self.concurrency.room(queue.fn)
                if limit_blocks(position=position, starting=queue.starting, room=room):
                    raise TooManyRequestsError(
                        retry_after_s=retry_after_s(
                            call_time_s=queue.call_time_s,
                            waiters=position,
                            limit=queue.fn.max_concurrency or 1,
                        )
                    ) from None
                if queue.admission_blocked:
                    raise ServerBusyError() from None
                raise FunctionTimeoutError("Timed out waiting for a container") from None
            raise
        if waiter.error is not None:
            raise waiter.error
        if waiter.container is None:  # its version drained away: route the call again
            raise _Retry()
        return waiter.container

    def _patience(self, queue: SlotQueue) -> float:
        """How long the queue's newest waiter waits for a busy container (launch.py)."""
        return launch_patience(
            patience_s=self.config.hot_launch_patience_ms / 1000,
            waiters=len(queue.waiters),
            serving=queue.serving,
            call_time_s=queue.call_time_s,
            launch_time_s=queue.launch_time_s,
        )

    async def _dispatch(
        self, queue: SlotQueue, container: HotContainer, call: Call, start: str
    ) -> CallResult:
        """One call on one busy container; afterwards the container is released or doomed."""
        started = self.clock.now()
        log = CappedLog(self.config.max_log_size_bytes)
        stats: list[Stat] = []
        router = container.router
        router.fn = call.fn  # the newest definition: an app's syslog_url may have changed
        router.begin(call.id, log)
        container.stats = stats
        container.calls += 1
        self.priorities.used(
            container,
            fn=queue.key,
            cost_s=max(queue.launch_time_s or 0.0, MIN_COLD_START_S),
            memory_mb=call.fn.memory_mb,
        )
        try:
            response = await self._exchange(container, call)
        except (_Retry, anyio.get_cancelled_exc_class()) as exc:
            # A cancelled call may still be running inside: never hand that container on.
            self._doom(container)
            router.end(call.id)
            container.stats = None
            if not isinstance(exc, _Retry):  # a retried call ends later (_submit)
                self._after_call(queue)
            queue.release(container, self.clock.now())
            raise
        except FnAgentError as exc:
            if not isinstance(exc, ResponseTooLargeError):
                self._doom(container)
            result = error_result(call.id, exc)
        else:
            result = self._result_from(container, call, response)
        answered = self.clock.now()
        container.stats = None
        unload_at = self._after_call(queue)
        # A container that frames both streams may take its next call while this one's
        # output still arrives: the frames say whose it is. Otherwise it waits for the settle.
        framed = router.frames
        if framed:
            queue.release(container, answered, unload_at=unload_at)
        try:
            await self._settle_output(router, call.id)
        finally:
            router.end(call.id)
            if not framed:
                queue.release(container, self.clock.now(), unload_at=unload_at)
        queue.observe_call(answered - started)
        result.exec_s = answered - started
        result.start = start
        result.logs = log.getvalue()
        result.stats = decimate(MAX_STAT_SAMPLES, stats)
        if result.logs:
            log_call(call.id, call.fn.id, call.fn.app_id, result.status, result.logs)
        return result

    async def _settle_output(self, router: OutputRouter, call_id: str) -> None:
        """Wait, at most LOG_SETTLE_S, for the call's output still on its way after its
        response (OutputRouter.needs_settle). A call on a container that frames, whose frame
        came already and which prints nothing else, does not wait. In real time, as the
        router's own: this waits for Docker's delivery, not for a policy of the agent."""
        since = time.monotonic()
        deadline = since + LOG_SETTLE_S
        while True:
            now = time.monotonic()
            if now >= deadline or not router.needs_settle(call_id, now, since):
                return
            with anyio.move_on_after(min(SETTLE_POLL_S, deadline - now)):
                await router.arrival().wait()

    async def _exchange(self, container: HotContainer, call: Call) -> Response:
        """POST /call and map every failure to the status table's error."""
        if container.exited.is_set():
            raise _Retry()
        headers = request_headers(call)
        connection = container.connection
        limit = self.config.max_response_size_bytes
        try:
            if connection.connected:
                # The hot path: the call's deadline is one timer on the event loop, not a
                # cancel scope (which costs a call more than the rest of this function).
                return await connection.request(
                    "POST",
                    "/call",
                    headers,
                    call.request.body,
                    max_body_bytes=limit,
                    timeout_s=call.remaining_s(),
                )
            with anyio.fail_after(call.remaining_s()):  # opening the connection too
                return await connection.request(
                    "POST", "/call", headers, call.request.body, max_body_bytes=limit
                )
        except (TimeoutError, RequestTimeout):
            raise FunctionTimeoutError("Timed out") from None
        except BodyTooLarge:
            raise ResponseTooLargeError() from None
        except ProtocolError as exc:
            raise InvalidResponseError(f"invalid function response: {exc}") from None
        except ConnectFailed:
            raise _Retry() from None
        except (OSError, asyncio.IncompleteReadError):
            raise await self._receive_error(container) from None

    async def _receive_error(self, container: HotContainer) -> FnAgentError:
        """The error for a connection that broke mid-call: OOM when the container says so."""
        wait_s = EXIT_REPORT_WAIT_S
        if not container.exited.is_set() and await container.connection.accepts():
            # Still listening: most likely alive, so no exit report is coming; but a process
            # being killed may still accept for a moment.
            wait_s = ALIVE_EXIT_REPORT_WAIT_S
        await self.clock.wait(container.exited, wait_s)
        ended = container.exit_result
        if ended is not None and isinstance(ended.error, OutOfMemoryError):
            return OutOfMemoryError(ended.error.message)
        if ended is not None and ended.status is RunStatus.KILLED and ended.error is not None:
            return ReceiveError(f"error receiving function response: {ended.error.message}")
        return ReceiveError()

    def _result_from(self, container: HotContainer, call: Call, response: Response) -> CallResult:
        error = status_error(response.status)
        if error is not None:
            if response.status not in (502, 504):  # the container broke the contract
                self._doom(container)
            return error_result(call.id, error)
        try:
            status, headers = response_headers(response, trigger=call.trigger)
        except InvalidResponseError as exc:
            self._doom(container)
            return error_result(call.id, exc)
        # 204 and 304 have no body (RFC 9110 §15.3.5, §15.4.5): one a function sends is dropped.
        body = b"" if status in (204, 304) else response.body
        return CallResult(call_id=call.id, status=status, headers=headers, body=body)

    def _doom(self, container: HotContainer) -> None:
        container.doomed = True
        container.notify()

    # -- keep-alive ---------------------------------------------------------------------------

    def _keepalive(self, queue: SlotQueue) -> KeepAlivePolicy:
        """The version's policy, made at its first call; its cold start is the queue's latest
        launch estimate."""
        policy = queue.keepalive
        if policy is None:
            fn = queue.fn
            policy = queue.keepalive = KeepAlivePolicy(
                self.config.keepalive,
                fallback_s=float(fn.idle_timeout_s),
                bound_s=idle_timeout_bound(fn),
                memory_mb=float(fn.memory_mb),
            )
        policy.cold_start_s = queue.launch_time_s or 0.0
        return policy

    def _after_call(self, queue: SlotQueue) -> float:
        """A call of ``queue``'s version ended now: ask the policy, plan (or cancel) the
        pre-warm, and return when the container that becomes idle is to be removed."""
        now = self.clock.now()
        plan = self._keepalive(queue).after_call(now)
        queue.plan, queue.planned_at = plan, now
        self._plan_prewarm(queue, plan)
        return plan.unload_at

    def _plan_prewarm(self, queue: SlotQueue, plan: Plan) -> None:
        """A later plan replaces an earlier one's pre-warm: retime the waiting one, start one,
        or cancel it."""
        current = queue.prewarm
        if plan.prewarm_at is None or plan.prewarm_unload_at is None or queue.draining:
            self._cancel_prewarm(queue)
            return
        if current is not None:
            current.at, current.unload_at = plan.prewarm_at, plan.prewarm_unload_at
            current.notify()
            return
        if self._closing or self._tg is None:
            return
        prewarm = Prewarm(at=plan.prewarm_at, unload_at=plan.prewarm_unload_at)
        queue.prewarm = prewarm
        self._tg.start_soon(self._prewarm_when_due, queue, prewarm)

    def _cancel_prewarm(self, queue: SlotQueue) -> None:
        prewarm, queue.prewarm = queue.prewarm, None
        if prewarm is not None:
            prewarm.cancelled = True
            prewarm.notify()

    async def _prewarm_when_due(self, queue: SlotQueue, prewarm: Prewarm) -> None:
        """Wait (on the agent's clock, retimed by later plans) until the pre-warm is due, then
        launch it unless the version has an idle container (which is then kept until the
        pre-warm's unload time instead) or a launch under way, or the fn's max-concurrency has
        no room. A launch that fails is logged and forgotten."""
        while not prewarm.cancelled:
            delay = prewarm.at - self.clock.now()
            if delay <= 0:
                break
            await self.clock.wait(prewarm.changed, delay)
        if queue.prewarm is prewarm:
            queue.prewarm = None
        if prewarm.cancelled or self._closing or queue.draining:
            return
        kept = queue.keep_idle_until(prewarm.unload_at)
        if kept is not None:
            kept.notify()  # its life task re-times the removal
        if queue.has_idle() or queue.starting:
            return
        if not capped(1, self.concurrency.room(queue.fn)):
            logger.info("pre-warm skipped: max-concurrency", extra={"fn_id": queue.fn.id})
            return
        self._spawn(queue, prewarm_unload_at=prewarm.unload_at)

    def keepalive(self, fn_id: str) -> tuple[list[KeepAliveView], PrewarmView | None]:
        """``fn_id``'s keep-alive per version it has, and its next planned pre-warm."""
        now = self.clock.now()
        serving = self.versions.serving_version(fn_id)
        views: list[KeepAliveView] = []
        prewarm: PrewarmView | None = None
        for queue in self.versions.queues:
            if queue.fn.id != fn_id:
                continue
            policy, plan = queue.keepalive, queue.plan
            views.append(
                KeepAliveView(
                    version=queue.key,
                    serving=queue.key == serving,
                    policy=self.config.keepalive.policy,
                    learned=plan is not None and plan.learned,
                    representative=policy is not None and policy.representative(),
                    idle_samples=0 if policy is None else policy.histogram.samples,
                    keepalive_s=(
                        float(queue.fn.idle_timeout_s)
                        if plan is None
                        else plan.unload_at - queue.planned_at
                    ),
                    unload_in_s=None if plan is None else plan.unload_at - now,
                )
            )
            planned = queue.prewarm
            if planned is not None and (prewarm is None or planned.at - now < prewarm.in_s):
                prewarm = PrewarmView(
                    version=queue.key,
                    in_s=planned.at - now,
                    keep_s=planned.unload_at - planned.at,
                )
        return views, prewarm

    # -- containers ---------------------------------------------------------------------------

    def _launch_for(
        self,
        queue: SlotQueue,
        extensions: dict[str, str] | None = None,
        *,
        use_history: bool = True,
        background_only: bool = False,
    ) -> None:
        """Start the launches the waiters need (launch.launches_for_waiters); with
        ``background_only``, those of the background waiters only. ``extensions`` (the
        launching call's) reach the driver, which may change the container from them."""
        background = queue.background_waiters
        # A held error answers a waiter unless a starting launch serves it: none for it.
        waiting = len(queue.waiters) - len(queue.held_failures)
        if background_only:
            waiting = min(waiting, background)
        count = launches_for_waiters(
            waiters=waiting,
            starting=queue.starting,
            serving=queue.serving,
            draining=queue.draining,
            call_time_s=queue.call_time_s,
            launch_time_s=queue.launch_time_s,
            use_history=use_history,
            cpus_full=bool(queue.serving) and not cpus_have_room(self.host_idle()),
            background=background,
        )
        launches = capped(count, self.concurrency.room(queue.fn))
        if launches < count:
            queue.limit_refused = True
        # With no caller waiting, nobody times these starts: the driver may make them cheaper.
        for_background = not queue.callers_waiting
        for _ in range(launches):
            self._spawn(queue, extensions, background=for_background)

    def _spawn(
        self,
        queue: SlotQueue,
        extensions: dict[str, str] | None = None,
        *,
        prewarm_unload_at: float | None = None,
        background: bool = False,
    ) -> None:
        """Launch a container for ``queue``; a pre-warm (``prewarm_unload_at`` set) is idle
        until then once ready. ``background``: launched for detached calls only, nobody
        waiting for its start (ContainerTask.background)."""
        assert self._tg is not None
        name = f"{queue.fn.name}-{new_id().lower()}"
        socket_dir = SocketDir.under(self.socket_root)
        fields = {"fn_id": queue.fn.id, "app_id": queue.fn.app_id}
        container = HotContainer(
            name=name,
            fn=queue.fn,
            socket_dir=socket_dir,
            router=OutputRouter(
                name,
                fields,
                rate_bytes_per_s=self.config.max_idle_log_bytes_per_s,
                on_drop=functools.partial(self._output_dropped, queue.fn.id),
                sink=self._publish_line,
                sink_wants=self._lines_wanted,
            ),
            connection=UnixHTTPConnection(socket_dir.listener),
            prewarm_unload_at=prewarm_unload_at,
            background=background,
        )
        container.router.fn = queue.fn
        queue.launching.add(container)
        self.concurrency.added(queue.fn.id)
        self._tg.start_soon(
            self._container_life,
            queue,
            container,
            dict(extensions or {}),
            name=f"container {name}",
        )

    def _publish_line(self, line: LogLine) -> None:
        """Every line a container prints: to the follow route's subscribers, and to the
        ``log_sink`` (an app's syslog) when it wants the fn's lines."""
        self.follow.publish(line)
        sink = self.log_sink
        if sink is not None and line.fn is not None and sink.wants(line.fn):
            sink(line)

    def _lines_wanted(self, fn_id: str, fn: Fn | None) -> bool:
        """Whether a line of ``fn_id`` goes anywhere (``_publish_line``): a follower, or the
        ``log_sink`` wanting the fn's lines. Asked per line before the line is built."""
        if self.follow.following(fn_id):
            return True
        sink = self.log_sink
        return sink is not None and fn is not None and sink.wants(fn)

    def _output_dropped(self, fn_id: str, size: int) -> None:
        self.output_dropped_bytes[fn_id] = self.output_dropped_bytes.get(fn_id, 0) + size

    async def _container_life(
        self, queue: SlotQueue, container: HotContainer, extensions: dict[str, str]
    ) -> None:
        """Launch, serve, idle, freeze and remove one container; always cleans up."""
        fn = container.fn
        memory, cpus = fn.memory_mb * MIB, self.cpus_of(fn)
        prewarm = container.prewarm_unload_at is not None
        starting, reserved = True, False
        failure: FnAgentError | None = None
        try:
            if not prewarm:
                await self._admit(queue, memory, cpus)
            elif self._waiting_for_room or not self.admission.try_reserve(memory, cpus):
                # Speculative: a pre-warm takes free room only, never evicts, and never room
                # a launch waits for (the call behind it would wait for the pre-warm's start,
                # then evict it).
                logger.info("pre-warm skipped: no room", extra={"fn_id": fn.id})
                return
            reserved = True
            direct = self.config.log_pipe == LOG_PIPE_DIRECT
            container.socket_dir.make(self.config.iofs_size_bytes, output=direct)
            task = ContainerTask(
                id=container.name,
                image=fn.image,
                env_vars=fn_environment(fn, listener_address(self.driver.iofs_mount)),
                logger=TaskLogger(stdout=container.router.stdout, stderr=container.router.stderr),
                memory_bytes=memory,
                cpus_mcpus=cpus,
                uds_path=container.socket_dir.shared,
                output_dir=container.socket_dir.out if direct else None,
                secrets={secret.name: secret.value for secret in fn.secrets},
                labels={FN_LABEL: fn.id, APP_LABEL: fn.app_id},
                extensions=extensions,
                background=container.background,
            )
            launched_at = self.clock.now()
            async with await self.driver.create_cookie(task) as cookie:
                container.cookie = cookie
                await self.driver.prepare_cookie(cookie)
                waiter = await cookie.run()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_exit, container, waiter)
                    try:
                        await self._await_ready(container)
                    except FnAgentError as exc:
                        # Raised outside the task group, which would wrap it in a group.
                        failure = exc
                    else:
                        container.start_s = self.clock.now() - launched_at
                        queue.observe_launch(container.start_s)
                        starting = False
                        queue.launch_ready(container)
                        queue.containers.add(container)
                        queue.release(
                            container, self.clock.now(), unload_at=container.prewarm_unload_at
                        )
                        self._keep_minimum(queue)
                        self._launch_next_for_background(queue)
                        await self._idle_policy(queue, container)
                    tg.cancel_scope.cancel()
                if failure is not None:
                    raise failure
        except FnAgentError as exc:
            failure = exc
            if starting and not prewarm:
                queue.launch_failures += 1
            logger.warning(
                "pre-warm failed" if prewarm and starting else "container failed",
                extra={"container": container.name, "fn_id": fn.id, "error": exc.message},
            )
        finally:
            if starting:
                # Scaling from zero failed: a waiter learns why (launch_ended), unless another
                # container serves the waiters or may still start in time for them. A failed
                # pre-warm is nobody's error: its waiters get a launch of their own.
                queue.launch_ended(container, None if prewarm else failure)
            queue.discard(container)
            self.priorities.removed(container)
            container.connection.close()
            if reserved:
                self.admission.release(memory, cpus)
            container.socket_dir.remove()
            self.concurrency.removed(fn.id)
            self._after_container_gone(queue, launched=not starting)

    def _launch_next_for_background(self, queue: SlotQueue) -> None:
        """A launch is ready. Background waiters launch one at a time (launch.py): the next of
        theirs starts now where a waiter would launch at once (slow calls, or nothing known
        yet); short calls' waiters take the busy containers as they free up, as waiting
        callers do. Waiting callers had their launches when they came."""
        if queue.background_waiters and self._patience(queue) <= 0:
            self._launch_for(queue, background_only=True)

    def _after_container_gone(self, queue: SlotQueue, *, launched: bool) -> None:
        if self._closing:
            return
        if queue.draining:
            self._carry_out(self.versions.settle(queue))
            self._limit_freed(queue.fn.id)
            return
        # With none left serving, scale from zero (after a failed launch, a launch per waiter:
        # each failure answers one). With containers serving, they serve the waiters, whose
        # patience decides on more: replacing every container removed would start a burst
        # of launches, e.g. after callers went away mid-call under load and doomed them all.
        if not queue.serving:
            self._launch_for(queue, use_history=launched)
        if launched or not queue.launch_failures:
            self._keep_minimum(queue)
        elif not queue.relaunch_pending and self._tg is not None:
            # Relaunching at once after a failed launch would spin while the daemon is down.
            queue.relaunch_pending = True
            self._tg.start_soon(self._keep_minimum_later, queue, backoff_s(queue.launch_failures))
        self._limit_freed(queue.fn.id)

    def _limit_freed(self, fn_id: str) -> None:
        """A container of ``fn_id`` is gone: launches its max-concurrency refused (for the
        version serving it now, which may not be the gone container's) may start now."""
        queue = self.versions.serving(fn_id)
        if queue is None or not queue.limit_refused:
            return
        queue.limit_refused = False
        self._launch_for(queue)
        if not queue.launch_failures:  # after a failed launch the minimum backs off
            self._keep_minimum(queue)

    async def _keep_minimum_later(self, queue: SlotQueue, delay_s: float) -> None:
        await self.clock.sleep(delay_s)
        queue.relaunch_pending = False
        self._keep_minimum(queue)

    async def _watch_exit(self, container: HotContainer, waiter: WaitResult) -> None:
        container.exit_result = await waiter.wait()
        container.exited.set()
        self._doom(container)

    async def _await_ready(self, container: HotContainer) -> None:
        """Wait for the container's listener. StartTimeoutError (504) or StartFailedError
        (502) say what happened and carry the container's last stderr lines."""
        timeout_s = (container.fn.init_timeout_ms or self.config.hot_start_timeout_ms) / 1000
        socket_dir = container.socket_dir
        assert container.cookie is not None
        try:
            ready = await listen_within(
                socket_dir.shared,
                socket_dir.pin,
                gave_up=container.exited.is_set,
                timeout_s=timeout_s,
                cpu_wait_s=container.cookie.cpu_wait_s,
                name=container.name,
            )
        except TimeoutError:
            raise StartTimeoutError(
                f"Container initialization timed out after {timeout_s:g} s, please ensure you "
                f"are using the latest fdk and check the logs: {CONTRACT_HINT}",
                stderr=container.router.stderr_tail(),
            ) from None
        if not ready:
            # The exit is reported once the container's output has all been read.
            stderr = container.router.stderr_tail()
            logger.warning(
                "container exited before it was ready",
                extra={"container": container.name, "fn_id": container.fn.id, "stderr": stderr},
            )
            raise StartFailedError(
                f"Container failed to initialize: {exited_how(container.exit_result)} "
                f"before listening; {CONTRACT_HINT}",
                stderr=stderr,
            )

    async def _idle_policy(self, queue: SlotQueue, container: HotContainer) -> None:
        """Freeze after freeze_idle_ms idle; remove at the keep-alive plan's time (the fn's
        idle_timeout when none), unless the queue's minimum keeps it; return when the
        container is to be removed."""
        freeze_after = self.config.freeze_idle_ms / 1000
        idle_timeout = float(container.fn.idle_timeout_s)
        sampled_at = 0.0
        while not container.doomed:
            changed = container.changed
            if container.state is not State.IDLE:
                # Busy: going idle wakes this task (watching_busy). A call that has run for the
                # interval gets a resource sample, then one per interval; a shorter one costs
                # the daemon nothing.
                due = max(container.busy_since, sampled_at) + STATS_INTERVAL_S
                container.watching_busy = True
                try:
                    if await self.clock.wait(changed, due - self.clock.now()):
                        continue
                finally:
                    container.watching_busy = False
                now = self.clock.now()
                if container.state is State.BUSY and now - container.busy_since >= STATS_INTERVAL_S:
                    await self._sample(container)
                    sampled_at = now
                continue
            now = self.clock.now()
            idle_for = now - container.idle_since
            unload_at = container.unload_at
            remove_in = (
                container.idle_since + idle_timeout if unload_at is None else unload_at
            ) - now
            if remove_in <= 0 and len(queue.containers) > queue.min_hot:
                queue.discard(container)
                return
            if not container.frozen and not container.freeze_failed:
                if idle_for < freeze_after:
                    wake_in = freeze_after - idle_for
                    await self.clock.wait(
                        changed, wake_in if remove_in <= 0 else min(wake_in, remove_in)
                    )
                else:
                    await self._freeze(container)
                continue
            if remove_in <= 0:  # the minimum keeps it
                await changed.wait()
                continue
            await self.clock.wait(changed, remove_in)

    async def _sample(self, container: HotContainer) -> None:
        stats = container.stats
        if stats is None or container.cookie is None:
            return
        try:
            stat = await container.cookie.sample()
        except FnAgentError:
            return
        if stat is not None:
            stats.append(stat)

    async def _freeze(self, container: HotContainer) -> None:
        async with container.lock:
            if container.state is not State.IDLE or container.doomed:
                return
            assert container.cookie is not None
            try:
                await container.cookie.freeze()
                container.frozen = True
            except FnAgentError as exc:
                # runc undoes a freeze it could not finish (seen under load: "unable to
                # freeze"): the container still serves; it just stays unfrozen until removed.
                logger.warning(
                    "freeze failed; the container stays unfrozen",
                    extra={"container": container.name, "error": exc.message},
                )
                container.freeze_failed = True

    async def _admit(self, queue: SlotQueue, memory: int, cpus: int) -> None:
        """Reserve room for a launch: evict idle containers of other functions when needed;
        wait while someone still waits for this queue; else the host is too busy."""
        while not self.admission.try_reserve(memory, cpus):
            if self._evict_one(queue):
                continue_waiting = 1.0
            else:
                queue.admission_blocked = True
                if not queue.waiters and queue.min_hot <= len(queue.containers):
                    raise ServerBusyError()
                continue_waiting = 0.5
            await self._wait_for_room(continue_waiting)
        queue.admission_blocked = False

    @contextlib.asynccontextmanager
    async def reserved(self, memory_bytes: int, cpu_mcpus: int) -> AsyncIterator[None]:
        """Hold room in the budget for a container that is not one of the agent's own (a
        one-off run handed to this agent), evicting idle containers when needed.
        ServerBusyError when nothing idle is left to evict; MemoryNeverFitsError when it
        could never fit."""
        self.admission.check_fits_ever(memory_bytes, cpu_mcpus)
        while not self.admission.try_reserve(memory_bytes, cpu_mcpus):
            if not self._evict_one(None):
                raise ServerBusyError()
            await self._wait_for_room(1.0)
        try:
            yield
        finally:
            self.admission.release(memory_bytes, cpu_mcpus)

    async def _wait_for_room(self, timeout_s: float) -> None:
        """Wait for the next release, at most ``timeout_s``, counted in ``_waiting_for_room``."""
        self._waiting_for_room += 1
        try:
            await self.clock.wait(self.admission.released, timeout_s)
        finally:
            self._waiting_for_room -= 1

    def _evict_one(self, keep: SlotQueue | None) -> bool:
        """Doom the idle container of another queue that ``self.evict`` chooses."""
        victim = self.evict(self.versions.queues, keep)
        if victim is None:
            return False
        for q in self.versions.queues:
            if victim in q.idle:
                q.idle.remove(victim)
        self.priorities.evicted(victim)
        self._doom(victim)
        return True

    # -- versions and scale -------------------------------------------------------------------

    async def _prepare_version(self, fn: Fn) -> None:
        """Pull the new version's image while the old one serves, then switch and drain."""
        try:
            with anyio.fail_after(self.config.hot_pull_timeout_ms / 1000):
                await self.driver.ensure_image(fn.image)
        except (FnAgentError, TimeoutError) as exc:
            message = exc.message if isinstance(exc, FnAgentError) else "timed out pulling"
            self.versions.prepare_failed(fn, message)
            logger.warning(
                "update failed; the previous version keeps serving",
                extra={"fn_id": fn.id, "image": fn.image, "error": message},
            )
            await self.clock.sleep(UPDATE_RETRY_S)
            self.versions.may_retry(fn)
            return
        self._carry_out(self.versions.prepared(fn))

    async def update(self, fn: Fn) -> None:
        """Prepare ``fn``'s new version now (a server calls this when a fn or its app is
        changed). What changes no container (the app's syslog_url) reaches the fn's
        containers at once."""
        for queue in self.versions.queues:
            if queue.fn.id != fn.id:
                continue
            if queue.key == fn.version_key:
                queue.fn = fn  # the same containers: later launches get the newer definition
            for container in queue.containers | queue.launching:
                container.router.fn = fn
        if self.versions.serving_version(fn.id) not in (None, fn.version_key):
            self._route(fn)

    def scale(self, fn: Fn, min_hot: int) -> None:
        """Keep at least ``min_hot`` containers of ``fn`` launched (idle ones frozen); 0 lets
        it scale to zero. Returns at once: launches start a few at a time
        (MIN_HOT_LAUNCHES_AT_ONCE), each ready one starting the next. Raises
        InvalidInputError (400) beyond ``min_hot_bound``."""
        if min_hot < 0:
            raise InvalidInputError("the minimum hot count cannot be negative")
        bound, why = self.min_hot_bound(fn)
        if min_hot > bound:
            raise InvalidInputError(f"min_hot {min_hot} is too large: at most {bound} ({why})")
        queue = self._route(fn)
        queue.min_hot = min_hot
        for container in queue.containers:
            container.notify()  # idle ones re-check whether the minimum still keeps them
        self._keep_minimum(queue)

    def cpus_of(self, fn: Fn) -> int:
        """The milli-CPUs each of ``fn``'s containers is limited to and reserves: its own, else
        FN_DEFAULT_CPUS (0: no limit, nothing reserved)."""
        return fn.cpus_mcpus or self.config.default_cpu_mcpus

    def min_hot_bound(self, fn: Fn) -> tuple[int, str]:
        """The largest minimum hot count ``fn`` may have, and what sets it: FN_MAX_MIN_HOT, or
        fewer when that many of the fn's containers could never fit the memory or CPU budget
        together."""
        return launch_min_hot_bound(
            memory_mb=fn.memory_mb,
            cpus_mcpus=self.cpus_of(fn),
            budget=self.admission.budget,
            max_min_hot=self.config.max_min_hot,
            max_concurrency=fn.max_concurrency,
        )

    def _keep_minimum(self, queue: SlotQueue) -> None:
        """Start launches towards the minimum (launch.launches_towards_minimum)."""
        if self._closing or queue.draining:
            return
        count = launches_towards_minimum(
            min_hot=queue.min_hot, launched=len(queue.containers), starting=queue.starting
        )
        launches = capped(count, self.concurrency.room(queue.fn))
        if launches < count:
            queue.limit_refused = True
        for _ in range(launches):
            self._spawn(queue)

    def containers(self, fn_id: str | None = None) -> dict[str, int]:
        """Counts of ``fn_id``'s containers (every fn's when None): running (busy or idle),
        frozen, starting."""
        counts = {"running": 0, "frozen": 0, "starting": 0}
        for queue in self.versions.queues:
            if fn_id is not None and queue.fn.id != fn_id:
                continue
            counts["starting"] += queue.starting
            for container in queue.containers:
                counts["frozen" if container.frozen else "running"] += 1
        return counts

    def containers_by_fn(self) -> dict[str, dict[str, int]]:
        """``containers`` for every fn that has a container or a launch under way, in one
        pass: {fn_id: {"running": ..., "frozen": ..., "starting": ...}}."""
        by_fn: dict[str, dict[str, int]] = {}
        for queue in self.versions.queues:
            if not queue.containers and not queue.starting:
                continue
            counts = by_fn.setdefault(queue.fn.id, {"running": 0, "frozen": 0, "starting": 0})
            counts["starting"] += queue.starting
            for container in queue.containers:
                counts["frozen" if container.frozen else "running"] += 1
        return by_fn

    def min_hot(self, fn_id: str) -> int:
        queue = self.versions.serving(fn_id)
        return queue.min_hot if queue is not None else 0

    def forget(self, fn_id: str) -> None:
        """Drain every container of ``fn_id`` (its fn or app was deleted): idle ones are
        removed now; calls in flight finish, as after an update, then their containers go."""
        self._carry_out(self.versions.forget(fn_id))


def idle_timeout_bound(fn: Fn) -> float | None:
    """The longest a container of ``fn`` may stay idle: an idle_timeout the user set. Fn's
    default (30 s) bounds nothing: the store keeps no difference between a default and a
    value given, so only another value counts as set."""
    if fn.idle_timeout_s == DEFAULT_IDLE_TIMEOUT_S:
        return None
    return float(fn.idle_timeout_s)


def socket_root(config: AgentConfig) -> str:
    """This agent's share of FN_IOFS_PATH: one directory per instance, so a restarted agent
    can remove what a killed run left without touching another agent's sockets."""
    # A short digest, not the id itself: a unix socket's path must stay under 108 bytes.
    digest = hashlib.sha256(config.instance_id.encode()).hexdigest()[:8]
    return os.path.join(config.iofs_path, digest)


def error_result(call_id: str, error: FnAgentError) -> CallResult:
    """A failed call's result: the error's status and the error itself (the server renders
    it: fnagent/server/invoke.py). A container that failed to start leaves its last stderr
    lines as the call's log."""
    logs = b""
    if isinstance(error, StartFailedError | StartTimeoutError):
        logs = error.stderr.encode("utf-8", "replace")
    return CallResult(call_id=call_id, status=error.status, error=error, logs=logs)


def exited_how(ended: RunResult | None) -> str:
    """How a container ended, for a message: "exited with code 7", or the driver's words."""
    if ended is None:
        return "exited"
    if ended.error is not None and ended.status is not RunStatus.ERROR:
        return ended.error.message  # killed, out of memory, timed out, lost
    if ended.exit_code is not None:
        return f"exited with code {ended.exit_code}"
    return ended.error.message if ended.error is not None else "exited"
