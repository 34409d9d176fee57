"""FN_LOG_PIPE: how a hot container's output reaches the agent (``direct``, through FIFOs in a
dir of its own, or ``docker``, attached), from the setting to the agent's task and the Docker
driver's create options."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest

from drivers.base import ContainerTask
from drivers.docker.config import DockerConfig, container_options
from drivers.docker.pipes import PIPES_MOUNT, SHELL_MOUNT, check_static_shell
from drivers.fake import ProgramContext
from fnagent.config import DEFAULT_LOG_PIPE_SHELL, AgentConfig
from fnagent.errors import InvalidInputError
from fnagent.testing.fakefn import Answer, Request
from tests.unit.helpers import handler_of, make_call, make_fn, running

pytestmark = pytest.mark.anyio


def test_direct_is_the_default_and_docker_the_other_choice() -> None:
    assert AgentConfig.from_env({}).log_pipe == "direct"
    assert AgentConfig.from_env({"FN_LOG_PIPE": " Docker "}).log_pipe == "docker"
    with pytest.raises(InvalidInputError, match="FN_LOG_PIPE must be direct or docker, got 'x'"):
        AgentConfig.from_env({"FN_LOG_PIPE": "x"})


def test_the_driver_gets_the_shell_only_for_direct_output() -> None:
    direct = AgentConfig.from_env({"FN_LOG_PIPE_SHELL": "/opt/busybox"})
    assert direct.docker_config().output_shell == "/opt/busybox"
    assert AgentConfig.from_env({}).docker_config().output_shell == DEFAULT_LOG_PIPE_SHELL
    assert AgentConfig.from_env({"FN_LOG_PIPE": "docker"}).docker_config().output_shell is None


def binds(task: ContainerTask, shell: str | None) -> list[str]:
    config = DockerConfig(instance_id="i", output_shell=shell)
    found: list[str] = container_options(task, config, "none")["HostConfig"]["Binds"]
    return found


def test_a_task_with_an_output_dir_gets_the_shell_and_its_dir_read_only() -> None:
    task = ContainerTask(id="t", image="i", uds_path="/s/iofs", output_dir="/s/out")
    assert binds(task, "/bin/busybox") == [
        "/s/iofs:/tmp/iofs",
        f"/bin/busybox:{SHELL_MOUNT}:ro",
        f"/s/out:{PIPES_MOUNT}:ro",
    ]
    # Without a shell, or without an output dir (a one-off run), output stays attached.
    assert binds(task, None) == ["/s/iofs:/tmp/iofs"]
    attached = ContainerTask(id="t", image="i", uds_path="/s/iofs")
    assert binds(attached, "/bin/busybox") == ["/s/iofs:/tmp/iofs"]


def test_the_shell_must_be_a_static_executable(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        check_static_shell(str(tmp_path / "missing"))
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    with pytest.raises(InvalidInputError, match="not a static executable"):
        check_static_shell(str(script))
    python = os.path.realpath("/proc/self/exe")  # dynamically linked
    with pytest.raises(InvalidInputError, match="not a static executable"):
        check_static_shell(python)
    if os.path.exists("/bin/busybox"):
        check_static_shell("/bin/busybox")


async def output_dirs(**config: Any) -> list[tuple[str | None, str | None]]:
    """Two hot containers' (output_dir, uds_path), with the output dir's mode while each ran."""
    seen: list[tuple[str | None, str | None]] = []
    modes: list[int] = []

    async def record(request: Request, ctx: ProgramContext) -> Answer:
        task = ctx.task
        if task.output_dir is not None:
            modes.append(stat.S_IMODE(os.stat(task.output_dir).st_mode))
        seen.append((task.output_dir, task.uds_path))
        await ctx.sleep(0.2)
        return Answer()

    async with running({"fn/echo": handler_of(record)}, **config) as (agent, _):
        fn = make_fn()
        answers: list[int] = []

        async def one() -> None:
            answers.append((await agent.submit(make_call(fn))).status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
        assert answers == [200, 200]
    assert modes in ([], [0o711, 0o711])
    return seen


async def test_each_hot_container_writes_into_a_dir_of_its_own_beside_its_socket_dir() -> None:
    seen = await output_dirs()
    assert len({out for out, _ in seen}) == 2
    for out, uds in seen:
        assert out is not None and uds is not None
        # Beside the mounted socket dir, not in it: the function cannot replace the FIFOs.
        assert os.path.dirname(out) == os.path.dirname(uds) and out != uds


async def test_with_docker_the_output_stays_attached() -> None:
    seen = await output_dirs(log_pipe="docker")
    assert [out for out, _ in seen] == [None, None]


async def test_the_docker_driver_refuses_a_shell_that_is_not_static_at_start(
    tmp_path: Path,
) -> None:
    from drivers.docker import DockerDriver

    driver = DockerDriver(DockerConfig(instance_id="i", output_shell=str(tmp_path / "none")))
    with pytest.raises(InvalidInputError, match="or set FN_LOG_PIPE=docker"):
        async with driver:
            pass
