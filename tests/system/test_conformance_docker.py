"""The driver conformance suite (fnagent.testing.driver_conformance) on the Docker driver."""

import pytest

from drivers.docker import DockerConfig, DockerDriver
from fnagent.testing.driver_conformance import CASES, Case, Images
from tests.system.helpers import BUSYBOX

IMAGES = Images(busybox=BUSYBOX)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_docker_driver_conforms(case: Case, instance_id: str) -> None:
    async with DockerDriver(DockerConfig(instance_id=instance_id)) as driver:
        await case(driver, IMAGES)
        assert await driver.containers() == [], "the case left a container behind"
