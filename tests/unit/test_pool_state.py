"""The prefork pool without Docker: its bookkeeping (``PoolState``), then ``PreforkPool`` on a
fake Docker that can be slow, down, or lose its slots."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.docker.client import DockerClient
from drivers.docker.config import DockerConfig, PoolConfig
from drivers.docker.pool import (
    POOL_LABEL,
    PoolState,
    PoolUsage,
    PreforkPool,
    SlotPhase,
)
from drivers.errors import (
    ContainerGoneError,
    DockerUnavailableError,
    ImageNotFoundError,
    InvalidInputError,
    PoolEmpty,
)
from tests.helpers import poll

_ids = itertools.count()


def state(min_size: int = 0, max_size: int = 4, **kwargs: Any) -> PoolState:
    return PoolState(min_size=min_size, max_size=max_size, **kwargs)


def started(pool: PoolState, count: int, now: float = 0.0) -> list[str]:
    """Add ``count`` slots and bring each up; returns their container ids in order."""
    ids = []
    for _ in range(count):
        slot = pool.add_slot()
        assert slot is not None
        container_id = f"c{next(_ids)}"
        pool.created(slot, container_id)
        assert pool.ready(slot, now)
        ids.append(container_id)
    return ids


def slot_of(pool: PoolState, container_id: str) -> Any:
    return next(s for s in pool.slots() if s.container_id == container_id)


# PoolState


def test_fill_adds_up_to_min_and_growth_stops_at_max() -> None:
    pool = state(min_size=2, max_size=3)
    assert len(pool.fill()) == 2
    assert pool.fill() == []
    assert pool.usage() == PoolUsage(in_use=0, free=0, starting=2)
    assert pool.add_slot() is not None
    assert pool.add_slot() is None
    assert pool.size == 3


def test_alloc_is_lifo_and_free_puts_back_on_top() -> None:
    pool = state()
    a, b, c = started(pool, 3)
    assert pool.alloc() == c
    assert pool.alloc() == b
    pool.free(c, now=1.0)
    assert pool.alloc() == c
    assert pool.alloc() == a
    with pytest.raises(PoolEmpty):
        pool.alloc()
    assert pool.usage() == PoolUsage(in_use=3, free=0, starting=0)


def test_use_once_free_returns_the_container_to_remove_and_never_relends_it() -> None:
    pool = state(use_once=True)
    (a,) = started(pool, 1)
    assert pool.alloc() == a
    assert pool.free(a, now=1.0) == a
    assert pool.usage() == PoolUsage(in_use=0, free=0, starting=1)
    with pytest.raises(PoolEmpty):
        pool.alloc()
    slot = slot_of(pool, a)
    assert pool.exited(slot, a) is True  # we removed it: expected, no backoff
    pool.created(slot, "fresh")
    assert pool.ready(slot, now=2.0)
    assert pool.alloc() == "fresh"


def test_networks_are_assigned_round_robin_and_refill_the_least_used() -> None:
    pool = state(max_size=8, networks=("a", "b", "c"))
    slots = [pool.add_slot() for _ in range(6)]
    assert [s.network for s in slots if s] == ["a", "b", "c", "a", "b", "c"]
    # A retired slot on "b" leaves b least used: the next slot goes there.
    gone = slots[4]
    assert gone is not None
    pool.gone(gone)
    added = pool.add_slot()
    assert added is not None and added.network == "b"


def test_no_networks_means_the_default_bridge() -> None:
    slot = state().add_slot()
    assert slot is not None and slot.network == "default"


def test_usage_counts_every_phase() -> None:
    pool = state(max_size=5)
    a, _b, _c = started(pool, 3)
    pool.add_slot()
    pool.alloc()
    assert pool.usage() == PoolUsage(in_use=1, free=2, starting=1)
    assert pool.usage().total == pool.size == 4
    assert "in_use=1 free=2 starting=1" in repr(pool)
    assert a in pool.container_ids()


def test_shrink_retires_the_longest_idle_first_and_keeps_min() -> None:
    pool = state(min_size=1, max_size=4)
    oldest, middle, newest = (started(pool, 1, now=t)[0] for t in (0.0, 1.0, 2.0))
    assert pool.next_idle_deadline(5.0) == 5.0
    assert pool.retire_idle(now=4.9, idle_s=5.0) == []
    retired = pool.retire_idle(now=5.5, idle_s=5.0)
    assert [s.container_id for s in retired] == [oldest]
    retired = pool.retire_idle(now=100.0, idle_s=5.0)
    assert [s.container_id for s in retired] == [middle]  # newest stays: min is 1
    assert pool.size == 1 and pool.free_ids() == [newest]
    assert pool.next_idle_deadline(5.0) is None
    # retired slots still hold containers until their nanny is done
    assert {oldest, middle} <= set(pool.container_ids())


def test_shrink_never_touches_slots_in_use() -> None:
    pool = state(min_size=0, max_size=4)
    a, b = started(pool, 2, now=0.0)
    assert pool.alloc() == b
    retired = pool.retire_idle(now=100.0, idle_s=1.0)
    assert [s.container_id for s in retired] == [a]
    assert pool.usage() == PoolUsage(in_use=1, free=0, starting=0)


def test_freed_slot_idles_from_when_it_was_freed() -> None:
    pool = state(min_size=0, max_size=2)
    (a,) = started(pool, 1, now=0.0)
    pool.alloc()
    pool.free(a, now=50.0)
    assert pool.retire_idle(now=54.0, idle_s=5.0) == []
    assert len(pool.retire_idle(now=55.0, idle_s=5.0)) == 1


def test_a_slot_that_dies_leaves_the_free_stack() -> None:
    pool = state()
    a, b = started(pool, 2)
    assert pool.exited(slot_of(pool, b), b) is False  # nobody asked: unexpected
    assert pool.alloc() == a
    assert pool.usage() == PoolUsage(in_use=1, free=0, starting=1)


def test_a_slot_that_dies_while_lent_is_not_taken_back() -> None:
    pool = state()
    (a,) = started(pool, 1)
    assert pool.alloc() == a
    slot = slot_of(pool, a)
    pool.exited(slot, a)
    assert pool.free(a, now=1.0) is None  # unknown by now: ignored
    assert pool.usage() == PoolUsage(in_use=0, free=0, starting=1)


def test_a_late_exit_of_an_old_container_changes_nothing() -> None:
    pool = state()
    (a,) = started(pool, 1)
    slot = slot_of(pool, a)
    pool.exited(slot, a)
    pool.created(slot, "new")
    pool.ready(slot, 0.0)
    assert pool.exited(slot, a) is True
    assert pool.free_ids() == ["new"]


def test_close_returns_every_container_and_stops_lending_and_growing() -> None:
    pool = state(min_size=0, max_size=5)
    a, b = started(pool, 2)
    half = pool.add_slot()
    assert half is not None
    pool.created(half, "half")  # created, not started yet
    pool.alloc()
    assert sorted(pool.close()) == sorted([a, b, "half"])
    with pytest.raises(PoolEmpty):
        pool.alloc()
    assert pool.add_slot() is None
    assert pool.ready(half, 1.0) is False
    assert pool.free(b, 1.0) is None
    assert pool.usage() == PoolUsage(in_use=0, free=0, starting=0)


def test_failed_creation_hands_back_the_half_made_container() -> None:
    pool = state()
    slot = pool.add_slot()
    assert slot is not None
    pool.created(slot, "half")
    assert pool.failed(slot) == "half"
    assert pool.failed(slot) is None
    assert slot.phase is SlotPhase.STARTING


OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "up", "alloc", "free", "die", "shrink", "gone"]), st.integers(0, 7)
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS, st.booleans(), st.integers(0, 3))
def test_invariants_hold_under_any_sequence(
    ops: list[tuple[str, int]], use_once: bool, min_size: int
) -> None:
    pool = state(min_size=min_size, max_size=min_size + 3, use_once=use_once)
    lent: list[str] = []
    now = 0.0
    for op, pick in ops:
        now += 1.0
        slots = [s for s in pool.slots() if not s.retiring]
        slot = slots[pick % len(slots)] if slots else None
        if op == "add":
            pool.add_slot()
        elif op == "up" and slot is not None and slot.phase is SlotPhase.STARTING:
            pool.failed(slot)
            pool.created(slot, f"c{next(_ids)}")
            pool.ready(slot, now)
        elif op == "alloc":
            try:
                lent.append(pool.alloc())
            except PoolEmpty:
                pass
        elif op == "free" and lent:
            pool.free(lent.pop(pick % len(lent)), now)
        elif op == "die" and slot is not None and slot.container_id:
            pool.exited(slot, slot.container_id)
        elif op == "shrink":
            pool.retire_idle(now, idle_s=2.0)
        elif op == "gone" and slot is not None and slot.phase is SlotPhase.STARTING:
            pool.gone(slot)
        usage = pool.usage()
        assert usage.total == pool.size <= pool.max_size
        free = pool.free_ids()
        assert len(free) == len(set(free)) == usage.free
        assert all(s.phase is SlotPhase.FREE for s in pool.slots() if s.container_id in free)
        in_use = [s for s in pool.slots() if s.phase is SlotPhase.IN_USE]
        assert len(in_use) == usage.in_use
        assert not {s.container_id for s in in_use} & set(free)


@pytest.mark.parametrize(
    "fields",
    [
        {"min_size": 3, "max_size": 2},
        {"min_size": 0, "max_size": 0},
        {"min_size": -1, "max_size": 1},
        {"min_size": 1, "max_size": 1, "rate_per_s": 0},
        {"min_size": 1, "max_size": 1, "burst": 0},
        {"min_size": 1, "max_size": 1, "cmd": ()},
        {"min_size": 1, "max_size": 1, "close_timeout_s": 0},
    ],
)
def test_pool_config_rejects_nonsense(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        PoolConfig(**fields)


# PreforkPool on a fake Docker


class FakeContainer:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.ended = anyio.Event()


class FakeDocker:
    """Just enough of ``DockerClient.call`` for the pool, with knobs for slowness and outages."""

    def __init__(
        self,
        *,
        create_delay_s: float = 0.0,
        remove_delay_s: float = 0.0,
        down: bool = False,
        slots_exit_at_once: bool = False,
    ) -> None:
        self.create_delay_s = create_delay_s
        self.remove_delay_s = remove_delay_s
        self.down = down
        self.slots_exit_at_once = slots_exit_at_once
        self.containers: dict[str, FakeContainer] = {}
        self.calls: Counter[str] = Counter()

    # The real helper, over this fake's ``call``.
    remove_container = DockerClient.remove_container

    async def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[method] += 1
        await anyio.lowlevel.checkpoint()
        if self.down:
            raise DockerUnavailableError(f"{what}: cannot connect to the Docker daemon")
        handler: Callable[..., Any] = getattr(self, f"_{method}")
        return await handler(*args, **kwargs)

    async def _create_container_from_config(self, options: dict[str, Any], name: str) -> Any:
        await anyio.sleep(self.create_delay_s)
        container_id = uuid.uuid4().hex
        self.containers[container_id] = FakeContainer(options["Labels"])
        return {"Id": container_id}

    async def _start(self, container_id: str) -> None:
        if self.slots_exit_at_once:
            self.containers[container_id].ended.set()

    async def _wait(self, container_id: str) -> Any:
        container = self.containers.get(container_id)
        if container is None:
            raise ContainerGoneError("No such container")
        await container.ended.wait()
        return {"StatusCode": 137}

    async def _remove_container(self, container_id: str, force: bool, v: bool) -> None:
        await anyio.sleep(self.remove_delay_s)
        container = self.containers.pop(container_id, None)
        if container is None:
            raise ContainerGoneError("No such container")
        container.ended.set()

    async def _containers(self, all: bool, quiet: bool, filters: dict[str, Any]) -> Any:
        wanted = dict(f.split("=", 1) for f in filters["label"])
        return [
            {"Id": cid}
            for cid, c in self.containers.items()
            if all and wanted.items() <= c.labels.items()
        ]


class FakePuller:
    def __init__(self, missing: bool = False) -> None:
        self.missing = missing

    async def ensure(self, image: str, *, policy: Any = None) -> None:
        if self.missing:
            raise ImageNotFoundError(f"image {image} is not present locally")


def fake_pool(docker: FakeDocker, **fields: Any) -> PreforkPool:
    config = PoolConfig(**{"min_size": 2, "max_size": 2, "close_timeout_s": 1.0, **fields})
    docker_config = DockerConfig(instance_id="unit", pool=config)
    return PreforkPool(docker, FakePuller(), docker_config, config)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_pool_fills_lends_and_closes_leaving_nothing() -> None:
    docker = FakeDocker()
    pool = fake_pool(docker, min_size=3, max_size=3)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await poll(lambda: pool.usage().free == 3, "the pool to fill")
        slot = pool.alloc()
        assert docker.containers[slot].labels[POOL_LABEL] == pool.pool_id
        pool.free(slot)
        await pool.aclose()
    assert docker.containers == {}
    assert "closed" in repr(pool)


@pytest.mark.anyio
async def test_close_is_bounded_when_docker_is_slow() -> None:
    docker = FakeDocker(remove_delay_s=60.0)
    pool = fake_pool(docker, close_timeout_s=0.3)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await poll(lambda: pool.usage().free == 2, "the pool to fill")
        with anyio.fail_after(1.5):
            await pool.aclose()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_close_during_slow_creations_still_removes_what_they_made() -> None:
    docker = FakeDocker(create_delay_s=0.2)
    pool = fake_pool(docker, min_size=4, max_size=4)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await anyio.sleep(0.05)  # creations are in flight now
        assert docker.calls["create_container_from_config"] == 4
        await pool.aclose()
    assert docker.containers == {}


@pytest.mark.anyio
async def test_daemon_down_is_retried_with_backoff_not_a_hot_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docker = FakeDocker(down=True)
    pool = fake_pool(docker, min_size=3, max_size=3)
    with caplog.at_level(logging.DEBUG, logger="drivers.docker.pool"):
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            await anyio.sleep(1.5)
            attempts = docker.calls["create_container_from_config"]
            docker.down = False  # the daemon is back: the pool recovers on its own
            await poll(lambda: pool.usage().free == 3, "the pool to recover", timeout_s=8)
            await pool.aclose()
    # backoff 0.1, 0.2, 0.4, 0.8 s: about 4-5 attempts per slot in 1.5 s, not 10/s per slot
    assert 3 <= attempts <= 3 * 6
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # the first failure of each slot; the rest at debug
    assert docker.containers == {}


@pytest.mark.anyio
async def test_a_slot_command_that_exits_at_once_backs_off() -> None:
    docker = FakeDocker(slots_exit_at_once=True)
    pool = fake_pool(docker, min_size=1, max_size=1)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await anyio.sleep(1.5)
        await pool.aclose()
    assert docker.calls["create_container_from_config"] <= 6
    assert docker.containers == {}


@pytest.mark.anyio
async def test_use_once_replaces_the_slot_after_free() -> None:
    docker = FakeDocker()
    pool = fake_pool(docker, min_size=1, max_size=1, use_once=True)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        seen = []
        for _ in range(3):
            await poll(lambda: pool.usage().free == 1, "a fresh slot")
            seen.append(pool.alloc())
            pool.free(seen[-1])
        await poll(lambda: seen[-1] not in docker.containers, "the used slot to go")
        await pool.aclose()
    assert len(set(seen)) == 3
    assert docker.containers == {}


@pytest.mark.anyio
async def test_empty_alloc_grows_and_idle_slots_shrink_back() -> None:
    docker = FakeDocker()
    pool = fake_pool(docker, min_size=1, max_size=3, idle_shrink_s=0.3)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await poll(lambda: pool.usage().free == 1, "the minimum")
        lent = [pool.alloc()]
        # A container nobody waits for (ContainerTask.background) does not grow it: a slot's
        # creation would cost more than the network set-up it saves.
        with pytest.raises(PoolEmpty):
            pool.alloc(grow=False)
        assert pool.size == 1
        for _ in range(4):
            with pytest.raises(PoolEmpty):
                pool.alloc()
        assert pool.size == 3  # grew by one per miss, up to max
        await poll(lambda: pool.usage().free == 2, "the pool to grow")
        pool.free(lent[0])
        await poll(lambda: pool.size == 1 and len(docker.containers) == 1, "the shrink")
        await pool.aclose()
    assert docker.containers == {}


@pytest.mark.anyio
async def test_a_missing_image_fails_start_with_make_images_advice() -> None:
    config = PoolConfig(min_size=1, max_size=1)
    pool = PreforkPool(
        FakeDocker(),  # type: ignore[arg-type]  # fakes of the Docker client and the puller
        FakePuller(missing=True),  # type: ignore[arg-type]
        DockerConfig(instance_id="unit", pool=config),
        config,
    )
    async with anyio.create_task_group() as tg:
        with pytest.raises(ImageNotFoundError, match="make images"):
            await tg.start(pool.run)
    await pool.aclose()


@pytest.mark.anyio
async def test_cancelled_without_aclose_still_removes_its_slots_in_bounded_time() -> None:
    docker = FakeDocker(create_delay_s=0.2)
    pool = fake_pool(docker, min_size=3, max_size=3, close_timeout_s=2.0)
    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await anyio.sleep(0.05)  # creations in flight
        tg.cancel_scope.cancel()
    assert anyio.current_time() - started < 2.0
    assert docker.containers == {}
