"""Hot containers and the queues that hold them: bookkeeping only, no I/O (docs/design.md).

A ``SlotQueue`` holds the containers of one function version (keyed by ``Fn.version_key``): a
LIFO stack of idle ones, the busy ones, how many are starting, and the calls waiting. A call
takes the most recently used idle container; with none, it waits, and a launch starts only
while waiters outnumber starting containers, so concurrent first calls never start more
containers than there are calls. A released or newly ready container goes straight to the
oldest waiter.

Each queue also holds its version's keep-alive (``fnagent.keepalive``): the policy, its latest
plan, and the pre-warm that plan asked for (``Prewarm``), which the agent carries out.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import anyio

from drivers.base import Cookie, RunResult
from drivers.stats import Stat
from fnagent.agent.calllogs import OutputRouter
from fnagent.agent.httpclient import UnixHTTPConnection
from fnagent.agent.sockdir import SocketDir
from fnagent.errors import FnAgentError
from fnagent.keepalive import KeepAlivePolicy, Plan
from fnagent.models import Fn


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"


@dataclass(eq=False, kw_only=True)
class HotContainer:
    """One http-stream container and what the agent knows of it."""

    name: str
    fn: Fn
    socket_dir: SocketDir
    router: OutputRouter
    connection: UnixHTTPConnection
    state: State = State.STARTING
    frozen: bool = False
    freeze_failed: bool = False
    """A freeze was refused once: the container is left running until it is removed."""
    doomed: bool = False
    """Marked for removal: its life task removes it as soon as it notices."""
    idle_since: float = 0.0
    busy_since: float = 0.0
    """The agent clock's time when its current call took it (resource samples are timed from
    it)."""
    calls: int = 0
    start_s: float = 0.0
    """How long its launch took, then how long its latest thaw took (the call that found it
    cold or thawed reports it)."""
    cookie: Cookie | None = None
    exit_result: RunResult | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    """Held across freeze and thaw, so a call never meets a half-frozen container."""
    changed: anyio.Event = field(default_factory=anyio.Event)
    watching_busy: bool = False
    """The life task waits for this busy container to go idle (to time its freeze)."""
    stats: list[Stat] | None = None
    """Where resource samples go while a call runs; None between calls."""
    unload_at: float | None = None
    """While idle: when to remove it (the keep-alive plan's); None: its fn's idle_timeout after
    it went idle."""
    prewarm_unload_at: float | None = None
    """Set for a pre-warm launch: its ``unload_at`` when it is ready."""
    background: bool = False
    """Launched for background waiters only (Waiter.background): nobody waits for its start."""

    def notify(self) -> None:
        """Wake the container's life task: it was doomed, or what keeps it changed.

        Taking an idle container and handing a busy one on do not wake it (that would cost
        a wake-up per call): it re-reads the state when its timer ends. Going idle wakes it
        only while it waits for that (``watching_busy``)."""
        event, self.changed = self.changed, anyio.Event()
        event.set()


@dataclass(eq=False, kw_only=True)
class Prewarm:
    """A planned pre-warm: start a container of the queue's version at ``at`` (unless one is
    idle then) and remove it at ``unload_at`` unless a call takes it. Retimed or cancelled by
    later plans; ``notify`` wakes the task that waits for it."""

    at: float
    unload_at: float
    cancelled: bool = False
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        event, self.changed = self.changed, anyio.Event()
        event.set()


class Waiter:
    """A call waiting for a container: it gets one, or an error; neither means its queue
    drained away and the call is to be routed again. A ``background`` one has no caller
    waiting for it (Call.background)."""

    def __init__(self, *, background: bool = False) -> None:
        self.background = background
        self.ready = anyio.Event()
        self.container: HotContainer | None = None
        self.error: FnAgentError | None = None

    def answer(self, error: FnAgentError | None) -> None:
        """Wake the call without a container: with ``error``, or (None) to route it again."""
        if not self.ready.is_set():
            self.error = error
            self.ready.set()


class SlotQueue:
    """The containers of one function version."""

    def __init__(self, fn: Fn) -> None:
        self.fn = fn
        self.key = fn.version_key
        self.idle: list[HotContainer] = []
        self.containers: set[HotContainer] = set()
        self.launching: set[HotContainer] = set()
        """Launches under way (admitted or not), not yet ready."""
        self.held_failures: list[tuple[FnAgentError, set[HotContainer]]] = []
        """Errors of failed launches not yet given to a waiter, each with the launches that were
        starting when it failed and have not ended yet (``launch_ended``)."""
        self.waiters: deque[Waiter] = deque()
        self.min_hot = 0
        self.draining = False
        self.admission_blocked = False
        self.call_time_s: float | None = None
        """How long a call holds a container: the smaller of the last call's time and the
        moving average, so one slow first call does not look like a slow function."""
        self._call_average_s: float | None = None
        self.launch_time_s: float | None = None
        """Moving average of how long a launch takes to be ready."""
        self.launch_failures = 0
        """Launches that failed in a row; the minimum hot count backs off by it."""
        self.relaunch_pending = False
        """A delayed relaunch for the minimum hot count is scheduled."""
        self.limit_refused = False
        """The fn's max-concurrency refused a launch this queue wanted: when one of the fn's
        containers goes, the agent launches again for the waiters and the minimum."""
        self.keepalive: KeepAlivePolicy | None = None
        """The version's keep-alive policy (made by the agent at its first call)."""
        self.plan: Plan | None = None
        self.planned_at = 0.0
        """The latest plan, and when its call ended."""
        self.prewarm: Prewarm | None = None
        """The pre-warm planned and not yet due (or cancelled)."""

    def __repr__(self) -> str:
        busy = sum(1 for c in self.containers if c.state is State.BUSY)
        frozen = sum(1 for c in self.idle if c.frozen)
        return (
            f"<SlotQueue {self.fn.name} idle={len(self.idle)} frozen={frozen} busy={busy} "
            f"starting={self.starting} held={len(self.held_failures)} waiters={len(self.waiters)}>"
        )

    @property
    def starting(self) -> int:
        return len(self.launching)

    def observe_call(self, seconds: float) -> None:
        self._call_average_s = _average(self._call_average_s, seconds)
        self.call_time_s = min(self._call_average_s, seconds)

    def observe_launch(self, seconds: float) -> None:
        self.launch_time_s = _average(self.launch_time_s, seconds)

    def take_idle(self, now: float) -> HotContainer | None:
        """The most recently used idle container, now busy (since ``now``); None when there is
        none."""
        while self.idle:
            container = self.idle.pop()
            if container.doomed:
                continue
            container.state = State.BUSY
            container.busy_since = now
            return container
        return None

    @property
    def serving(self) -> int:
        """Containers that can take calls: launched, not doomed (a doomed one is on its way
        out, e.g. after its caller went away mid-call)."""
        return sum(1 for c in self.containers if not c.doomed)

    @property
    def callers_waiting(self) -> int:
        """Waiters still waiting with a caller behind them (not Waiter.background)."""
        return sum(1 for w in self.waiters if not w.background and not w.ready.is_set())

    @property
    def background_waiters(self) -> int:
        """Waiters still waiting with no caller behind them (Waiter.background)."""
        return sum(1 for w in self.waiters if w.background and not w.ready.is_set())

    def needs_launch(self) -> bool:
        return len(self.waiters) > self.starting and not self.draining

    def release(
        self, container: HotContainer, now: float, *, unload_at: float | None = None
    ) -> None:
        """A container finished a call or became ready: hand it to the oldest waiter, else
        make it idle (both since ``now``) until ``unload_at`` (None: its fn's idle_timeout). A
        doomed container is only woken, so its life task removes it."""
        if container.doomed or container.state is State.GONE:
            container.notify()
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if waiter.ready.is_set():
                continue
            container.state = State.BUSY
            container.busy_since = now
            waiter.container = container
            waiter.ready.set()
            return
        if self.draining:
            container.doomed = True
            container.notify()
            return
        container.state = State.IDLE
        container.idle_since = now
        container.unload_at = unload_at
        self.idle.append(container)
        if container.watching_busy:
            container.notify()

    def stranded(self) -> bool:
        """Draining, with calls waiting that nothing here can serve any more: no container
        serving, none starting (e.g. the last one died mid-call)."""
        return self.draining and bool(self.waiters) and not self.serving and not self.starting

    def waiting_ahead(self, waiter: Waiter) -> int:
        """How many calls still waiting came before ``waiter`` (all of them when it is not
        queued)."""
        ahead = 0
        for other in self.waiters:
            if other is waiter:
                break
            if not other.ready.is_set():
                ahead += 1
        return ahead

    def take_waiters(self) -> list[Waiter]:
        """Every waiter still waiting, taken off the queue (the caller answers them)."""
        waiting = [w for w in self.waiters if not w.ready.is_set()]
        self.waiters.clear()
        return waiting

    def launch_ready(self, container: HotContainer) -> None:
        """A launch is ready: it serves the waiters, so no held error answers one any more."""
        self.launching.discard(container)
        self.launch_failures = 0
        self.held_failures.clear()

    def launch_ended(self, container: HotContainer, error: FnAgentError | None) -> None:
        """A launch ended before it was ready: ``error`` says why (None: cancelled).

        Each failed launch answers one waiter with its error, unless a container serves:
        then the waiters wait for it. While other launches are starting, the error is held
        until they have all ended without one becoming ready: a cold start can outlast the
        start timeout on saturated CPUs, and a waiter that another launch serves a moment
        later must not get an error no function caused. A launch that never listens still
        answers its waiter, at most one start timeout later."""
        self.launching.discard(container)
        if error is not None and not self.serving:
            self.held_failures.append((error, set(self.launching)))
        held, self.held_failures = self.held_failures, []
        for error_held, pending in held:
            pending.discard(container)
            if pending:
                self.held_failures.append((error_held, pending))
            else:
                self._fail_one(error_held)

    def _fail_one(self, error: FnAgentError) -> None:
        """The oldest waiter gets ``error``."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.ready.is_set():
                waiter.error = error
                waiter.ready.set()
                return

    def discard(self, container: HotContainer) -> None:
        """Forget a container that is gone (or going)."""
        container.state = State.GONE
        self.containers.discard(container)
        if container in self.idle:
            self.idle.remove(container)

    def has_idle(self) -> bool:
        return any(not c.doomed for c in self.idle)

    def keep_idle_until(self, at: float) -> HotContainer | None:
        """A pre-warm is due while a container is idle: that container (the next call's, the
        most recently used) stands in for it, kept at least until ``at`` (the pre-warm's
        unload time), or the predicted call would find it gone. Returns it when its removal
        time moved (its life task is to be woken), else None."""
        for container in reversed(self.idle):
            if container.doomed:
                continue
            unload_at = container.unload_at
            if unload_at is None:
                unload_at = container.idle_since + container.fn.idle_timeout_s
            if unload_at >= at:
                return None
            container.unload_at = at
            return container
        return None

    @property
    def empty(self) -> bool:
        return not self.containers and not self.starting and not self.waiters


def _average(current: float | None, sample: float, weight: float = 0.2) -> float:
    """An exponentially weighted moving average; the first sample starts it."""
    return sample if current is None else current + weight * (sample - current)
