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
from drivers.docker.freezer import FreezerMode
from fnagent.agent import Agent
from fnagent.agent.httpclient import UnixHTTPConnection
from fnagent.config import AgentConfig, KeepAliveConfig
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
    # The fixed keep-alive: these rows time the call path, not the keep-alive, and reach a fn's
    # container between calls (hot, frozen) for longer than a learned plan may keep it.
    base = AgentConfig(
        instance_id=f"bench-{uuid.uuid4().hex[:8]}",
        iofs_path=tempfile.mkdtemp(prefix="fnagent-bench-"),
        keepalive=KeepAliveConfig(policy="fixed"),
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


async def _frozen_then_hot(agent: Agent, fn: Fn) -> tuple[float, float]:
    """One call to the fn's frozen container, then one hot call: their times in seconds."""
    with anyio.fail_after(10):
        while agent.containers(fn.id)["frozen"] != 1:
            await anyio.sleep(0.005)
    started = time.perf_counter()
    result = await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
    frozen = time.perf_counter() - started
    assert result.start == "thawed", result.start
    started = time.perf_counter()
    result = await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))
    return frozen, time.perf_counter() - started


async def bench_thaw(report: Report) -> None:
    """A call to a frozen container minus a hot call, frozen through the cgroup freezer and
    through the Engine API (FN_FREEZER=api), in interleaved rounds on two agents."""
    frozen: dict[str, list[float]] = {"cgroup": [], "api": []}
    hot: dict[str, list[float]] = {"cgroup": [], "api": []}
    async with contextlib.AsyncExitStack() as stack:
        agents: dict[str, tuple[Agent, Fn]] = {}
        for mode in frozen:
            config = _config(freeze_idle_ms=20, freezer=FreezerMode(mode))
            driver = await stack.enter_async_context(DockerDriver(config.docker_config()))
            agent = await stack.enter_async_context(Agent(driver, config))
            fn = hello(f"thaw-{mode}")
            assert (await agent.submit(Call(fn=fn, request=CallRequest(body=BODY)))).status == 200
            agents[mode] = (agent, fn)
        for _ in range(THAW_RUNS):
            for mode, (agent, fn) in agents.items():
                one_frozen, one_hot = await _frozen_then_hot(agent, fn)
                frozen[mode].append(one_frozen)
                hot[mode].append(one_hot)
        _, fn = agents["api"]
        await bench_raw_api_thaw(report, agents["api"][0], fn)
    for mode, how in (("cgroup", "cgroup freezer"), ("api", "Engine API")):
        report.add(
            Row(
                f"frozen call p50 (thaw + call), {how}",
                median_ms(frozen[mode]),
                "ms",
                "hot call",
                median_ms(hot[mode]),
                "",
                len(frozen[mode]),
            )
        )
        report.add(
            Row(
                f"thaw cost p50 (frozen - hot), {how}",
                round(median_ms(frozen[mode]) - median_ms(hot[mode]), 2),
                "ms",
                target="<= 3 ms" if mode == "cgroup" else "",
            )
        )


async def bench_raw_api_thaw(report: Report, agent: Agent, fn: Fn) -> None:
    """The Engine API's unpause alone, sent from the event loop over the daemon's unix socket
    (no worker thread, no docker-py), on the fn's container taken from the agent meanwhile."""
    (queue,) = [q for q in agent.queues if q.fn.id == fn.id]
    # Busy now: the agent leaves it alone until released.
    container = queue.take_idle(agent.clock.now())
    assert container is not None and container.cookie is not None
    async with container.lock:  # a freeze may be under way: wait for it, then undo it
        if container.frozen:
            await container.cookie.unfreeze()
            container.frozen = False
    cid = container.cookie.container_id
    daemon = UnixHTTPConnection("/var/run/docker.sock")
    raw = UnixHTTPConnection(container.socket_dir.listener)
    headers = [("Content-Type", "application/json"), ("Fn-Call-Id", "x")]
    headers.append(("Fn-Deadline", "2099-01-01T00:00:00.000Z"))
    unpause: list[float] = []
    thaw_call: list[float] = []
    hot: list[float] = []
    try:
        for _ in range(THAW_RUNS):
            assert (await daemon.request("POST", f"/containers/{cid}/pause", [], b"")).status == 204
            started = time.perf_counter()
            answered = await daemon.request("POST", f"/containers/{cid}/unpause", [], b"")
            unpause.append(time.perf_counter() - started)
            assert answered.status == 204, answered.body
            assert (await daemon.request("POST", f"/containers/{cid}/pause", [], b"")).status == 204
            started = time.perf_counter()
            await daemon.request("POST", f"/containers/{cid}/unpause", [], b"")
            assert (await raw.request("POST", "/call", headers, BODY)).status == 200
            thaw_call.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert (await raw.request("POST", "/call", headers, BODY)).status == 200
            hot.append(time.perf_counter() - started)
    finally:
        daemon.close()
        raw.close()
        queue.release(container, agent.clock.now())
    report.add(
        Row("Engine API unpause p50, raw socket from the event loop", median_ms(unpause), "ms")
    )
    report.add(
        Row(
            "thaw cost p50 (frozen - hot), Engine API raw socket, plain client",
            round(median_ms(thaw_call) - median_ms(hot), 2),
            "ms",
            samples=len(thaw_call),
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
