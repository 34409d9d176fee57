"""Version routing: which queue a fn's calls go to, and what an update or a delete changes.

Bookkeeping only, as the prefork pool's ``PoolState`` is: each method changes the routing
table at once and returns ``Moves``, what is left for the agent to do (pull a new version's
image, wake doomed containers, answer waiters, launch towards a minimum). Nothing here awaits.

A fn's calls go to its *current* version's ``SlotQueue``. A changed fn whose image must be
pulled is *prepared* first while the current version serves; only then is it *switched* to.
The old queue *drains*: no new calls, its idle containers go now, busy ones after their call.
A draining queue whose waiters nothing can serve any more is *settled*: they are routed again
(or fail with FnDeletedError when the fn is gone), and an empty draining queue is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fnagent.agent.slots import HotContainer, SlotQueue, Waiter
from fnagent.models import Fn


@dataclass(eq=False, kw_only=True)
class Moves:
    """What a routing decision leaves the agent to carry out (the bookkeeping is done)."""

    queue: SlotQueue | None = None
    """Where the fn's calls go now (set by ``route``)."""
    prepare: Fn | None = None
    """Pull this version's image while the current one serves; then report ``prepared`` (or
    ``prepare_failed``)."""
    doom: list[HotContainer] = field(default_factory=list)
    """Idle containers of a draining queue, already marked doomed and off the idle stack:
    wake them so their life tasks remove them."""
    retry: list[Waiter] = field(default_factory=list)
    """Waiters of a settled queue, taken off it: route their calls again."""
    deleted: list[Waiter] = field(default_factory=list)
    """Waiters of a settled queue whose fn was deleted: fail them with FnDeletedError."""
    fill: SlotQueue | None = None
    """A queue that now serves its fn: launch towards its minimum hot count."""
    dropped: list[SlotQueue] = field(default_factory=list)
    """Queues taken out of the routing table (drained and empty)."""


class Versions:
    """The routing table: fn id -> current version, version key -> queue.

    ``min_hot_bound(fn)`` is the largest minimum hot count ``fn``'s version may keep (a
    switch carries the old minimum over within it)."""

    def __init__(self, *, min_hot_bound: Callable[[Fn], int]) -> None:
        self._min_hot_bound = min_hot_bound
        self._queues: dict[str, SlotQueue] = {}
        self._current: dict[str, str] = {}
        """fn id -> the version key its calls go to."""
        self._wanted: dict[str, str] = {}
        """fn id -> the newest version key asked for (a pre-pull finishing late must not
        switch back to an older one)."""
        self._preparing: set[str] = set()
        self.update_errors: dict[str, str] = {}
        """fn id -> why its newest version could not be prepared (the old one still serves)."""

    def __repr__(self) -> str:
        draining = sum(1 for q in self._queues.values() if q.draining)
        return (
            f"<Versions fns={len(self._current)} queues={len(self._queues)} "
            f"draining={draining} preparing={len(self._preparing)}>"
        )

    # -- views --------------------------------------------------------------------------------

    @property
    def queues(self) -> Iterable[SlotQueue]:
        """Every queue in the table (a live view: iterate it before the table changes)."""
        return self._queues.values()

    def __len__(self) -> int:
        return len(self._queues)

    def serving_version(self, fn_id: str) -> str | None:
        """The version key ``fn_id``'s calls go to now; None when it has none."""
        return self._current.get(fn_id)

    def serving(self, fn_id: str) -> SlotQueue | None:
        """The queue ``fn_id``'s calls go to now, if it has one."""
        return self._queues.get(self._current.get(fn_id, ""))

    def preparing(self, key: str) -> bool:
        return key in self._preparing

    # -- decisions ----------------------------------------------------------------------------

    def route(self, fn: Fn) -> SlotQueue | Moves:
        """Where a call of ``fn`` goes. The queue itself when nothing else changes (a call's
        usual case: no allocation); else ``Moves`` with ``queue`` set, and a new version to
        prepare or a switch to carry out."""
        key = fn.version_key
        self._wanted[fn.id] = key
        current = self._current.get(fn.id)
        if current == key:
            queue = self._queues.get(key)
            if queue is not None:
                return queue
        if current is None or current not in self._queues:
            self._current[fn.id] = key
            return Moves(queue=self._queue_for(fn))
        if self._queues[current].fn.image == fn.image:
            # Nothing to pull (the old version's containers run this image): the very next
            # call sees the new configuration.
            return self.switch(fn)
        moves = Moves(queue=self._queues[current])
        if key not in self._preparing:
            self._preparing.add(key)
            moves.prepare = fn
        return moves

    def _queue_for(self, fn: Fn) -> SlotQueue:
        """The queue of ``fn``'s version, made when missing. A version routed to again while
        it drains (a config changed and changed back during a call) serves again: left
        draining, it would never launch and its calls would wait until they time out."""
        queue = self._queues.setdefault(fn.version_key, SlotQueue(fn))
        queue.draining = False
        return queue

    def prepared(self, fn: Fn) -> Moves | None:
        """``fn``'s image is ready: switch to its version, unless a newer one was asked for
        meanwhile (None then)."""
        key = fn.version_key
        self._preparing.discard(key)
        if self._wanted.get(fn.id) != key:
            return None
        return self.switch(fn)

    def prepare_failed(self, fn: Fn, message: str) -> None:
        """Preparing ``fn``'s version failed: the current version keeps serving. Calls do not
        retry it until ``may_retry``."""
        self.update_errors[fn.id] = message

    def may_retry(self, fn: Fn) -> None:
        """After a failed preparation's pause: the next call of ``fn`` may try again."""
        self._preparing.discard(fn.version_key)

    def switch(self, fn: Fn) -> Moves:
        """Route ``fn``'s calls to its version from now on; the old version drains (its
        minimum hot count carries over, within what the new size can fit)."""
        key = fn.version_key
        self.update_errors.pop(fn.id, None)
        old = self._queues.get(self._current.get(fn.id, ""))
        new = self._queue_for(fn)
        self._current[fn.id] = key
        moves = Moves(queue=new)
        if old is not None and old is not new:
            new.min_hot = min(old.min_hot, self._min_hot_bound(fn))
            self._drain(old, moves)
            moves.fill = new
        return moves

    def forget(self, fn_id: str) -> Moves:
        """``fn_id`` was deleted (or its app): every queue of it drains, and its waiters with
        nothing left to serve them fail."""
        self._current.pop(fn_id, None)
        self._wanted.pop(fn_id, None)
        self.update_errors.pop(fn_id, None)
        moves = Moves()
        for queue in list(self._queues.values()):
            if queue.fn.id == fn_id:
                queue.min_hot = 0
                self._drain(queue, moves)
        return moves

    def settle(self, queue: SlotQueue) -> Moves | None:
        """A draining queue's end, when it lost a container or a waiter: waiters that nothing
        left here can serve go on to the fn's current version (or learn that the fn was
        deleted); an empty queue is dropped. None when ``queue`` is not draining."""
        if not queue.draining:
            return None
        moves = Moves()
        self._settle(queue, moves)
        return moves

    def _drain(self, queue: SlotQueue, moves: Moves) -> None:
        queue.draining = True
        for container in queue.idle:
            container.doomed = True
            moves.doom.append(container)
        queue.idle.clear()
        self._settle(queue, moves)

    def _settle(self, queue: SlotQueue, moves: Moves) -> None:
        if queue.stranded():
            deleted = queue.fn.id not in self._current
            (moves.deleted if deleted else moves.retry).extend(queue.take_waiters())
        if queue.empty and self._queues.get(queue.key) is queue:
            del self._queues[queue.key]
            moves.dropped.append(queue)
