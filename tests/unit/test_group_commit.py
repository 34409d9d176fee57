"""GroupCommit (fnagent/store/group.py) on its own, with a write that records its batches:
how submits gather into batches, what each submitter is told, and cancellation."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from fnagent.errors import StorageError
from fnagent.store.group import GroupCommit

pytestmark = pytest.mark.anyio


class Writes:
    """A batch writer: records each batch; ``gate`` (when set) holds each write until
    opened; ``fail`` names items whose batch fails."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: anyio.Event | None = None
        self.fail: set[str] = set()

    async def __call__(self, items: list[str]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail & set(items):
            raise StorageError("storage failure: disk I/O error")
        self.batches.append(list(items))

    @property
    def written(self) -> list[str]:
        return [item for batch in self.batches for item in batch]


async def submit(group: GroupCommit[str], item: str, outcomes: dict[str, str]) -> None:
    try:
        await group.submit(item)
    except StorageError:
        outcomes[item] = "failed"
    else:
        outcomes[item] = "written"


async def test_submits_meanwhile_share_the_next_batch_and_each_returns_after_its_write() -> None:
    writes = Writes()
    group: GroupCommit[str] = GroupCommit(writes)
    writes.gate = anyio.Event()
    outcomes: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, group, "a", outcomes)
        await anyio.sleep(0.01)  # "a" is being written
        for item in "bcd":
            tg.start_soon(submit, group, item, outcomes)
        await anyio.sleep(0.01)
        assert outcomes == {} and writes.batches == []  # nobody returns before its write
        writes.gate.set()
    assert writes.batches == [["a"], ["b", "c", "d"]]
    assert outcomes == dict.fromkeys("abcd", "written")
    writes.gate = None
    await group.submit("e")  # the writer's role is free again: a batch of its own, at once
    assert writes.batches[-1] == ["e"]


async def test_a_failed_batch_fails_each_of_its_items_and_the_next_batch_is_written() -> None:
    writes = Writes()
    group: GroupCommit[str] = GroupCommit(writes)
    writes.gate, writes.fail = anyio.Event(), {"c"}
    outcomes: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, group, "a", outcomes)
        await anyio.sleep(0.01)
        for item in "bc":
            tg.start_soon(submit, group, item, outcomes)
        await anyio.sleep(0.01)
        writes.gate.set()
    assert outcomes == {"a": "written", "b": "failed", "c": "failed"}
    await submit(group, "d", outcomes)
    assert outcomes["d"] == "written" and writes.written == ["a", "d"]


async def test_a_failing_prepare_fails_the_batch_it_prepared_and_the_next_is_written() -> None:
    writes = Writes()
    prepares = [0]

    async def prepare() -> None:
        prepares[0] += 1
        await anyio.lowlevel.checkpoint()  # items gather meanwhile
        if prepares[0] == 1:
            raise StorageError("storage failure: checkpoint")

    group: GroupCommit[str] = GroupCommit(writes, prepare=prepare)
    outcomes: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        for item in "ab":
            tg.start_soon(submit, group, item, outcomes)
    assert outcomes == {"a": "failed", "b": "failed"} and writes.batches == []
    await submit(group, "c", outcomes)
    assert outcomes["c"] == "written"


async def test_a_bug_in_the_write_fails_the_batch_with_a_storage_error() -> None:
    async def buggy(items: list[str]) -> None:
        raise RuntimeError("a bug")

    group: GroupCommit[str] = GroupCommit(buggy)
    with pytest.raises(StorageError, match="a bug"):
        await group.submit("a")


async def test_an_item_is_written_whatever_happens_to_its_submitter() -> None:
    """Cancelled while its batch waits: a leader (the first of a batch) still writes it and
    hands the role on; another submitter stops waiting, its item written all the same."""
    writes = Writes()
    group: GroupCommit[str] = GroupCommit(writes)
    writes.gate = anyio.Event()
    outcomes: dict[str, str] = {}
    scopes: dict[str, anyio.CancelScope] = {}

    async def cancellable(item: str) -> None:
        with anyio.CancelScope() as scopes[item]:
            await submit(group, item, outcomes)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, group, "a", outcomes)
        await anyio.sleep(0.01)  # "a" is being written; "b" leads the next batch, "c" joins
        tg.start_soon(cancellable, "b")
        tg.start_soon(cancellable, "c")
        await anyio.sleep(0.01)
        scopes["b"].cancel()
        scopes["c"].cancel()
        await anyio.sleep(0.01)
        tg.start_soon(submit, group, "d", outcomes)
        await anyio.sleep(0.01)
        writes.gate.set()
    assert writes.batches == [["a"], ["b", "c", "d"]]
    assert outcomes == {"a": "written", "b": "written", "d": "written"}  # "c" went away
    writes.gate = None
    await submit(group, "e", outcomes)
    assert outcomes["e"] == "written"
