"""Freezing through the cgroup freezer on a real dockerd, the Engine API fallback (forced, and
where no cgroup is found), and nothing left frozen by a kill, a removal or a crash."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from drivers import ContainerTask, RunStatus, TaskLogger
from drivers.docker import INSTANCE_LABEL, MANAGED_LABEL, DockerConfig, DockerCookie, DockerDriver
from drivers.docker import freezer as freezer_module
from drivers.docker.freezer import FreezerMode, find_freezer
from tests.helpers import poll
from tests.system.helpers import BUSYBOX

pytestmark = pytest.mark.anyio

# Prints a line every 10 ms: its output stops while it is frozen.
COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; usleep 10000; done"]


def freezer_state(api: docker.APIClient, container_id: str) -> str:
    pid = int(api.inspect_container(container_id)["State"]["Pid"])
    found = find_freezer(pid, container_id)
    assert found is not None, "no cgroup freezer found for the container"
    return found.state()


@asynccontextmanager
async def counting(driver: DockerDriver, out: io.BytesIO) -> AsyncIterator[DockerCookie]:
    task = ContainerTask(
        id=f"t{time.monotonic_ns()}",
        image=BUSYBOX,
        command=COUNTER,
        logger=TaskLogger(stdout=out, stderr=io.BytesIO()),
    )
    async with await driver.create_cookie(task) as cookie, anyio.create_task_group() as tg:
        await driver.prepare_cookie(cookie)
        waiter = await cookie.run()
        tg.start_soon(waiter.wait)
        await poll(lambda: out.getvalue().count(b"\n") > 2, "the counter to count", timeout_s=10)
        yield cookie
        tg.cancel_scope.cancel()


async def assert_stopped_then_resumes(cookie: DockerCookie, out: io.BytesIO) -> None:
    """Output stops while frozen (observed over a while: no state to poll for an absence),
    and goes on after the thaw."""
    await anyio.sleep(0.2)  # output already written may still be on its way
    seen = len(out.getvalue())
    await anyio.sleep(0.3)
    assert len(out.getvalue()) == seen, "the frozen container kept running"
    await cookie.unfreeze()
    assert cookie.frozen_by is None
    await poll(lambda: len(out.getvalue()) > seen, "the thawed container to count", timeout_s=5)


@pytest.fixture
async def api_driver(instance_id: str) -> AsyncIterator[DockerDriver]:
    async with DockerDriver(DockerConfig(instance_id=instance_id, freezer=FreezerMode.API)) as made:
        yield made


async def test_freeze_through_the_cgroup_stops_every_process_and_docker_does_not_know(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    out = io.BytesIO()
    async with counting(driver, out) as cookie:
        cid = cookie.container_id
        assert cid is not None
        await cookie.freeze()
        assert cookie.frozen_by is FreezerMode.CGROUP
        assert freezer_state(docker_api, cid) == "FROZEN"
        state = docker_api.inspect_container(cid)["State"]
        assert state["Running"] and not state["Paused"]  # documented: Docker is not told
        await assert_stopped_then_resumes(cookie, out)
        assert freezer_state(docker_api, cid) == "THAWED"


async def test_forced_api_freezes_through_docker_pause(
    api_driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    out = io.BytesIO()
    async with counting(api_driver, out) as cookie:
        await cookie.freeze()
        assert cookie.frozen_by is FreezerMode.API
        assert docker_api.inspect_container(cookie.container_id)["State"]["Paused"]
        await assert_stopped_then_resumes(cookie, out)
        assert not docker_api.inspect_container(cookie.container_id)["State"]["Paused"]


async def test_without_a_cgroup_freezer_it_falls_back_to_the_api(
    driver: DockerDriver,
    docker_api: docker.APIClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(freezer_module, "CGROUP_ROOT", tmp_path)  # no freezer in there
    out = io.BytesIO()
    async with counting(driver, out) as cookie:
        await cookie.freeze()
        assert cookie.frozen_by is FreezerMode.API
        assert docker_api.inspect_container(cookie.container_id)["State"]["Paused"]
        await assert_stopped_then_resumes(cookie, out)


async def test_a_frozen_container_is_killed_and_removed_leaving_nothing_frozen(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    task = ContainerTask(id=f"t{time.monotonic_ns()}", image=BUSYBOX, command=["sleep", "60"])
    cookie = await driver.create_cookie(task)
    await driver.prepare_cookie(cookie)
    waiter = await cookie.run()
    cid = cookie.container_id
    assert cid is not None
    await cookie.freeze()
    assert freezer_state(docker_api, cid) == "FROZEN"
    await cookie.kill()
    with anyio.fail_after(10):
        result = await waiter.wait()
    assert result.status is not RunStatus.SUCCESS
    assert cookie.frozen_by is None
    await cookie.aclose()
    with pytest.raises(docker.errors.NotFound):
        docker_api.inspect_container(cid)


async def test_a_frozen_container_is_removed_by_aclose(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    task = ContainerTask(id=f"t{time.monotonic_ns()}", image=BUSYBOX, command=["sleep", "60"])
    cookie = await driver.create_cookie(task)
    await driver.prepare_cookie(cookie)
    await cookie.run()
    cid = cookie.container_id
    pid = int(docker_api.inspect_container(cid)["State"]["Pid"])
    found = find_freezer(pid, str(cid))
    assert found is not None
    await cookie.freeze()
    with anyio.fail_after(10):
        await cookie.aclose()
    with pytest.raises(docker.errors.NotFound):
        docker_api.inspect_container(cid)
    assert not found.path.exists(), "the container's cgroup is still there"


async def test_the_start_up_sweep_thaws_and_removes_a_frozen_leftover(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    labels: dict[str, Any] = {MANAGED_LABEL: "1", INSTANCE_LABEL: instance_id}
    made = docker_api.create_container(BUSYBOX, ["sleep", "60"], labels=labels)
    docker_api.start(made["Id"])
    pid = int(docker_api.inspect_container(made["Id"])["State"]["Pid"])
    found = find_freezer(pid, made["Id"])
    assert found is not None
    await found.freeze()  # as a killed agent would leave it
    async with DockerDriver(DockerConfig(instance_id=instance_id)) as driver:
        assert await driver.remove_leftovers() == 1
    with pytest.raises(docker.errors.NotFound):
        docker_api.inspect_container(made["Id"])
