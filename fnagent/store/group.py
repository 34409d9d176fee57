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


class _Batch(Generic[T]):
    """Items that go in one transaction. Its first submitter leads it: writes it, when the
    batch before has been written (``turn``). ``written`` is set when its write ended, with
    ``error`` when it failed."""

    __slots__ = ("error", "items", "turn", "written")

    def __init__(self, item: T, *, waits_for_its_turn: bool) -> None:
        self.items = [item]
        self.written = anyio.Event()
        self.turn = anyio.Event() if waits_for_its_turn else None
        self.error: FnAgentError | None = None


class GroupCommit(Generic[T]):
    """``submit(item)`` returns once ``write(batch)``, the transaction of a batch holding the
    item, has returned, or raises what failed it.

    The first submitter writes; items submitted meanwhile gather in the next batch, whose
    first submitter writes it once the write before has ended. A batch takes no more items
    once ``prepare`` (when given) has returned and the event loop has had one more turn, so
    the items ready in the same turn go together. Whatever goes wrong, each submitter is
    told: written only once ``write`` returned, else failed; a failure other than
    ``FnAgentError`` (a bug) fails the batch with ``StorageError`` and is logged.

    Cancellation: an item, once submitted, is written whatever happens to its submitter. A
    batch's leader is shielded (the batch, and the ones after, must still be written); the
    other submitters are not, and a cancelled one stops waiting for its batch.

    The cost is per batch, not per item (two events and a shield; an item is an append and a
    wait): at concurrency 16, per-item events and shields took ~15% of the server's CPU per
    202 (``make bench BENCH=detached``)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._write = write
        self._prepare = prepare
        self._gathering: _Batch[T] | None = None
        """The batch that takes new items: the one being prepared, or the next one."""
        self._writing = False

    def __repr__(self) -> str:
        gathering = len(self._gathering.items) if self._gathering is not None else 0
        return f"<GroupCommit gathering={gathering}{' writing' if self._writing else ''}>"

    async def submit(self, item: T) -> None:
        batch = self._gathering
        if batch is not None:
            batch.items.append(item)
            await batch.written.wait()
        else:
            batch = self._gathering = _Batch(item, waits_for_its_turn=self._writing)
            with anyio.CancelScope(shield=True):
                if batch.turn is not None:
                    await batch.turn.wait()
                else:
                    self._writing = True
                await self._write_batch(batch)
        if batch.error is not None:
            raise batch.error

    async def _write_batch(self, batch: _Batch[T]) -> None:
        """Write ``batch`` in one ``write``, then wake its submitters, and hand the writer's
        role to the batch that gathered meanwhile."""
        error: FnAgentError | None = StorageError("storage failure: the batch was not written")
        try:
            if self._prepare is not None:
                await self._prepare()
            await anyio.lowlevel.checkpoint()
            self._gathering = None  # items from now on go in the next batch
            await self._write(batch.items)
            error = None
        except FnAgentError as exc:
            error = exc
        except Exception as exc:
            logger.exception("a batch of writes failed unexpectedly")
            error = StorageError(f"storage failure: {exc}")
        finally:
            if self._gathering is batch:  # failed before it stopped taking items
                self._gathering = None
            batch.error = error
            batch.written.set()
            following = self._gathering
            if following is not None:
                assert following.turn is not None
                following.turn.set()
            else:
                self._writing = False
