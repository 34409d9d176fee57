"""Pulls from a real registry (Debian's docker-registry on 127.0.0.1, htpasswd auth)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import docker
import pytest

from drivers import ContainerTask
from drivers.docker import DockerConfig, DockerDriver, PullPolicy
from drivers.errors import ImageNotFoundError, RegistryAuthError, RegistryUnreachableError
from tests.system.helpers import BUSYBOX, REGISTRY_PASSWORD, REGISTRY_USER, free_port, run_cli

pytestmark = pytest.mark.anyio

GOOD = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}


def auth_document(registry: str, user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}})


@pytest.fixture(scope="module")
def pushed(registry: str, docker_api: docker.APIClient) -> Iterator[str]:
    """A copy of the busybox image in the registry, absent locally; yields its reference."""
    repo = f"{registry}/fnagent/pull-test"
    docker_api.tag(BUSYBOX, repo, "v1")
    for message in docker_api.push(repo, "v1", auth_config=GOOD, stream=True, decode=True):
        assert "error" not in message, message
    docker_api.remove_image(f"{repo}:v1")
    yield f"{repo}:v1"


def forget(api: docker.APIClient, image: str) -> None:
    try:
        api.remove_image(image)
    except docker.errors.ImageNotFound:
        pass


async def ensure(instance_id: str, image: str, docker_auth: str | None) -> DockerDriver:
    config = DockerConfig(instance_id=instance_id, docker_auth=docker_auth)
    async with DockerDriver(config) as driver:
        await driver.puller.ensure(image)
    return driver


async def test_right_credentials_pull(
    pushed: str, registry: str, instance_id: str, docker_api: docker.APIClient
) -> None:
    forget(docker_api, pushed)
    driver = await ensure(instance_id, pushed, auth_document(registry, *GOOD.values()))
    assert driver.puller.pulls == 1
    docker_api.inspect_image(pushed)
    forget(docker_api, pushed)


async def test_wrong_credentials_fail_clearly(
    pushed: str, registry: str, instance_id: str, docker_api: docker.APIClient
) -> None:
    forget(docker_api, pushed)
    with pytest.raises((RegistryAuthError, ImageNotFoundError)) as caught:
        await ensure(instance_id, pushed, auth_document(registry, REGISTRY_USER, "wrong"))
    assert caught.value.status == 404
    assert "denied" in caught.value.message or "unauthorized" in caught.value.message


async def test_missing_tag_is_not_found(pushed: str, registry: str, instance_id: str) -> None:
    missing = pushed.replace(":v1", ":no-such-tag")
    with pytest.raises(ImageNotFoundError, match="not found"):
        await ensure(instance_id, missing, auth_document(registry, *GOOD.values()))


async def test_unreachable_registry(instance_id: str) -> None:
    with pytest.raises(RegistryUnreachableError, match="cannot reach the registry"):
        await ensure(instance_id, f"127.0.0.1:{free_port()}/fnagent/x:1", None)


async def test_concurrent_pulls_of_one_image_are_merged(
    pushed: str, registry: str, instance_id: str, docker_api: docker.APIClient
) -> None:
    forget(docker_api, pushed)
    config = DockerConfig(
        instance_id=instance_id, docker_auth=auth_document(registry, *GOOD.values())
    )
    async with DockerDriver(config) as driver:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(driver.puller.ensure, pushed)
        assert driver.puller.pulls == 1
        # Policy "always" pulls again even though the image is present now.
        await driver.puller.ensure(pushed, policy=PullPolicy.ALWAYS)
        assert driver.puller.pulls == 2
    forget(docker_api, pushed)


def test_cli_pulls_with_the_docker_config_file(
    pushed: str,
    registry: str,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    tmp_path: Path,
) -> None:
    forget(docker_api, pushed)
    (tmp_path / "config.json").write_text(auth_document(registry, *GOOD.values()))
    env = {**cli_env, "DOCKER_CONFIG": str(tmp_path)}
    done = run_cli(["run", pushed, "echo", "pulled"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"pulled\n"
    forget(docker_api, pushed)


def test_cli_wrong_credentials_exit_125(
    pushed: str, registry: str, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    forget(docker_api, pushed)
    env = {**cli_env, "FN_DOCKER_AUTH": auth_document(registry, REGISTRY_USER, "nope")}
    done = run_cli(["run", pushed, "true"], env)
    assert done.returncode == 125
    assert b"denied" in done.stderr or b"unauthorized" in done.stderr
    assert b"Traceback" not in done.stderr


async def test_a_task_on_a_pulled_image_runs(
    pushed: str, registry: str, instance_id: str, docker_api: docker.APIClient
) -> None:
    forget(docker_api, pushed)
    config = DockerConfig(
        instance_id=instance_id, docker_auth=auth_document(registry, *GOOD.values())
    )
    async with DockerDriver(config) as driver:
        task = ContainerTask(id="pulled", image=pushed, command=["true"])
        async with await driver.create_cookie(task) as cookie:
            await driver.prepare_cookie(cookie)
            assert (await (await cookie.run()).wait()).ok
    forget(docker_api, pushed)
