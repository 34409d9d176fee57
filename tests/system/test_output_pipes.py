"""Direct output on a real dockerd (drivers/docker/pipes.py): the function writes into the FIFOs
of its output dir itself, through the wrapper, whatever user it runs as; what the wrapper says
before the exec arrives attached; nothing written before the exit is lost."""

from __future__ import annotations

import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers import ContainerTask, RunResult, RunStatus, TaskLogger
from drivers.docker import DockerConfig, DockerDriver
from drivers.docker.pipes import PIPES_MOUNT
from tests.system.helpers import BUSYBOX

pytestmark = pytest.mark.anyio
SHELL = "/bin/busybox"
HAVE_SHELL = os.path.exists(SHELL)


@pytest.fixture
async def piped(instance_id: str) -> AsyncIterator[DockerDriver]:
    if not HAVE_SHELL:
        pytest.skip("needs Debian's busybox-static (/bin/busybox)")
    async with DockerDriver(DockerConfig(instance_id=instance_id, output_shell=SHELL)) as made:
        yield made


def output_dir(tmp_path: Path) -> str:
    path = tmp_path / "out"
    path.mkdir(mode=0o711)
    path.chmod(0o711)
    return str(path)


async def run(
    driver: DockerDriver, tmp_path: Path, command: list[str], **fields: Any
) -> tuple[RunResult, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    task = ContainerTask(
        id=f"t{time.monotonic_ns()}",
        image=BUSYBOX,
        command=command,
        output_dir=output_dir(tmp_path),
        logger=TaskLogger(stdout=out, stderr=err),
        **fields,
    )
    async with await driver.create_cookie(task) as cookie:
        await driver.prepare_cookie(cookie)
        result = await (await cookie.run()).wait()
    return result, out.getvalue(), err.getvalue()


SHOW_FDS = "echo out; echo err >&2; readlink /proc/self/fd/1; readlink /proc/self/fd/2"


@pytest.mark.parametrize("user", ["1000:1000", "65534:65534", None])
async def test_the_function_itself_writes_into_the_fifos_as_any_user(
    piped: DockerDriver, tmp_path: Path, user: str | None
) -> None:
    result, out, err = await run(piped, tmp_path, ["sh", "-c", SHOW_FDS], user=user)
    assert result.ok, (result, err)
    assert out == f"out\n{PIPES_MOUNT}/stdout\n{PIPES_MOUNT}/stderr\n".encode()
    assert err == b"err\n"


async def test_without_an_output_dir_the_output_stays_attached(
    piped: DockerDriver, tmp_path: Path
) -> None:
    out = io.BytesIO()
    task = ContainerTask(
        id=f"t{time.monotonic_ns()}",
        image=BUSYBOX,
        command=["readlink", "/proc/self/fd/1"],
        logger=TaskLogger(stdout=out),
    )
    async with await piped.create_cookie(task) as cookie:
        await piped.prepare_cookie(cookie)
        assert (await (await cookie.run()).wait()).ok
    assert out.getvalue().startswith(b"pipe:")


async def test_a_command_not_found_fails_with_the_wrapper_s_message_attached(
    piped: DockerDriver, tmp_path: Path
) -> None:
    result, out, err = await run(piped, tmp_path, ["no-such-program", "x"])
    assert result.status is RunStatus.ERROR and result.exit_code == 127
    assert err == b'exec: "no-such-program": executable file not found in $PATH\n'
    assert out == b""


async def test_everything_written_before_the_exit_is_read(
    piped: DockerDriver, tmp_path: Path
) -> None:
    # More than a pipe holds, and the exit right after: the rest is drained after the end.
    script = "i=0; while [ $i -lt 5000 ]; do echo line-$i; i=$((i+1)); done; echo bye >&2; exit 3"
    result, out, err = await run(piped, tmp_path, ["sh", "-c", script])
    assert result.exit_code == 3
    assert out.decode().splitlines() == [f"line-{i}" for i in range(5000)]
    assert err == b"bye\n"
