"""Group commit: writes that arrive while one is being committed wait and go together in the
next transaction, so concurrent callers share one commit instead of queueing for one each
(the detached calls' enqueues: each 202 waits for its call's commit)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from fnagent.errors import FnAgentError, StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Waiting(Generic[T]):
    """One item waiting for its batch: ``turn`` is set when it was written (or failed:
    ``error``), or when its submitter is the next batch's writer."""

    __slots__ = ("done", "error", "item", "turn")

    def __init__(self, item: T) -> None:
        self.item = item
        self.turn = anyio.Event()
        self.done = False
        """Its batch ended: written, or failed with ``error``."""
        self.error: FnAgentError | None = None


class GroupCommit(Generic[T]):
    """``submit(item)`` returns once ``write(batch)``, the transaction of a batch holding the
    item, has returned, or raises what failed it.

    The first submitter writes; items submitted meanwhile wait, and the first of them writes
    the next batch with all of them. A batch takes what is waiting once ``prepare`` (when
    given) has returned and the event loop has had one more turn, so the items ready in the
    same turn go together. Whatever goes wrong, each submitter is told: written only once
    ``write`` returned, else failed; a failure other than ``FnAgentError`` (a bug) fails the
    batch with ``StorageError`` and is logged. A submit is shielded from cancellation: a
    caller that goes away still leaves its item written (and the batch it leads still gets
    written for the others)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._write = write
        self._prepare = prepare
        self._waiting: list[_Waiting[T]] = []
        self._writing = False

    def __repr__(self) -> str:
        return f"<GroupCommit waiting={len(self._waiting)}{' writing' if self._writing else ''}>"

    async def submit(self, item: T) -> None:
        entry = _Waiting(item)
        with anyio.CancelScope(shield=True):
            self._waiting.append(entry)
            if self._writing:
                await entry.turn.wait()
            if not entry.done:
                await self._write_batch()
        if entry.error is not None:
            raise entry.error

    async def _write_batch(self) -> None:
        """Write every waiting item in one ``write``, then wake them, and hand the writer's
        role to the first item that came meanwhile."""
        self._writing = True
        batch: list[_Waiting[T]] | None = None
        error: FnAgentError | None = StorageError("storage failure: the batch was not written")
        try:
            if self._prepare is not None:
                await self._prepare()
            await anyio.lowlevel.checkpoint()
            batch, self._waiting = self._waiting, []
            await self._write([entry.item for entry in batch])
            error = None
        except FnAgentError as exc:
            error = exc
        except Exception as exc:
            logger.exception("a batch of writes failed unexpectedly")
            error = StorageError(f"storage failure: {exc}")
        finally:
            if batch is None:  # failed before the batch was taken: the waiting ones fail
                batch, self._waiting = self._waiting, []
            for entry in batch:
                entry.done = True
                entry.error = error
                entry.turn.set()
            if self._waiting:
                self._waiting[0].turn.set()
            else:
                self._writing = False
