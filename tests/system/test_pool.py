"""The prefork pool on a real dockerd (issue #3): filling, sharing a slot's network, replacing
dead slots, use-once, the creation rate, fallback, growing and shrinking, closing, isolation."""

from __future__ import annotations

import io
import time
from typing import Any

import docker
import pytest

from drivers import ContainerTask, RunResult, TaskLogger
from drivers.docker import DockerConfig, DockerDriver
from drivers.docker.config import INSTANCE_LABEL, ROLE_LABEL, PoolConfig
from drivers.docker.pool import PREFORK_ROLE
from drivers.errors import ImageNotFoundError
from tests.helpers import poll
from tests.system.helpers import BUSYBOX, new_instance_id, run_cli

pytestmark = pytest.mark.anyio


def pooled(instance_id: str, *, networks: tuple[str, ...] = (), **fields: Any) -> DockerDriver:
    pool = PoolConfig(**{"min_size": 2, "max_size": 2, **fields})
    return DockerDriver(DockerConfig(instance_id=instance_id, networks=networks, pool=pool))


def slot_containers(api: docker.APIClient, instance_id: str) -> list[dict[str, Any]]:
    labels = [f"{INSTANCE_LABEL}={instance_id}", f"{ROLE_LABEL}={PREFORK_ROLE}"]
    listed: list[dict[str, Any]] = api.containers(all=True, filters={"label": labels})
    return listed


def running_slot_ids(api: docker.APIClient, instance_id: str) -> set[str]:
    return {c["Id"] for c in slot_containers(api, instance_id) if c["State"] == "running"}


def task(command: list[str], **fields: Any) -> ContainerTask:
    return ContainerTask(id=f"t{time.monotonic_ns()}", image=BUSYBOX, command=command, **fields)


async def run_task(driver: DockerDriver, made: ContainerTask) -> tuple[RunResult, bytes, str]:
    """Run ``made`` to its end; returns the result, stdout and the container's NetworkMode."""
    out = io.BytesIO()
    made.logger = TaskLogger(stdout=out)
    async with await driver.create_cookie(made) as cookie:
        await driver.prepare_cookie(cookie)
        result = await (await cookie.run()).wait()
        network: str = cookie.container_options["HostConfig"]["NetworkMode"]
    return result, out.getvalue(), network


def exec_output(api: docker.APIClient, container_id: str, command: list[str]) -> bytes:
    started = api.exec_create(container_id, command)
    output: bytes = api.exec_start(started["Id"])
    return output


async def test_pool_fills_to_n_with_labelled_busybox_slots(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, min_size=3, max_size=3) as driver:
        assert driver.pool is not None
        await poll(
            lambda: driver.pool and driver.pool.usage().free == 3, "3 free slots", timeout_s=20.0
        )
        assert "in_use=0 free=3 starting=0" in repr(driver.pool)
        listed = slot_containers(docker_api, instance_id)
        assert {c["Id"] for c in listed} == set(driver.pool.free_ids())
        for container in listed:
            assert container["State"] == "running"
            assert container["Image"] == BUSYBOX
            assert container["Command"] == "tail -f /dev/null"
            assert container["Labels"]["fnagent.managed"] == "1"
        info = docker_api.inspect_container(listed[0]["Id"])
        assert info["HostConfig"]["LogConfig"]["Type"] == "none"


async def test_function_container_has_the_slots_network(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, min_size=1, max_size=1) as driver:
        assert driver.pool is not None
        (slot,) = await poll(driver.pool.free_ids, "a free slot", timeout_s=20.0)
        slot_ip = docker_api.inspect_container(slot)["NetworkSettings"]["IPAddress"]
        slot_interfaces = exec_output(docker_api, slot, ["ls", "/sys/class/net"]).split()
        made = task(["sh", "-c", "ip -o -4 addr show eth0; echo ---; ls /sys/class/net"])
        made.logger = TaskLogger(stdout=(out := io.BytesIO()))
        async with await driver.create_cookie(made) as cookie:
            assert driver.pool.usage().in_use == 1
            await driver.prepare_cookie(cookie)
            assert cookie.container_id is not None
            info = docker_api.inspect_container(cookie.container_id)
            assert info["HostConfig"]["NetworkMode"] == f"container:{slot}"
            result = await (await cookie.run()).wait()
        assert result.ok, result
        addresses, _, interfaces = out.getvalue().partition(b"---\n")
        assert f"inet {slot_ip}/".encode() in addresses
        assert sorted(interfaces.split()) == sorted(slot_interfaces)
        assert driver.pool.usage() == (0, 1, 0)  # the cookie's close gave the slot back
        assert driver.pool.free_ids() == [slot]


async def test_a_slot_killed_or_removed_from_outside_is_replaced(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id) as driver:
        pool = driver.pool
        assert pool is not None
        await poll(lambda: pool.usage().free == 2, "2 free slots", timeout_s=20.0)
        killed, removed = pool.free_ids()
        docker_api.kill(killed)
        docker_api.remove_container(removed, force=True)

        def replaced() -> bool:
            free = set(pool.free_ids())
            return len(free) == 2 and not free & {killed, removed}

        await poll(replaced, "both slots replaced", timeout_s=20.0)
        assert running_slot_ids(docker_api, instance_id) == set(pool.free_ids())
        # the nanny removed its dead container: nothing stopped is left behind
        await poll(
            lambda: len(slot_containers(docker_api, instance_id)) == 2,
            "the dead slot removed",
            timeout_s=20.0,
        )


async def test_a_slot_dying_after_it_was_lent_falls_back_at_start(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, min_size=1, max_size=1) as driver:
        assert driver.pool is not None
        (slot,) = await poll(driver.pool.free_ids, "a free slot", timeout_s=20.0)
        made = task(["echo", "ran"])
        made.logger = TaskLogger(stdout=(out := io.BytesIO()))
        async with await driver.create_cookie(made) as cookie:
            await driver.prepare_cookie(cookie)
            assert cookie.container_options["HostConfig"]["NetworkMode"] == f"container:{slot}"
            docker_api.kill(slot)
            await poll(
                lambda: not docker_api.inspect_container(slot)["State"]["Running"],
                "slot dead",
                timeout_s=20.0,
            )
            result = await (await cookie.run()).wait()
            network = cookie.container_options["HostConfig"]["NetworkMode"]
        assert result.ok, result
        assert out.getvalue() == b"ran\n"
        assert not network.startswith("container:")


async def test_use_once_gives_a_different_slot_every_time(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, use_once=True) as driver:
        pool = driver.pool
        assert pool is not None
        used = []
        for _ in range(4):
            await poll(lambda: pool.usage().free >= 1, "a fresh slot", timeout_s=20.0)
            result, _, network = await run_task(driver, task(["true"]))
            assert result.ok, result
            assert network.startswith("container:")
            used.append(network.removeprefix("container:"))
            # killed once freed: its namespace never serves a second function
            await poll(
                lambda: used[-1] not in running_slot_ids(docker_api, instance_id),
                "the used slot to be killed",
                timeout_s=20.0,
            )
        assert len(set(used)) == 4
        await poll(lambda: pool.usage().free == 2, "the pool to refill", timeout_s=20.0)


async def test_slot_creation_rate_never_exceeds_the_limiter(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    rate, burst, size = 5.0, 2, 8
    since = time.time() - 0.5
    async with pooled(
        instance_id, min_size=size, max_size=size, rate_per_s=rate, burst=burst
    ) as driver:
        assert driver.pool is not None
        await poll(
            lambda: driver.pool and driver.pool.usage().free == size,
            f"{size} free slots",
            timeout_s=20.0,
        )
    until = time.time() + 0.5
    events = docker_api.events(
        since=since,
        until=until,
        decode=True,
        filters={
            "type": "container",
            "event": "create",
            "label": [f"{INSTANCE_LABEL}={instance_id}", f"{ROLE_LABEL}={PREFORK_ROLE}"],
        },
    )
    times = sorted(event["timeNano"] / 1e9 for event in events)
    assert len(times) == size  # nothing failed, so one creation per slot
    # Leaky bucket: at most burst + rate * t creations within any t seconds. The daemon's
    # timestamps trail the limiter by a create's latency, so allow one extra.
    for first in range(len(times)):
        for last in range(first, len(times)):
            within = times[last] - times[first]
            assert last - first + 1 <= burst + rate * within + 1, (first, last, within)
    assert times[-1] - times[0] >= (size - burst - 1) / rate


async def test_an_empty_pool_falls_back_and_the_call_still_runs(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, min_size=1, max_size=1) as driver:
        pool = driver.pool
        assert pool is not None
        (slot,) = await poll(pool.free_ids, "a free slot", timeout_s=20.0)
        async with await driver.create_cookie(task(["sleep", "30"])) as holder:
            assert holder.container_options["HostConfig"]["NetworkMode"] == f"container:{slot}"
            result, out, network = await run_task(driver, task(["echo", "fell back"]))
            assert result.ok, result
            assert out == b"fell back\n"
            assert network == "default"
            # a function without network never takes a slot
            result, _, network = await run_task(driver, task(["true"], network_disabled=True))
            assert result.ok and network == "none"
        assert pool.usage() == (0, 1, 0)


async def test_pool_grows_on_demand_and_shrinks_when_idle(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with pooled(instance_id, min_size=1, max_size=3, idle_shrink_s=1.0) as driver:
        pool = driver.pool
        assert pool is not None
        await poll(lambda: pool.usage().free == 1, "the minimum", timeout_s=20.0)
        cookies = [await driver.create_cookie(task(["true"]))]
        # A container nobody waits for takes no slot from an empty pool, nor grows it.
        quiet = await driver.create_cookie(task(["true"], background=True))
        assert quiet.container_options["HostConfig"]["NetworkMode"] == "default"
        assert pool.size == 1
        await quiet.aclose()
        cookies += [await driver.create_cookie(task(["true"])) for _ in range(2)]
        modes = [c.container_options["HostConfig"]["NetworkMode"] for c in cookies]
        assert modes[0].startswith("container:") and modes[1:] == ["default", "default"]
        assert pool.size == 3  # one more slot per miss
        await poll(lambda: pool.usage() == (1, 2, 0), "the pool to grow to 3", timeout_s=20.0)
        cookies += [await driver.create_cookie(task(["true"])) for _ in range(3)]
        assert pool.size == 3 and pool.usage() == (3, 0, 0)  # never beyond max
        assert len(running_slot_ids(docker_api, instance_id)) == 3
        for cookie in cookies:
            await cookie.aclose()
        await poll(
            lambda: pool.size == 1 and pool.usage() == (0, 1, 0), "the shrink", timeout_s=20.0
        )
        await poll(
            lambda: len(slot_containers(docker_api, instance_id)) == 1,
            "the idle slots removed",
            timeout_s=20.0,
        )


async def test_close_leaves_nothing_even_while_filling(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    # Closed at once: slot creations are in flight and must still be removed.
    async with pooled(instance_id, min_size=6, max_size=6, close_timeout_s=10):
        pass
    assert (
        docker_api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={instance_id}"}) == []
    )
    # Closed full, with a function container in a slot.
    async with pooled(instance_id, min_size=4, max_size=4) as driver:
        assert driver.pool is not None
        await poll(
            lambda: driver.pool and driver.pool.usage().free == 4, "4 free slots", timeout_s=20.0
        )
        cookie = await driver.create_cookie(task(["sleep", "30"]))
        await driver.prepare_cookie(cookie)
        await cookie.run()
        started = time.monotonic()
    assert time.monotonic() - started < 10
    assert (
        docker_api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={instance_id}"}) == []
    )
    assert "closed" in repr(driver.pool)


async def test_two_pools_on_one_daemon_stay_apart(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    other_id = new_instance_id("other")
    try:
        async with pooled(other_id) as theirs:
            assert theirs.pool is not None
            await poll(
                lambda: theirs.pool and theirs.pool.usage().free == 2, "theirs full", timeout_s=20.0
            )
            their_slots = set(theirs.pool.free_ids())
            async with pooled(instance_id) as ours:
                assert ours.pool is not None
                await poll(
                    lambda: ours.pool and ours.pool.usage().free == 2, "ours full", timeout_s=20.0
                )
                our_slots = set(ours.pool.free_ids())
                assert not our_slots & their_slots
                assert running_slot_ids(docker_api, instance_id) == our_slots
                assert running_slot_ids(docker_api, other_id) == their_slots
            # ours closed: theirs is untouched
            assert slot_containers(docker_api, instance_id) == []
            assert running_slot_ids(docker_api, other_id) == their_slots
            assert set(theirs.pool.free_ids()) == their_slots
    finally:
        left = slot_containers(docker_api, other_id)
        for container in left:
            docker_api.remove_container(container["Id"], force=True)
    assert left == []


async def test_an_error_inside_the_drivers_context_comes_out_unwrapped(instance_id: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with pooled(instance_id) as driver:
            assert driver.pool is not None
            await poll(driver.pool.free_ids, "a free slot", timeout_s=20.0)
            raise Boom()


async def test_a_missing_pool_image_fails_start_naming_make_images(instance_id: str) -> None:
    with pytest.raises(ImageNotFoundError, match="make images"):
        async with pooled(instance_id, image="fnagent/no-such-pool-image"):
            pass


def test_fnagent_run_prefork_joins_a_slot(
    cli_env: dict[str, str], instance_id: str, docker_api: docker.APIClient
) -> None:
    since = time.time() - 0.5
    done = run_cli(["run", "--prefork", "1", BUSYBOX, "hostname"], cli_env)
    until = time.time() + 0.5
    assert done.returncode == 0, done.stderr
    events = docker_api.events(
        since=since,
        until=until,
        decode=True,
        filters={
            "type": "container",
            "event": "create",
            "label": [f"{INSTANCE_LABEL}={instance_id}", f"{ROLE_LABEL}={PREFORK_ROLE}"],
        },
    )
    slots = {event["id"][:12] for event in events}
    assert slots, "no prefork slot was created"
    # A container joining another's network namespace shows that container's hostname.
    assert done.stdout.decode().strip() in slots
