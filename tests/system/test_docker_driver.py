"""The Docker driver on a real dockerd: defaults, lifecycle, failures."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import docker
import pytest

from drivers import ContainerTask, RunStatus, TaskLogger
from drivers.docker import DockerConfig, DockerCookie, DockerDriver
from drivers.docker.freezer import FreezerMode
from drivers.errors import (
    ClosedError,
    DockerUnavailableError,
    ImageNotFoundError,
    OutOfMemoryError,
)
from tests.system.helpers import BUSYBOX

pytestmark = pytest.mark.anyio


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


def task(command: list[str], **fields: Any) -> ContainerTask:
    return ContainerTask(id=f"t{time.monotonic_ns()}", image=BUSYBOX, command=command, **fields)


async def run_task(driver: DockerDriver, made: ContainerTask) -> tuple[Any, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    made.logger = TaskLogger(stdout=out, stderr=err)
    async with await driver.create_cookie(made) as cookie:
        await driver.prepare_cookie(cookie)
        result = await (await cookie.run()).wait()
    return result, out.getvalue(), err.getvalue()


async def test_ping_answers_while_every_call_thread_is_taken(driver: DockerDriver) -> None:
    await driver.ping()  # connected
    limiter = driver.client.limiter
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for borrower in borrowers:
        await limiter.acquire_on_behalf_of(borrower)
    try:
        with anyio.fail_after(5):
            await driver.ping()
    finally:
        for borrower in borrowers:
            limiter.release_on_behalf_of(borrower)


async def test_ping_of_a_daemon_that_is_not_there_is_a_clear_503(instance_id: str) -> None:
    config = DockerConfig(instance_id=instance_id, docker_host="unix:///nonexistent/docker.sock")
    async with DockerDriver(config) as absent:
        with pytest.raises(DockerUnavailableError, match="cannot connect to the Docker daemon"):
            await absent.ping()


async def test_stdin_round_trip_is_byte_exact(driver: DockerDriver) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    result, out, _ = await run_task(driver, task(["cat"], input=chunks(data)))
    assert result.status is RunStatus.SUCCESS
    assert out == data


async def test_stdout_and_stderr_are_kept_apart(driver: DockerDriver) -> None:
    result, out, err = await run_task(driver, task(["sh", "-c", "echo out; echo err >&2"]))
    assert result.ok
    assert (out, err) == (b"out\n", b"err\n")


async def test_exit_code_is_an_error_with_the_code(driver: DockerDriver) -> None:
    result, _, _ = await run_task(driver, task(["sh", "-c", "exit 42"]))
    assert result.status is RunStatus.ERROR
    assert result.exit_code == 42
    assert result.error is not None and "42" in result.error.message


async def test_timeout_kills_within_a_second_of_the_limit(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    started = time.monotonic()
    result, _, _ = await run_task(driver, task(["sleep", "60"], timeout_s=1.0))
    assert result.status is RunStatus.TIMEOUT
    assert time.monotonic() - started < 1.0 + 1.0 + 0.5  # limit + 1 s, plus create/remove


async def test_out_of_memory_is_reported_as_such(driver: DockerDriver) -> None:
    hog = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"
    result, out, _ = await run_task(driver, task(["sh", "-c", hog], memory_bytes=16 << 20))
    assert result.status is RunStatus.KILLED
    assert isinstance(result.error, OutOfMemoryError)
    assert "out of memory" in result.error.message and "16 MiB" in result.error.message
    assert b"survived" not in out


async def test_cancelled_wait_kills_and_reports_cancelled(driver: DockerDriver) -> None:
    made = task(["sleep", "60"])
    async with await driver.create_cookie(made) as cookie:
        await driver.prepare_cookie(cookie)
        waiter = await cookie.run()
        with anyio.move_on_after(0.5):
            await waiter.wait()
        assert waiter.result is not None  # type: ignore[attr-defined]
        assert waiter.result.status is RunStatus.CANCELLED  # type: ignore[attr-defined]


async def test_freeze_and_unfreeze_through_the_api_show_in_docker_state(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    config = DockerConfig(instance_id=instance_id, freezer=FreezerMode.API)
    async with (
        DockerDriver(config) as driver,
        await driver.create_cookie(task(["sleep", "60"])) as cookie,
    ):
        await driver.prepare_cookie(cookie)
        await cookie.run()

        def state() -> dict[str, Any]:
            found: dict[str, Any] = docker_api.inspect_container(cookie.container_id)["State"]
            return found

        assert state()["Running"] and not state()["Paused"]
        await cookie.freeze()
        assert state()["Paused"]
        await cookie.unfreeze()
        assert not state()["Paused"] and state()["Running"]


async def test_aclose_is_idempotent_and_removes_the_container(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    cookie = await driver.create_cookie(task(["sleep", "60"]))
    await driver.prepare_cookie(cookie)
    await cookie.run()
    container_id = cookie.container_id
    await cookie.aclose()
    await cookie.aclose()
    with pytest.raises(docker.errors.NotFound):
        docker_api.inspect_container(container_id)
    with pytest.raises(ClosedError):
        await cookie.freeze()


async def test_driver_close_removes_open_containers(
    instance_id: str, docker_api: docker.APIClient
) -> None:
    async with DockerDriver(DockerConfig(instance_id=instance_id)) as driver:
        cookie = await driver.create_cookie(task(["sleep", "60"]))
        await driver.prepare_cookie(cookie)
        await cookie.run()
        assert len(await driver.containers()) == 1
    assert (
        docker_api.containers(all=True, filters={"label": f"fnagent.instance={instance_id}"}) == []
    )


async def test_missing_image_with_pull_never_is_not_found(instance_id: str) -> None:
    from drivers.docker import PullPolicy

    config = DockerConfig(instance_id=instance_id, pull_policy=PullPolicy.NEVER)
    async with DockerDriver(config) as driver:
        made = ContainerTask(id="missing", image="fnagent/no-such-image:1")
        cookie = await driver.create_cookie(made)
        with pytest.raises(ImageNotFoundError, match="not present locally"):
            await driver.prepare_cookie(cookie)
        await cookie.aclose()


async def test_present_image_is_created_without_an_inspect(
    driver: DockerDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    call_sync = driver.client.call_sync

    async def spy(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        steps.append(what)
        return await call_sync(what, fn, *args, **kwargs)

    monkeypatch.setattr(driver.client, "call_sync", spy)
    result, out, _ = await run_task(driver, task(["echo", "hi"]))
    assert result.ok and out == b"hi\n"
    assert not [step for step in steps if step.startswith("inspect image")], steps


# Security defaults (docs/design.md), seen from Docker and from inside the container.


async def test_security_defaults_in_docker_inspect(
    driver: DockerDriver, docker_api: docker.APIClient
) -> None:
    made = task(["sleep", "60"], memory_bytes=64 << 20, cpus_mcpus=500, labels={"fn_id": "f1"})
    async with await driver.create_cookie(made) as cookie:
        await driver.prepare_cookie(cookie)
        info = docker_api.inspect_container(cookie.container_id)
    host, config = info["HostConfig"], info["Config"]
    assert config["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["Memory"] == host["MemorySwap"] == 64 << 20
    assert (host["CpuQuota"], host["CpuPeriod"]) == (50_000, 100_000)
    assert host["PidsLimit"] == 50
    limits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert limits == {
        "nofile": (350, 350),
        "memlock": (65536, 65536),
        "sigpending": (5000, 5000),
        "msgqueue": (819200, 819200),
    }
    assert host["Init"] is True
    assert host["LogConfig"]["Type"] == "none"
    assert config["Labels"]["fnagent.managed"] == "1"
    assert config["Labels"]["fn_id"] == "f1"


async def test_security_defaults_from_inside(driver: DockerDriver) -> None:
    script = (
        "id -u; id -g; grep CapEff /proc/self/status; "
        "touch /root-write 2>/dev/null && echo root-writable || echo root-readonly; "
        "echo x > /tmp/f && echo tmp-writable; "
        "cat /proc/1/cmdline | tr '\\0' ' '"
    )
    result, out, _ = await run_task(driver, task(["sh", "-c", script]))
    assert result.ok, result
    lines = out.decode().splitlines()
    assert lines[0:2] == ["1000", "1000"]
    assert lines[2].split() == ["CapEff:", "0000000000000000"]
    assert lines[3:5] == ["root-readonly", "tmp-writable"]
    assert "init" in lines[5]  # pid 1 is docker-init (tini), not the function


async def test_pids_limit_confines_a_fork_bomb(driver: DockerDriver) -> None:
    script = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo all-started"
    result, out, err = await run_task(driver, task(["sh", "-c", script], timeout_s=20))
    assert result.status is RunStatus.ERROR
    assert b"can't fork" in err
    assert b"all-started" not in out


class ExtensionEnvDriver(DockerDriver):
    """Fn's call-extension example: a custom driver sets an env var from task.extensions."""

    async def create_cookie(self, task: ContainerTask) -> DockerCookie:
        cookie = await super().create_cookie(task)
        if "greeting" in task.extensions:
            cookie.container_options["Env"].append(f"GREETING={task.extensions['greeting']}")
        return cookie


async def test_custom_driver_edits_options_from_extensions(instance_id: str) -> None:
    async with ExtensionEnvDriver(DockerConfig(instance_id=instance_id)) as driver:
        made = task(["sh", "-c", "echo $GREETING"], extensions={"greeting": "hola"})
        result, out, _ = await run_task(driver, made)
    assert result.ok
    assert out == b"hola\n"
