"""Prefork pool benchmarks (issue #3), through the DockerDriver with and without the pool:

- cold start to first response of the FDK hello function (create, start, wait for the
  listener, one ``POST /call``): serial, and 8 starts at once;
- container throughput (create, start, wait, remove busybox ``true``) at concurrency 1, 4, 8;
- host memory per idle slot (tests/bench/slotmem.py).

Bridge and pool runs alternate, so drift hits both alike. Function containers are removed
outside the measured window of a cold start; the throughput loops include their removal.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import stat
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import docker

from drivers import ContainerTask
from drivers.docker import DockerConfig, DockerDriver
from drivers.docker.config import PoolConfig
from tests.bench.report import Report, Row, median_ms, percentile_ms
from tests.bench.slotmem import SlotMemory, slot_memory

HELLO = "fnagent/fn-hello"
BUSYBOX = "fnagent/busybox"
INSTANCE = f"bench-{uuid.uuid4().hex[:8]}"
IOFS = "/tmp/iofs"
LISTENER = "lsnr.sock"
SERIAL_RUNS = 12
CONCURRENT = 8
CONCURRENT_ROUNDS = 4
THROUGHPUT_LEVELS = (1, 4, 8)
THROUGHPUT_PER_WORKER = {1: 12, 4: 6, 8: 4}
POOL_SIZE = 8
READY_TIMEOUT_S = 30.0
SOCKET_POLL_S = 0.002


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=READY_TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _post_call(path: str, body: bytes) -> tuple[int, bytes]:
    connection = _UnixHTTPConnection(path)
    try:
        connection.request("POST", "/call", body=body, headers={"Fn-Call-Id": "bench"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat_file:
        fields = [int(v) for v in stat_file.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)  # follows the FDK's symlink
    except OSError:
        return False


async def hello_cold_start(driver: DockerDriver, hold: Callable[[], Awaitable[None]]) -> float:
    """Seconds from asking the driver for a container to the hello function's first response;
    ``hold`` runs before the clean-up, so concurrent starts do not overlap their removals."""
    uds = tempfile.mkdtemp(prefix="fnagent-bench-")
    os.chmod(uds, 0o777)  # the function runs as 1000:1000 and binds its socket here
    made = ContainerTask(
        id=uuid.uuid4().hex,
        image=HELLO,
        env_vars={
            "FN_FORMAT": "http-stream",
            "FN_LISTENER": f"unix:{IOFS}/{LISTENER}",
            "FN_TYPE": "sync",
            "FN_MEMORY": "128",
        },
        memory_bytes=128 << 20,
        uds_path=uds,
    )
    path = os.path.join(uds, LISTENER)
    try:
        started = time.perf_counter()
        async with await driver.create_cookie(made) as cookie:
            await driver.prepare_cookie(cookie)
            waiter = await cookie.run()
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.wait)  # drains the container's output
                with anyio.fail_after(READY_TIMEOUT_S):
                    while not _is_socket(path):  # noqa: ASYNC110 - a file has no event
                        await anyio.sleep(SOCKET_POLL_S)
                status, body = await anyio.to_thread.run_sync(_post_call, path, b"bench")
                elapsed = time.perf_counter() - started
                if status != 200 or body != b"Hello, bench!":
                    raise RuntimeError(f"fn-hello answered {status} {body[:200]!r}")
                await hold()
                tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(uds, ignore_errors=True)
    return elapsed


async def _no_hold() -> None:
    return None


async def concurrent_round(driver: DockerDriver, count: int) -> tuple[list[float], float]:
    """``count`` cold starts at once: their latencies and the round's starts per second."""
    latencies: list[float] = []
    arrived = 0
    everyone = anyio.Event()

    async def hold() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == count:
            everyone.set()
        await everyone.wait()

    async def one() -> None:
        latencies.append(await hello_cold_start(driver, hold))

    with anyio.fail_after(READY_TIMEOUT_S * 2):
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
    # every latency was taken from (nearly) the same start: the slowest ends the round
    return latencies, count / max(latencies)


async def throughput(driver: DockerDriver, workers: int, per_worker: int) -> float:
    """Containers per second: ``workers`` loops of create, start, wait, remove."""

    async def loop() -> None:
        for _ in range(per_worker):
            made = ContainerTask(id=uuid.uuid4().hex, image=BUSYBOX, command=["true"])
            async with await driver.create_cookie(made) as cookie:
                await driver.prepare_cookie(cookie)
                result = await (await cookie.run()).wait()
                if not result.ok:
                    raise RuntimeError(f"busybox true failed: {result}")

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(loop)
    return workers * per_worker / (time.perf_counter() - started)


async def _full(driver: DockerDriver) -> None:
    assert driver.pool is not None
    with anyio.fail_after(60):
        await driver.pool.wait_free(POOL_SIZE)


async def idle_slot_memory(report: Report, pooled: DockerDriver) -> None:
    """Host memory per idle slot (tests/bench/slotmem.py says what is counted), median."""
    assert pooled.pool is not None
    slots: list[SlotMemory] = []
    for container_id in pooled.pool.free_ids():
        inspected = await pooled.client.call("inspect slot", "inspect_container", container_id)
        slots.append(slot_memory(int(inspected["State"]["Pid"])))
    mib = float(1 << 20)
    for name, values in (
        ("total", [s.total_bytes for s in slots]),
        ("its containerd shim (PSS, page tables, kernel stacks)", [s.shim_bytes for s in slots]),
        ("its cgroup (processes and kernel memory)", [s.cgroup_bytes for s in slots]),
        ("its processes' PSS (in the cgroup's figure)", [s.processes_pss_bytes for s in slots]),
    ):
        target = "<= 1 MiB" if name == "total" else ""
        value = round(statistics.median(values) / mib, 2)
        row = f"pool memory per idle slot: {name}"
        report.add(Row(row, value, "MiB", target=target, samples=len(slots)))


async def measure(report: Report) -> None:
    bridge_config = DockerConfig(instance_id=INSTANCE)
    pool_config = DockerConfig(
        instance_id=INSTANCE, pool=PoolConfig(min_size=POOL_SIZE, max_size=POOL_SIZE)
    )
    async with DockerDriver(bridge_config) as bridge, DockerDriver(pool_config) as pooled:
        await _full(pooled)
        await idle_slot_memory(report, pooled)
        await hello_cold_start(bridge, _no_hold)  # warm both paths once
        await hello_cold_start(pooled, _no_hold)

        serial: dict[str, list[float]] = {"bridge": [], "pool": []}
        for _ in range(SERIAL_RUNS):
            serial["bridge"].append(await hello_cold_start(bridge, _no_hold))
            await _full(pooled)
            serial["pool"].append(await hello_cold_start(pooled, _no_hold))
        name = "FDK hello cold start -> first response, serial"
        report.add(Row(f"{name}: bridge", median_ms(serial["bridge"]), "ms", samples=SERIAL_RUNS))
        report.add(
            Row(
                f"{name}: pool",
                median_ms(serial["pool"]),
                "ms",
                "bridge",
                median_ms(serial["bridge"]),
                "<= 0.6x",
                SERIAL_RUNS,
            )
        )

        latencies: dict[str, list[float]] = {"bridge": [], "pool": []}
        rates: dict[str, list[float]] = {"bridge": [], "pool": []}
        busy: dict[str, list[int]] = {"bridge": [0, 0], "pool": [0, 0]}
        for _ in range(CONCURRENT_ROUNDS):
            for label, driver in (("bridge", bridge), ("pool", pooled)):
                if driver is pooled:
                    await _full(pooled)
                busy_before, total_before = _cpu_ticks()
                took, rate = await concurrent_round(driver, CONCURRENT)
                busy_after, total_after = _cpu_ticks()
                busy[label][0] += busy_after - busy_before
                busy[label][1] += total_after - total_before
                latencies[label] += took
                rates[label].append(rate)
        # Near 1.0 means the round was CPU-bound: the machine, not the path, set the pace.
        report.notes["concurrent_cpu_busy_fraction"] = {
            label: round(used / max(1, total), 3) for label, (used, total) in busy.items()
        }
        name = f"FDK hello cold start, {CONCURRENT} at once"
        samples = CONCURRENT * CONCURRENT_ROUNDS
        report.add(
            Row(
                f"{name}: p50 latency, bridge",
                median_ms(latencies["bridge"]),
                "ms",
                "bridge serial",
                median_ms(serial["bridge"]),
                "",
                samples,
            )
        )
        report.add(
            Row(
                f"{name}: p50 latency, pool",
                median_ms(latencies["pool"]),
                "ms",
                "pool serial",
                median_ms(serial["pool"]),
                "<= 2x",
                samples,
            )
        )
        report.add(
            Row(
                f"{name}: starts/s, bridge",
                round(statistics.median(rates["bridge"]), 2),
                "c/s",
                samples=CONCURRENT_ROUNDS,
            )
        )
        report.add(
            Row(
                f"{name}: starts/s, pool",
                round(statistics.median(rates["pool"]), 2),
                "c/s",
                "bridge",
                round(statistics.median(rates["bridge"]), 2),
                ">= 2.5x",
                CONCURRENT_ROUNDS,
            )
        )
        report.notes["cold_start_p90_ms"] = {
            "serial_bridge": percentile_ms(serial["bridge"], 90),
            "serial_pool": percentile_ms(serial["pool"], 90),
            "concurrent_bridge": percentile_ms(latencies["bridge"], 90),
            "concurrent_pool": percentile_ms(latencies["pool"], 90),
        }

        for workers in THROUGHPUT_LEVELS:
            per_worker = THROUGHPUT_PER_WORKER[workers]
            await throughput(bridge, workers, 1)  # warm
            results: dict[str, float] = {}
            for label, driver in (("bridge", bridge), ("pool", pooled)):
                if driver is pooled:
                    await _full(pooled)
                results[label] = round(await throughput(driver, workers, per_worker), 2)
            name = f"create+start+wait+remove busybox true, concurrency {workers}"
            report.add(
                Row(f"{name}: bridge", results["bridge"], "c/s", samples=workers * per_worker)
            )
            report.add(
                Row(
                    f"{name}: pool",
                    results["pool"],
                    "c/s",
                    "bridge",
                    results["bridge"],
                    "",
                    workers * per_worker,
                )
            )
        report.notes["pool_creations"] = pooled.pool.creations if pooled.pool else 0


def main() -> Report:
    report = Report("pool")
    # Other work on the machine skews every figure: record how busy it was.
    report.notes["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    try:
        anyio.run(measure, report)
    finally:
        api = docker.APIClient(version="auto")
        for container in api.containers(
            all=True, filters={"label": f"fnagent.instance={INSTANCE}"}
        ):
            api.remove_container(container["Id"], force=True)
        api.close()
    return report
