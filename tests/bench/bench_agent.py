"""Agent benchmarks (issue: the agent): hot call through ``Agent.submit`` vs a plain client on
the same container's socket; the cost of a thaw; a cold call vs ``docker run -d`` + wait for
the socket + first call."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import replace
from typing import Any

import anyio

from drivers.docker import DockerDriver
from fnagent.agent import Agent
from fnagent.config import AgentConfig
from fnagent.httpclient import UnixHTTPConnection
from fnagent.models import Call, CallRequest, Fn
from tests.bench.hello import docker_rm, docker_run_hello
from tests.bench.report import Report, Row, median_ms, percentile_ms

FN_HELLO = "fnagent/fn-hello"
HOT_CALLS = 400
THAW_RUNS = 15
COLD_RUNS = 8
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
        (queue,) = agent._queues.values()
        socket_dir = queue.idle[-1].socket_dir
        raw = UnixHTTPConnection(os.path.join(socket_dir, "lsnr.sock"))
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


async def _cold_agent(config: AgentConfig, runs: int) -> list[float]:
    samples: list[float] = []
    async with DockerDriver(config.docker_config()) as driver, Agent(driver, config) as agent:
        await agent.submit(Call(fn=hello("warmup"), request=CallRequest(body=BODY)))
        for i in range(runs):
            started = time.perf_counter()
            result = await agent.submit(Call(fn=hello(f"cold-{i}"), request=CallRequest(body=BODY)))
            samples.append(time.perf_counter() - started)
            assert result.start == "cold" and result.status == 200, result
            agent.forget(f"cold-{i}")
            # As the docker path does: the removal finishes before the next start is timed.
            with anyio.fail_after(30):
                while sum(agent.containers(f"cold-{i}").values()) or driver_busy(driver):
                    await anyio.sleep(0.01)
    return samples


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
    labels = {"fnagent.managed": "1", "fnagent.instance": f"bench-{uuid.uuid4().hex[:8]}"}
    docker_runs = [await anyio.to_thread.run_sync(_docker_path, labels) for _ in range(COLD_RUNS)]
    bridge = await _cold_agent(_config(), COLD_RUNS)
    report.add(
        Row(
            "cold call: docker run -d + socket + first call",
            median_ms(docker_runs),
            "ms",
            samples=COLD_RUNS,
        )
    )
    report.add(
        Row(
            "cold call through the agent, bridge",
            median_ms(bridge),
            "ms",
            "docker path",
            median_ms(docker_runs),
            "",
            COLD_RUNS,
        )
    )
    pooled_config = _pooled(_config())
    if pooled_config is not None:
        pooled = await _cold_agent(pooled_config, COLD_RUNS)
        report.add(
            Row(
                "cold call through the agent, prefork pool",
                median_ms(pooled),
                "ms",
                "docker path",
                median_ms(docker_runs),
                "<= 0.6x",
                COLD_RUNS,
            )
        )


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
