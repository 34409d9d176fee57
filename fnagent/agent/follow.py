"""Following a fn's log lines as they come: the hub the containers' routers publish to.

``FollowHub.publish`` is called for every line a container prints (``calllogs.LogLine``, with
its call id and stream) and never blocks nor grows without bound: each subscriber has a
buffer of at most ``max_lines`` lines and ``max_bytes`` bytes; a line that does not fit is
dropped and counted, and the reader gets a ``Dropped`` marker where lines went missing. A slow
reader loses lines; it never slows a function or the agent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import TracebackType

import anyio

from fnagent.agent.calllogs import LogLine
from fnagent.errors import ServerBusyError

DEFAULT_MAX_LINES = 1000
DEFAULT_MAX_BYTES = 256 * 1024
MAX_SUBSCRIBERS = 64
"""Followers at once, over every fn: one more is refused (503)."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` lines were lost here: the reader was too slow."""

    count: int


class Subscription:
    """One reader's bounded buffer of a fn's lines. A context manager: leaving it unsubscribes."""

    def __init__(self, hub: FollowHub, fn_id: str, max_lines: int, max_bytes: int) -> None:
        self._hub = hub
        self.fn_id = fn_id
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._lines: deque[LogLine] = deque()
        self._bytes = 0
        self.dropped = 0
        """Lines lost since the reader last took its buffer."""
        self._ready: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.fn_id} lines={len(self._lines)} dropped={self.dropped}>"

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hub._unsubscribe(self)

    def offer(self, line: LogLine) -> None:
        """Buffer ``line``, or count it dropped when the buffer is full (never blocks)."""
        if len(self._lines) >= self.max_lines or self._bytes + len(line.data) > self.max_bytes:
            self.dropped += 1
        else:
            self._lines.append(line)
            self._bytes += len(line.data)
        if self._ready is not None:
            event, self._ready = self._ready, None
            event.set()

    def take(self) -> list[LogLine | Dropped]:
        """What is buffered, in order, then a ``Dropped`` marker when lines were lost after it;
        the buffer is empty afterwards."""
        taken: list[LogLine | Dropped] = list(self._lines)
        self._lines.clear()
        self._bytes = 0
        if self.dropped:
            taken.append(Dropped(self.dropped))
            self.dropped = 0
        return taken

    async def next(self) -> list[LogLine | Dropped]:
        """Wait until there is something to take, then take it."""
        while not self._lines and not self.dropped:
            self._ready = anyio.Event()
            await self._ready.wait()
        return self.take()


class FollowHub:
    """Fn id -> the subscriptions following it."""

    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.max_subscribers = max_subscribers
        self._followers: dict[str, set[Subscription]] = {}
        self._count = 0

    def __repr__(self) -> str:
        return f"<FollowHub fns={len(self._followers)} subscribers={self._count}>"

    def subscribe(
        self,
        fn_id: str,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Subscription:
        """A new subscription to ``fn_id``'s lines; ServerBusyError (503) past the bound."""
        if self._count >= self.max_subscribers:
            raise ServerBusyError(f"too many log followers: at most {self.max_subscribers} at once")
        subscription = Subscription(self, fn_id, max_lines, max_bytes)
        self._followers.setdefault(fn_id, set()).add(subscription)
        self._count += 1
        return subscription

    def following(self, fn_id: str) -> bool:
        """Whether anyone follows ``fn_id`` now."""
        return fn_id in self._followers

    def publish(self, line: LogLine) -> None:
        """Give ``line`` to every subscription following its fn."""
        followers = self._followers.get(line.fn_id)
        if followers:
            for subscription in followers:
                subscription.offer(line)

    def _unsubscribe(self, subscription: Subscription) -> None:
        followers = self._followers.get(subscription.fn_id)
        if followers is None or subscription not in followers:
            return
        followers.discard(subscription)
        self._count -= 1
        if not followers:
            del self._followers[subscription.fn_id]
