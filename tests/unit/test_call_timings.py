"""Where a call's time went, as the agent reports it on the fake driver: waiting for a
container, launching or thawing it, running the call."""

from __future__ import annotations

import pytest

from drivers.fake import ProgramContext
from fnagent.testing.fakefn import Answer, Request
from tests.helpers import poll
from tests.unit.helpers import handler_of, make_call, make_fn, running

pytestmark = pytest.mark.anyio


async def test_results_say_where_the_time_went() -> None:
    async def slow(request: Request, ctx: ProgramContext) -> Answer:
        await ctx.sleep(0.05)
        return Answer(body=b"ok")

    async with running({"fn/echo": handler_of(slow)}, start_delay_s=0.1, unfreeze_delay_s=0.05) as (
        agent,
        driver,
    ):
        fn = make_fn()
        cold = await agent.submit(make_call(fn))
        assert (cold.status, cold.start) == (200, "cold")
        assert cold.start_s >= 0.1 and cold.exec_s >= 0.05 and cold.queued_s >= 0
        assert cold.queued_s + cold.start_s + cold.exec_s <= cold.duration_s + 1e-6
        (container,) = driver.containers.values()
        await poll(lambda: container.state == "paused", "the freeze")
        thawed = await agent.submit(make_call(fn))
        assert (thawed.status, thawed.start) == (200, "thawed")
        assert 0.05 <= thawed.start_s < 0.1 and thawed.exec_s >= 0.05
        assert thawed.queued_s + thawed.start_s + thawed.exec_s <= thawed.duration_s + 1e-6


async def test_a_call_that_never_got_a_container_spent_its_time_waiting() -> None:
    async with running({}, missing_images=["fn/missing"]) as (agent, _):
        failed = await agent.submit(make_call(make_fn("fn/missing")))
        assert failed.status == 404 and failed.start is None
        assert (failed.start_s, failed.exec_s) == (0.0, 0.0)
        assert failed.queued_s == failed.duration_s > 0
