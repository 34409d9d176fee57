"""A `fnagent run` killed with SIGKILL runs no cleanup of its own: nothing may be left anyway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker import INSTANCE_LABEL
from tests.helpers import wait_for
from tests.system.helpers import BUSYBOX, FN_TEST, require_image


def _containers(api: docker.APIClient, instance_id: str, **filters: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": f"{INSTANCE_LABEL}={instance_id}", **filters}
    )
    return listed


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["run", "--timeout", "300s", BUSYBOX, "sleep", "600"], b""),
        (["run", "--timeout", "300s", "--prefork", "1", BUSYBOX, "sleep", "600"], b""),
        (
            ["run", "--timeout", "300s", "--format", "http-stream", FN_TEST],
            b'{"sleep_ms": 600000}',
        ),
    ],
    ids=["cold", "cold-prefork", "http-stream"],
)
def test_a_sigkilled_run_leaves_no_container(
    cli_env: dict[str, str],
    instance_id: str,
    docker_api: docker.APIClient,
    tmp_path: Path,
    args: list[str],
    stdin: bytes,
) -> None:
    require_image(docker_api, FN_TEST)
    (tmp_path / "stdin").write_bytes(stdin)
    with (tmp_path / "stdin").open("rb") as source, (tmp_path / "stderr").open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "fnagent", *args],
            stdin=source,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=cli_env,
        )
    try:
        # Running: the function's container, and with --prefork the pool slot it joined.
        running = 2 if "--prefork" in args else 1
        wait_for(
            lambda: len(_containers(docker_api, instance_id, status="running")) == running,
            "the run's containers to be running",
            timeout_s=30,
        )
        socket_dirs = [
            bind.split(":")[0]
            for container in _containers(docker_api, instance_id)
            for bind in docker_api.inspect_container(container["Id"])["HostConfig"]["Binds"] or ()
        ]
        assert len(socket_dirs) == ("http-stream" in args)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -9
    wait_for(
        lambda: not _containers(docker_api, instance_id),
        "the killed run's container to be removed",
        timeout_s=30,
    )
    wait_for(
        lambda: not any(Path(path).exists() for path in socket_dirs),
        "the killed run's socket dir to be removed",
        timeout_s=30,
    )
