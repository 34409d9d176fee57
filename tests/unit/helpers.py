"""Helpers the unit tests of the agent share: a function, a call, and an agent running on the
fake driver (``running``) with roomy budgets and a host that never looks busy."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from drivers.fake import FakeDriver, Program, ProgramContext
from fnagent.agent import Agent, CallResult
from fnagent.agent.admission import Budget
from fnagent.agent.calllogs import LineForwarder, LogLine
from fnagent.config import AgentConfig, KeepAliveConfig
from fnagent.models import Call, CallRequest, Fn
from fnagent.server.invoke import error_answer
from fnagent.testing.clock import ManualClock
from fnagent.testing.fakefn import Answer, Request, http_function

MIB = 1024 * 1024
LEARN_FAST = KeepAliveConfig(min_samples=3, cold_start_weight=math.inf, margin_percent=10.0)
"""The paper's keep-alive policy (its plans' times are simple to state), learning from 3 idle
times: the agent's keep-alive tests."""
ROOMY = Budget(memory_bytes=4096 * MIB, cpu_mcpus=4000)


def make_fn(image: str = "fn/echo", **fields: Any) -> Fn:
    values: dict[str, Any] = dict(
        id="fn1",
        name="echo",
        app_id="app1",
        app_name="app",
        image=image,
        timeout_s=10,
        idle_timeout_s=30,
    )
    values.update(fields)
    return Fn(**values)


def make_call(fn: Fn, body: bytes = b"hi", **fields: Any) -> Call:
    return Call(fn=fn, request=CallRequest(body=body, **fields))


@asynccontextmanager
async def running(
    images: dict[str, Program],
    *,
    budget: Budget = ROOMY,
    clock: ManualClock | None = None,
    host_idle: float | None = None,
    log_sink: LineForwarder | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Agent, FakeDriver]]:
    # iofs_size_bytes 0: plain socket dirs, no tmpfs mounts (those need root).
    settings: dict[str, Any] = dict(
        instance_id="unit",
        iofs_path=tempfile.mkdtemp(prefix="fnagent-unit-"),
        iofs_size_bytes=0,
        freeze_idle_ms=50,
    )
    settings.update(config)
    driver_keys = (
        "pull_delay_s",
        "start_delay_s",
        "unfreeze_delay_s",
        "missing_images",
        "cpu_wait_share",
    )
    driver_options = {k: config.pop(k) for k in driver_keys if k in config}
    settings = {k: v for k, v in settings.items() if k not in driver_options}
    async with FakeDriver(images=images, **driver_options) as driver:
        async with Agent(
            driver,
            AgentConfig(**settings),
            budget=budget,
            clock=clock,
            host_idle=lambda: host_idle,  # the host's real load must not change what tests see
            stop_grace_s=5,
            log_sink=log_sink,
        ) as agent:
            yield agent, driver
        assert driver.live() == [], "the agent left containers behind"


KEEPALIVE_IDLE_S = 2.5
"""Idle times in the 2-3 s bin: under LEARN_FAST, once learned, the plan removes the container
at once, starts one at 1.8 s (2 s less the 10% margin; the fake's launches take no clock time)
and keeps it to 3.3 s."""


async def learn(agent: Agent, clock: ManualClock, fn: Fn, calls: int = 4) -> None:
    """``calls`` calls of ``fn`` KEEPALIVE_IDLE_S apart on ``clock`` (the last one ends now)."""
    for i in range(calls):
        if i:
            clock.advance(KEEPALIVE_IDLE_S)
        assert (await agent.submit(make_call(fn))).status == 200


class Hold:
    """A fake function that answers at once, except a request whose body is ``b"hold"``: that
    one waits for ``gate`` (``gate.set()`` releases the held ones; a new ``gate`` holds the
    next ones again)."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.program = handler_of(self._answer)

    async def _answer(self, request: Request, ctx: ProgramContext) -> Answer:
        if request.body == b"hold":
            await self.gate.wait()
        return Answer()


def handler_of(fn: Callable[[Request, ProgramContext], Awaitable[Answer]]) -> Program:
    async def handler(request: Request, ctx: ProgramContext) -> Answer:
        return await fn(request, ctx)

    return http_function(handler)


def message(result: CallResult) -> str:
    """The failed call's message, from the JSON body the server answers it with."""
    assert result.error is not None, result
    _, body = error_answer(result.error)
    return str(json.loads(body)["message"])


class Lines(list[LogLine]):
    """A ``LineForwarder`` keeping the lines of the fns ``wanted`` says it wants (every fn's)."""

    def __init__(self, wanted: Callable[[Fn], bool] = lambda fn: True) -> None:
        super().__init__()
        self.wanted = wanted

    def wants(self, fn: Fn) -> bool:
        return self.wanted(fn)

    def __call__(self, line: LogLine) -> None:
        self.append(line)
