"""The prefork pool (docs/design.md, after Fn's ``docker_pool.go``), made elastic.

Each slot is a container (busybox ``tail -f /dev/null``) whose network namespace a new function
container joins with ``network_mode=container:<slot>``, so a cold start skips network set-up.
One nanny task per slot loops: create (rate-limited) -> start -> register free -> wait for the
container's exit -> remove it -> create again, until the slot retires or the pool closes.

``PoolState`` is the bookkeeping, with no I/O (docs/design.md): its methods change state at once
and return what must be removed; ``PreforkPool`` does the Docker calls afterwards.

Beyond Fn: the pool grows toward ``max_size`` when ``alloc`` finds it empty, shrinks back to
``min_size`` when slots idle, and ``aclose`` removes every slot within ``close_timeout_s``.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
from aiolimiter import AsyncLimiter
from anyio.abc import TaskGroup, TaskStatus

from drivers.backoff import backoff_s
from drivers.docker.config import (
    INSTANCE_LABEL,
    ROLE_LABEL,
    DockerConfig,
    PoolConfig,
    PullPolicy,
    base_labels,
)
from drivers.errors import (
    ClosedError,
    ContainerGoneError,
    DockerUnavailableError,
    FnAgentError,
    ImageNotFoundError,
    PoolEmpty,
)

if TYPE_CHECKING:
    from drivers.docker.client import DockerClient
    from drivers.docker.pull import ImagePuller

logger = logging.getLogger(__name__)

PREFORK_ROLE = "prefork"
POOL_LABEL = "fnagent.prefork.pool"
SLOT_LABEL = "fnagent.prefork.slot"
BRIDGE = "default"

HEALTHY_AFTER_S = 1.0
"""A slot that exits sooner than this on its own counts as a failure (backoff applies)."""
CALL_GRACE_S = 60.0
"""How long a shielded slot creation may take before it is given up (lowered at close)."""
SLOT_PIDS_LIMIT = 8
SLOT_USER = "65534:65534"


class SlotPhase(enum.Enum):
    STARTING = "starting"
    """The nanny is making its container (or backing off after a failure)."""
    FREE = "free"
    IN_USE = "in_use"


@dataclass(eq=False)
class Slot:
    """One nanny's slot. ``container_id`` is its current container, if one was created."""

    number: int
    network: str
    phase: SlotPhase = SlotPhase.STARTING
    container_id: str | None = None
    idle_since: float = 0.0
    retiring: bool = False
    """The nanny stops once its container is gone (shrink or close)."""
    expect_exit: bool = False
    """We are removing the container ourselves (use-once), so its exit is no failure."""

    def __repr__(self) -> str:
        return f"<Slot {self.number} {self.phase.value} {(self.container_id or '-')[:12]}>"


class PoolUsage(NamedTuple):
    in_use: int
    free: int
    starting: int

    @property
    def total(self) -> int:
        return self.in_use + self.free + self.starting


class PoolState:
    """The pool's bookkeeping: which slots exist, which are free (a LIFO stack), which are lent.

    No method awaits or does I/O; those that decide something must be removed return it.
    Times are passed in (seconds on any monotonic clock), so tests can drive them.
    """

    def __init__(
        self,
        *,
        min_size: int,
        max_size: int,
        networks: tuple[str, ...] = (),
        use_once: bool = False,
    ) -> None:
        self.min_size = min_size
        self.max_size = max_size
        self.use_once = use_once
        self._networks = networks or (BRIDGE,)
        self._cursor = 0
        self._numbers = itertools.count()
        self._slots: dict[int, Slot] = {}
        """Live slots: they count toward min and max."""
        self._draining: dict[int, Slot] = {}
        """Retired slots whose nanny has not finished yet (their container may still exist)."""
        self._free: list[Slot] = []
        self._lent: dict[str, Slot] = {}
        self.closed = False

    def __repr__(self) -> str:
        in_use, free, starting = self.usage()
        return (
            f"<PoolState in_use={in_use} free={free} starting={starting}"
            f" draining={len(self._draining)} min={self.min_size} max={self.max_size}"
            f"{' closed' if self.closed else ''}>"
        )

    def usage(self) -> PoolUsage:
        starting = sum(1 for s in self._slots.values() if s.phase is SlotPhase.STARTING)
        return PoolUsage(in_use=len(self._lent), free=len(self._free), starting=starting)

    @property
    def size(self) -> int:
        return len(self._slots)

    def slots(self) -> list[Slot]:
        return [*self._slots.values(), *self._draining.values()]

    def free_ids(self) -> list[str]:
        """Free slots' container ids, the next ``alloc`` last."""
        return [s.container_id for s in self._free if s.container_id]

    def container_ids(self) -> list[str]:
        """Every container a slot made and has not seen removed (what close must remove)."""
        return [s.container_id for s in self.slots() if s.container_id]

    # growing and shrinking

    def add_slot(self) -> Slot | None:
        """A new slot, or None at ``max_size`` or once closed. Its network is the least used,
        ties going round-robin, so sequential adds cycle through the networks."""
        if self.closed or len(self._slots) >= self.max_size:
            return None
        use = {name: 0 for name in self._networks}
        for slot in self._slots.values():
            use[slot.network] = use.get(slot.network, 0) + 1
        count = len(self._networks)
        order = [self._networks[(self._cursor + i) % count] for i in range(count)]
        network = min(order, key=lambda name: use[name])
        self._cursor = (self._networks.index(network) + 1) % count
        slot = Slot(number=next(self._numbers), network=network)
        self._slots[slot.number] = slot
        return slot

    def fill(self) -> list[Slot]:
        """New slots up to ``min_size``."""
        added = []
        while len(self._slots) < self.min_size:
            slot = self.add_slot()
            if slot is None:
                break
            added.append(slot)
        return added

    def retire_idle(self, now: float, idle_s: float) -> list[Slot]:
        """Free slots idle for ``idle_s`` or more, oldest first, while above ``min_size``.
        They leave the free stack at once; the caller removes their containers."""
        retired: list[Slot] = []
        for slot in list(self._free):  # bottom of the stack = idle longest
            if len(self._slots) <= self.min_size:
                break
            if slot.idle_since + idle_s > now:  # the same sum as next_idle_deadline
                break
            self._free.remove(slot)
            self._retire(slot)
            retired.append(slot)
        return retired

    def _retire(self, slot: Slot) -> None:
        slot.retiring = True
        slot.phase = SlotPhase.STARTING
        if self._slots.pop(slot.number, None) is not None:
            self._draining[slot.number] = slot

    def next_idle_deadline(self, idle_s: float) -> float | None:
        """When ``retire_idle`` may next have something to do; None when never (at min)."""
        if len(self._slots) <= self.min_size or not self._free:
            return None
        return self._free[0].idle_since + idle_s

    # a slot's life, as its nanny reports it

    def created(self, slot: Slot, container_id: str) -> None:
        slot.container_id = container_id
        slot.expect_exit = False

    def ready(self, slot: Slot, now: float) -> bool:
        """The slot's container runs: register it free. False when the slot must stop instead
        (retired or closed); the container is then the caller's to remove."""
        if slot.retiring or self.closed or slot.container_id is None:
            return False
        slot.phase = SlotPhase.FREE
        slot.idle_since = now
        self._free.append(slot)
        return True

    def failed(self, slot: Slot) -> str | None:
        """Creating or starting failed; returns the half-made container to remove, if any."""
        container_id, slot.container_id = slot.container_id, None
        slot.phase = SlotPhase.STARTING
        return container_id

    def is_lent(self, container_id: str) -> bool:
        return container_id in self._lent

    def exited(self, slot: Slot, container_id: str) -> bool:
        """The slot's container ended. Returns whether that was expected (we removed it)."""
        if slot.container_id != container_id:
            return True
        expected = slot.expect_exit or slot.retiring or self.closed
        if slot in self._free:
            self._free.remove(slot)
        self._lent.pop(container_id, None)
        slot.container_id = None
        slot.expect_exit = False
        slot.phase = SlotPhase.STARTING
        return expected

    def gone(self, slot: Slot) -> None:
        """The nanny finished: the slot and its container are no more."""
        self._slots.pop(slot.number, None)
        self._draining.pop(slot.number, None)
        if slot in self._free:
            self._free.remove(slot)
        if slot.container_id:
            self._lent.pop(slot.container_id, None)

    # lending

    def alloc(self) -> str:
        """Lend the most recently freed slot (LIFO): its container id. Raises PoolEmpty."""
        if self.closed or not self._free:
            raise PoolEmpty()
        slot = self._free.pop()
        assert slot.container_id is not None
        slot.phase = SlotPhase.IN_USE
        self._lent[slot.container_id] = slot
        return slot.container_id

    def free(self, container_id: str, now: float) -> str | None:
        """Take back a lent slot. Returns a container to remove (use-once: its namespace served
        a function and must not serve another), else None. Unknown ids are ignored: the slot
        may have died and been replaced meanwhile."""
        slot = self._lent.pop(container_id, None)
        if slot is None or self.closed:
            return None
        if self.use_once:
            slot.phase = SlotPhase.STARTING
            slot.expect_exit = True
            return container_id
        slot.phase = SlotPhase.FREE
        slot.idle_since = now
        self._free.append(slot)
        return None

    def close(self) -> list[str]:
        """No more lending or growing; every slot retires. Returns the containers to remove."""
        self.closed = True
        self._free.clear()
        self._lent.clear()
        for slot in list(self._slots.values()):
            self._retire(slot)
        return self.container_ids()


def slot_options(
    docker_config: DockerConfig, config: PoolConfig, slot: Slot, pool_id: str
) -> dict[str, Any]:
    """The Engine API create body of a slot container: no logs, no privileges, tiny."""
    return {
        "Image": config.image,
        "Cmd": list(config.cmd),
        "User": SLOT_USER,
        "Labels": {
            **base_labels(docker_config),
            ROLE_LABEL: PREFORK_ROLE,
            POOL_LABEL: pool_id,
            SLOT_LABEL: str(slot.number),
        },
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "OpenStdin": False,
        "Tty": False,
        # Nothing in a slot needs a graceful stop, and its PID 1 ignores SIGTERM: without this a
        # daemon stopping (or `docker stop`) waits 10 s per slot.
        "StopSignal": "SIGKILL",
        "HostConfig": {
            "NetworkMode": slot.network,
            "LogConfig": {"Type": "none", "Config": {}},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": True,
            "PidsLimit": SLOT_PIDS_LIMIT,
        },
    }


def _name_part(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)


class PreforkPool:
    """Slots whose network namespaces function containers join. ``run`` (started in the
    driver's task group with ``await tg.start(pool.run)``) keeps them; ``aclose`` removes them.

    ``alloc`` and ``free`` are synchronous: lending never waits for Docker.
    """

    def __init__(
        self,
        client: DockerClient,
        puller: ImagePuller,
        docker_config: DockerConfig,
        config: PoolConfig,
    ) -> None:
        self.config = config
        self.docker_config = docker_config
        self.pool_id = uuid.uuid4().hex[:12]
        self._client = client
        self._puller = puller
        self._state = PoolState(
            min_size=config.min_size,
            max_size=config.max_size,
            networks=config.networks,
            use_once=config.use_once,
        )
        # Leaky bucket: ``burst`` at once, then ``rate_per_s`` sustained.
        self._limiter = AsyncLimiter(config.burst, config.burst / config.rate_per_s)
        self._tg: TaskGroup | None = None
        self._io_scopes: set[anyio.CancelScope] = set()
        self._changed = anyio.Event()
        self._closing = anyio.Event()
        self._stopped = anyio.Event()
        self._started = False
        self._close_deadline: float | None = None
        self._attempts = itertools.count()
        self.creations = 0
        """Slot containers created so far (every attempt the daemon accepted)."""
        self.on_lent_slot_died: Callable[[str], None] | None = None
        """Told the container id of a lent slot that died unexpectedly (killed, daemon
        stopped): whoever joined its network namespace has lost its network."""

    def __repr__(self) -> str:
        in_use, free, starting = self._state.usage()
        state = " closed" if self._state.closed else ""
        return (
            f"<PreforkPool in_use={in_use} free={free} starting={starting}"
            f" min={self.config.min_size} max={self.config.max_size}{state}>"
        )

    def usage(self) -> PoolUsage:
        return self._state.usage()

    @property
    def size(self) -> int:
        """Live slots (free, lent or starting)."""
        return self._state.size

    def free_ids(self) -> list[str]:
        return self._state.free_ids()

    # lending

    def alloc(self, *, grow: bool = True) -> str:
        """A free slot's container id (the most recently freed first), or PoolEmpty; an empty
        pool then grows by one slot in the background, up to ``max_size``, unless ``grow`` is
        False (a container nobody waits for: a slot's creation would cost more than the
        network set-up it saves)."""
        try:
            slot_id = self._state.alloc()
        except PoolEmpty:
            if self._tg is not None and grow:
                added = self._state.add_slot()
                if added is not None:
                    logger.debug("prefork pool grows", extra={"slot": added.number})
                    self._tg.start_soon(self._nanny, added)
            raise
        self._notify()
        return slot_id

    def free(self, slot_id: str) -> None:
        """Give back a slot from ``alloc``; in use-once mode it is removed and replaced."""
        doomed = self._state.free(slot_id, anyio.current_time())
        if doomed is not None and self._tg is not None:
            self._tg.start_soon(self._remove, doomed)
        self._notify()

    async def wait_free(self, count: int = 1) -> None:
        """Wait until ``count`` slots are free (bound it with a timeout: they may never be)."""
        while self._state.usage().free < count:
            if self._state.closed:
                raise ClosedError("the prefork pool is closed")
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # the background work

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check the image, start the nannies that fill the pool to ``min_size``, report
        started (without waiting for the slots), and keep the pool until ``aclose``."""
        if self._state.closed:
            raise ClosedError("the prefork pool is closed")
        await self._check_image()
        self._started = True
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for slot in self._state.fill():
                    tg.start_soon(self._nanny, slot)
                if self.config.max_size > self.config.min_size:
                    tg.start_soon(self._shrink_loop)
                task_status.started()
                try:
                    await self._closing.wait()
                finally:
                    # Also when cancelled from outside: in-flight creations get the same bound.
                    self._begin_close()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._begin_close()
            assert self._close_deadline is not None
            with anyio.CancelScope(deadline=self._close_deadline, shield=True) as scope:
                await self._remove_all()
            if scope.cancelled_caught:
                logger.warning(
                    "prefork pool: slots not removed within the close timeout",
                    extra={"pool": self.pool_id, "timeout_s": self.config.close_timeout_s},
                )
            self._stopped.set()
            self._notify()

    async def aclose(self) -> None:
        """Stop the nannies and remove every slot, within ``close_timeout_s`` even when Docker
        is slow (what is left then carries the pool's labels). Idempotent."""
        self._begin_close()
        if not self._started:
            return
        assert self._close_deadline is not None
        # A little over the cleanup's own deadline, so ``run`` gets to report what it left.
        with anyio.CancelScope(deadline=self._close_deadline + 0.5, shield=True):
            await self._stopped.wait()

    def _begin_close(self) -> None:
        if self._close_deadline is not None:
            return
        self._close_deadline = anyio.current_time() + self.config.close_timeout_s
        self._state.close()
        # Slot creations in flight are shielded so their ids are never lost; they may run on
        # only until the close deadline.
        for scope in self._io_scopes:
            scope.deadline = min(scope.deadline, self._close_deadline)
        self._closing.set()
        self._notify()

    async def _check_image(self) -> None:
        image = self.config.image
        try:
            await self._puller.ensure(image, policy=PullPolicy.NEVER)
        except ImageNotFoundError as exc:
            raise ImageNotFoundError(
                f"the prefork pool image {image} is not present locally; build it with "
                "`make images` (the pool never pulls its image)"
            ) from exc
        except FnAgentError as exc:
            # The daemon may come back: the nannies retry, with backoff.
            logger.warning(
                "prefork pool: cannot check the image; starting anyway",
                extra={"image": image, "error": exc.message},
            )

    async def _nanny(self, slot: Slot) -> None:
        """Keep ``slot`` filled: create -> start -> free -> wait for exit -> remove -> again."""
        failures = 0
        while not slot.retiring:
            await self._limiter.acquire()
            if slot.retiring:
                break
            born = anyio.current_time()
            try:
                container_id = await self._create(slot)
                await self._client.call("start prefork slot", "start", container_id)
            except FnAgentError as exc:
                failures += 1
                self._log_failure(slot, "could not create or start the slot", exc, failures)
                half_made = self._state.failed(slot)
                if half_made is not None:
                    await self._remove(half_made)
                await anyio.sleep(backoff_s(failures))
                continue
            if not self._state.ready(slot, anyio.current_time()):
                await self._remove(container_id)
                self._state.failed(slot)
                break
            self._notify()
            await self._wait_exit(container_id)
            lent = self._state.is_lent(container_id)
            expected = self._state.exited(slot, container_id)
            if lent and not expected and self.on_lent_slot_died is not None:
                self.on_lent_slot_died(container_id)
            self._notify()
            await self._remove(container_id)
            lived = anyio.current_time() - born
            if expected:
                failures = 0
            elif lived < HEALTHY_AFTER_S:
                failures += 1
                self._log_failure(slot, f"the slot exited after {lived:.2f} s", None, failures)
                await anyio.sleep(backoff_s(failures))
            else:
                failures = 0
                logger.info("prefork slot exited; replacing it", extra=self._fields(slot))
        self._state.gone(slot)
        self._notify()

    async def _create(self, slot: Slot) -> str:
        """Create the slot's container. Shielded, so a closing pool still learns the id of a
        container the daemon made (and removes it), but bounded by the close deadline."""
        options = slot_options(self.docker_config, self.config, slot, self.pool_id)
        # Unique per attempt: a creation whose answer was lost must not block the next by name.
        name = _name_part(
            f"fnagent-prefork-{self.docker_config.instance_id}-"
            f"{self.pool_id}-{slot.number}-{next(self._attempts)}"
        )
        deadline = anyio.current_time() + CALL_GRACE_S
        if self._close_deadline is not None:
            deadline = min(deadline, self._close_deadline)
        with anyio.CancelScope(deadline=deadline, shield=True) as scope:
            self._io_scopes.add(scope)
            try:
                created = await self._client.call(
                    "create prefork slot", "create_container_from_config", options, name
                )
                container_id: str = created["Id"]
                self.creations += 1
                self._state.created(slot, container_id)
                return container_id
            finally:
                self._io_scopes.discard(scope)
        raise DockerUnavailableError("creating a prefork slot did not finish in time")

    async def _wait_exit(self, container_id: str) -> None:
        """Until the container is no longer running (or gone). Errors (daemon down) retry with
        backoff: the slot stays registered, since it may well be alive."""

        async def wait() -> None:
            await self._client.call("wait for prefork slot", "wait", container_id)

        await self._until_answered("wait for prefork slot", FnAgentError, wait, container_id)

    async def _remove(self, container_id: str) -> None:
        """Remove a slot's container. While the daemon is down, retry with backoff: after a
        restart the container is stopped, not gone (a closing pool's deadline bounds this)."""

        async def remove() -> None:
            await self._client.remove_container(container_id, "remove prefork slot")

        try:
            await self._until_answered(
                "remove prefork slot", DockerUnavailableError, remove, container_id
            )
        except FnAgentError as exc:
            logger.warning(
                "prefork pool: could not remove a slot",
                extra={"container": container_id, "error": exc.message},
            )

    async def _until_answered(
        self,
        what: str,
        retry_on: type[FnAgentError],
        attempt: Callable[[], Awaitable[None]],
        container_id: str,
    ) -> None:
        """Run ``attempt`` until the daemon answers (the container gone counts as an answer);
        ``retry_on`` errors retry with backoff, the first one logged."""
        failures = 0
        while True:
            try:
                await attempt()
                return
            except ContainerGoneError:
                return
            except retry_on as exc:
                failures += 1
                if failures == 1:
                    logger.warning(
                        "prefork pool: %s failed; retrying",
                        what,
                        extra={"container": container_id, "error": exc.message},
                    )
                await anyio.sleep(backoff_s(failures))

    async def _shrink_loop(self) -> None:
        """Retire free slots idle for ``idle_shrink_s``, down to ``min_size``."""
        idle_s = self.config.idle_shrink_s
        while True:
            deadline = self._state.next_idle_deadline(idle_s)
            if deadline is None:
                await self._changed.wait()
                continue
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._changed.wait()
            now = anyio.current_time()
            retired = self._state.retire_idle(now, idle_s)
            if retired:
                logger.debug("prefork pool shrinks", extra={"slots": len(retired)})
                self._notify()
            for slot in retired:
                if slot.container_id is not None and self._tg is not None:
                    self._tg.start_soon(self._remove, slot.container_id)

    async def _remove_all(self) -> None:
        """Remove what the slots made, concurrently, then anything else carrying this pool's
        label (a creation whose answer was lost)."""
        async with anyio.create_task_group() as tg:
            for container_id in self._state.container_ids():
                tg.start_soon(self._remove, container_id)
        try:
            left = await self._client.call(
                "list prefork slots",
                "containers",
                all=True,
                quiet=True,
                filters={
                    "label": [
                        f"{INSTANCE_LABEL}={self.docker_config.instance_id}",
                        f"{POOL_LABEL}={self.pool_id}",
                    ]
                },
            )
        except FnAgentError as exc:
            logger.warning("prefork pool: cannot list slots to sweep", extra={"error": exc.message})
            return
        async with anyio.create_task_group() as tg:
            for container in left:
                tg.start_soon(self._remove, container["Id"])

    def _fields(self, slot: Slot) -> dict[str, Any]:
        return {"pool": self.pool_id, "slot": slot.number, "network": slot.network}

    def _log_failure(self, slot: Slot, what: str, exc: FnAgentError | None, failures: int) -> None:
        extra = {**self._fields(slot), "failures": failures, "retry_in_s": backoff_s(failures)}
        if exc is not None:
            extra["error"] = exc.message
        if isinstance(exc, ImageNotFoundError):
            what += f"; the image {self.config.image} is missing: run `make images`"
        # The first failure in a row is a warning; the rest, until one succeeds, are debug, so
        # a daemon that is down for an hour does not flood the log.
        level = logging.WARNING if failures == 1 or failures % 50 == 0 else logging.DEBUG
        logger.log(level, "prefork pool: %s", what, extra=extra)
