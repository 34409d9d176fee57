"""Fixtures for tests on a real dockerd (`make test` starts one and builds the images).

Every container made here carries ``fnagent.managed=1`` and an instance label that starts with
this session's prefix; the session ends by asserting that none is left, then removing any that
are (never a container another session or person made).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker import INSTANCE_LABEL, MANAGED_LABEL, DockerConfig, DockerDriver
from tests.helpers import wait_for
from tests.system.helpers import (
    FN_TEST,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    SESSION_PREFIX,
    free_port,
    new_instance_id,
    require_image,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


def session_containers(api: docker.APIClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.containers(all=True, filters={"label": MANAGED_LABEL})
    return [c for c in listed if c["Labels"].get(INSTANCE_LABEL, "").startswith(SESSION_PREFIX)]


@pytest.fixture(scope="session")
def docker_api() -> Iterator[docker.APIClient]:
    try:
        api = docker.APIClient(version="auto")
    except docker.errors.DockerException as exc:
        pytest.exit(f"no Docker daemon answers ({exc}); run `make docker` first", returncode=3)
    yield api
    leaked = session_containers(api)
    for container in leaked:
        api.remove_container(container["Id"], force=True, v=True)
    api.close()
    assert not leaked, f"tests leaked containers: {[c['Names'] for c in leaked]}"


@pytest.fixture
def instance_id(docker_api: docker.APIClient) -> Iterator[str]:
    """A fresh instance label for one test; the test fails if it leaves a container."""
    value = new_instance_id()
    yield value
    left = [
        c for c in docker_api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={value}"})
    ]
    for container in left:
        docker_api.remove_container(container["Id"], force=True, v=True)
    assert not left, f"the test left containers behind: {[c['Names'] for c in left]}"


@pytest.fixture
async def driver(instance_id: str) -> AsyncIterator[DockerDriver]:
    async with DockerDriver(DockerConfig(instance_id=instance_id)) as made:
        yield made


@pytest.fixture
def server(tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient) -> Iterator[Any]:
    """A live `fnagent serve` (tests/system/server.py) for one test; it must exit 0 on SIGTERM."""
    from tests.system.server import make_server

    require_image(docker_api, FN_TEST)
    made = make_server(tmp_path, cli_env).start()
    yield made
    if made.process is not None:
        assert made.stop() == 0


@pytest.fixture
def cli_env(instance_id: str) -> dict[str, str]:
    """The environment for `fnagent` subprocesses: their containers carry this test's label,
    and `fnagent run` runs in its own process (nothing listens at FN_API_URL's port 1, while a
    `make serve` on the default port would take the run: test_run_cli.py tests both)."""
    return {**os.environ, "FNAGENT_INSTANCE_ID": instance_id, "FN_API_URL": "http://127.0.0.1:1"}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 with htpasswd auth; yields its host:port."""
    binary = shutil.which("docker-registry")
    htpasswd = shutil.which("htpasswd")
    if not binary or not htpasswd:
        pytest.fail("docker-registry and htpasswd are needed: run `make test-tools`")
    root = tmp_path_factory.mktemp("registry")
    users = root / "htpasswd"
    hashed = subprocess.run(
        [htpasswd, "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    users.write_text(hashed)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: fnagent-tests\n    path: {users}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(port), "the registry to listen", timeout_s=20)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
