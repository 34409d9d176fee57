"""Agent benchmarks (issue: the agent): hot call through ``Agent.submit`` vs a plain client on
the same container's socket; the cost of a thaw; a cold call vs ``docker run -d`` + wait for
the socket + first call."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from dataclasses import replace
from typing import Any

import anyio

from drivers.docker import DockerDriver
from fnagent.agent import Agent
from fnagent.agent.httpclient import UnixHTTPConnection
from fnagent.config import AgentConfig
from fnagent.models import Call, CallRequest, Fn
from tests.bench.hello import docker_rm, docker_run_hello
from tests.bench.report import Report, Row, median_ms, percentile_ms

FN_HELLO = "fnagent/fn-hello"
HOT_CALLS = 400
THAW_RUNS = 15
COLD_RUNS = 12
BODY = b'{"name": "bench"}'


def hello(fn_id: str) -> Fn:
    return Fn(id=fn_id, name="hello", app_id="bench", app_name="bench", image=FN_HELLO)


def _config(**changes: Any) -> AgentConfig:
    base = AgentConfig(
        instance_id=f"bench-{uuid.uuid4().hex[:8]}",
        iofs_path=tempfile.mkdtemp(prefix="fnagent-bench-"),
    )
    return replace(base, **changes)


async def bench_hot(report: Report) -> None:
    config = _config(freeze_idle_ms=60_000)
    async with DockerDriver(config.docker_config()) as driver, Agent(driver, config) as agent:
        fn = hello("hot")
        for _ in range(20):
            assert (await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))).status == 200
        (queue,) = agent.queues
        raw = UnixHTTPConnection(queue.idle[-1].socket_dir.listener)
        headers = [
            ("Content-Type", "application/json"),
            ("Fn-Call-Id", "x"),
            ("Fn-Deadline", "2099-01-01T00:00:00.000Z"),
        ]
        through_agent: list[float] = []
        plain: list[float] = []
        for block in range(HOT_CALLS // 50):  # interleaved blocks, so drift hits both alike
            for _ in range(50):
                started = time.perf_counter()
                response = await raw.request("POST", "/call", headers, BODY)
                plain.append(time.perf_counter() - started)
                assert response.status == 200
            for _ in range(50):
                started = time.perf_counter()
                result = await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
                through_agent.append(time.perf_counter() - started)
                assert result.status == 200
            del block
        raw.close()
    p50_plain, p50_agent = median_ms(plain), median_ms(through_agent)
    p99_plain, p99_agent = percentile_ms(plain, 99), percentile_ms(through_agent, 99)
    report.add(Row("hot call p50: plain client on the socket", p50_plain, "ms", samples=len(plain)))
    report.add(
        Row(
            "hot call p50: Agent.submit",
            p50_agent,
            "ms",
            "plain",
            p50_plain,
            "<= plain + 1 ms",
            len(through_agent),
        )
    )
    report.add(Row("hot call p99: plain client on the socket", p99_plain, "ms"))
    report.add(
        Row("hot call p99: Agent.submit", p99_agent, "ms", "plain", p99_plain, "<= plain + 3 ms")
    )
    report.add(
        Row(
            "agent overhead p50 (Agent.submit - plain)",
            round(p50_agent - p50_plain, 3),
            "ms",
            target="<= 1 ms",
        )
    )
    report.add(
        Row(
            "agent overhead p99 (Agent.submit - plain)",
            round(p99_agent - p99_plain, 3),
            "ms",
            target="<= 3 ms",
        )
    )
    report.add(
        Row(
            "hot calls/s serial through Agent.submit",
            round(len(through_agent) / sum(through_agent), 1),
            "1/s",
        )
    )


async def bench_thaw(report: Report) -> None:
    config = _config(freeze_idle_ms=20)
    async with DockerDriver(config.docker_config()) as driver, Agent(driver, config) as agent:
        fn = hello("thaw")
        await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
        hot: list[float] = []
        thawed: list[float] = []
        for _ in range(THAW_RUNS):
            with anyio.fail_after(10):
                while agent.containers("thaw")["frozen"] != 1:
                    await anyio.sleep(0.01)
            started = time.perf_counter()
            result = await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
            thawed.append(time.perf_counter() - started)
            assert result.start == "thawed", result.start
            started = time.perf_counter()
            result = await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
            hot.append(time.perf_counter() - started)
    report.add(
        Row(
            "frozen call p50 (thaw + call)",
            median_ms(thawed),
            "ms",
            "hot call",
            median_ms(hot),
            "",
            len(thawed),
        )
    )
    report.add(
        Row(
            "thaw cost p50 (frozen - hot)",
            round(median_ms(thawed) - median_ms(hot), 2),
            "ms",
            target="<= 15 ms",
        )
    )


def driver_busy(driver: DockerDriver) -> bool:
    """True while the driver still has a function container open (being removed)."""
    return len(driver._cookies) > 1  # the warm-up container stays


def _docker_path(labels: dict[str, str]) -> float:
    """docker run -d of fn-hello + wait for its socket + the first call, like a user would."""
    started = time.perf_counter()
    container, socket_dir = docker_run_hello(labels)

    async def call() -> int:
        connection = UnixHTTPConnection(os.path.join(socket_dir, "lsnr.sock"))
        response = await connection.request("POST", "/call", [("Fn-Call-Id", "x")], BODY)
        connection.close()
        return response.status

    assert anyio.run(call) == 200
    elapsed = time.perf_counter() - started
    docker_rm(container)
    return elapsed


async def bench_cold(report: Report) -> None:
    """The three cold paths interleaved round by round, so the machine's drift hits each alike."""
    labels = {"fnagent.managed": "1", "fnagent.instance": f"bench-{uuid.uuid4().hex[:8]}"}
    pooled_config = _pooled(_config())
    docker_runs: list[float] = []
    bridge: list[float] = []
    pooled: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        bridge_agent = await stack.enter_async_context(ColdAgent(_config()))
        pool_agent = None
        if pooled_config is not None:
            pool_agent = await stack.enter_async_context(ColdAgent(pooled_config))
        for _ in range(COLD_RUNS):
            docker_runs.append(await anyio.to_thread.run_sync(_docker_path, labels))
            bridge.append(await bridge_agent.cold_call())
            if pool_agent is not None:
                pooled.append(await pool_agent.cold_call())
    docker_ms = median_ms(docker_runs)
    report.add(
        Row("cold call: docker run -d + socket + first call", docker_ms, "ms", samples=COLD_RUNS)
    )
    report.add(
        Row(
            "cold call through the agent, bridge",
            median_ms(bridge),
            "ms",
            "docker path",
            docker_ms,
            "",
            COLD_RUNS,
        )
    )
    if pooled:
        report.add(
            Row(
                "cold call through the agent, prefork pool",
                median_ms(pooled),
                "ms",
                "docker path",
                docker_ms,
                "<= 0.6x",
                COLD_RUNS,
            )
        )


class ColdAgent:
    """An agent (and its driver) that times cold calls: each to a function never seen before,
    whose container is removed before the next is timed, as the docker path's is."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.runs = 0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ColdAgent:
        self.driver = await self._stack.enter_async_context(
            DockerDriver(self.config.docker_config())
        )
        self.agent = await self._stack.enter_async_context(Agent(self.driver, self.config))
        await self.agent.submit(Call(fn=hello("warmup"), request=CallRequest(body=BODY)))
        if self.driver.pool is not None:
            with anyio.fail_after(30):
                await self.driver.pool.wait_free(2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def cold_call(self) -> float:
        name = f"cold-{self.runs}"
        self.runs += 1
        started = time.perf_counter()
        result = await self.agent.submit(Call(fn=hello(name), request=CallRequest(body=BODY)))
        elapsed = time.perf_counter() - started
        assert result.start == "cold" and result.status == 200, result
        self.agent.forget(name)
        with anyio.fail_after(30):
            while sum(self.agent.containers(name).values()) or driver_busy(self.driver):
                await anyio.sleep(0.01)
        return elapsed


def _pooled(config: AgentConfig) -> AgentConfig | None:
    if "prefork_pool_size" not in AgentConfig.__dataclass_fields__:
        return None
    return replace(config, prefork_pool_size=4)


def main() -> Report:
    report = Report("agent")

    async def all_rows() -> None:
        await bench_hot(report)
        await bench_thaw(report)
        await bench_cold(report)

    anyio.run(all_rows, backend_options={"use_uvloop": True})
    return report
