"""The driver conformance suite (fnagent.testing.driver_conformance) on the Docker driver."""

import os

import pytest

from drivers.docker import DockerConfig, DockerDriver
from drivers.docker.config import secrets_root
from fnagent.testing.driver_conformance import CASES, Case, Images
from tests.system.helpers import BUSYBOX

IMAGES = Images(busybox=BUSYBOX)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_docker_driver_conforms(case: Case, instance_id: str) -> None:
    config = DockerConfig(instance_id=instance_id)
    async with DockerDriver(config) as driver:
        await case(driver, IMAGES)
        assert await driver.containers() == [], "the case left a container behind"
        assert _entries(secrets_root(config)) == [], "the case left secret files behind"
    assert (
        _entries(os.path.dirname(secrets_root(config))).count(
            os.path.basename(secrets_root(config))
        )
        == 0
    ), "the driver left its secrets root behind"


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
