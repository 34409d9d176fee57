"""The driver conformance suite (fnagent.testing.driver_conformance) on the fake driver."""

import pytest

from drivers.fake import FakeDriver
from fnagent.testing.driver_conformance import CASES, Case, Images

IMAGES = Images(busybox="fnagent/busybox")


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_fake_driver_conforms(case: Case) -> None:
    async with FakeDriver() as driver:
        await case(driver, IMAGES)
        assert driver.live() == [], "the case left a container behind"
