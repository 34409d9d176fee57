"""Cluster benchmark (``make bench BENCH=cluster``): hot invokes/s of the FDK hello through
nginx (deploy/nginx.conf) for 1, 2 and 3 agents sharing one PostgreSQL, every agent with the
same CPU share; target: 3 agents >= 2.5x one.

Method. This machine has 2 cores (shared), so an agent cannot have a core of its own; each
gets a CPU share instead: the agent process and its function containers run in one CPU
cgroup with a CFS quota of ``AGENT_CPUS`` (0.5 CPU; cgroup v1's ``cpu`` controller or v2's
``cpu.max``; root only). The agent runs in a child of it; its containers go under it through
FN_DOCKER_CGROUP_PARENT (Docker's ``--cgroup-parent``), so the agent and all its functions
share the quota, however the fns are spread. ``FNS`` (6) hello fns keep one container each
(``fnagent.io/max-concurrency: 1``, so no launch runs while measuring); wrk (one thread,
``2 x FNS`` connections, a Lua script cycling through the fns' invoke URLs) loads nginx,
whose consistent hash spreads the fns over the agents. How evenly it spreads them decides how
much of the added agents' share is used (the spread is in the notes). nginx, wrk and
PostgreSQL run outside the quotas: 3 x 0.5 CPU leaves them half a core.
``BENCH_CLUSTER_DURATION_S`` (8) and ``BENCH_CLUSTER_ROUNDS`` (1: the three sizes in turn,
repeated; the median per size is reported).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.cluster import Nginx, http_get, stop_process
from tests.bench.bench_serve import _request, _wrk
from tests.bench.report import Report, Row
from tests.postgres import PostgresServer

FN_HELLO = "fnagent/fn-hello"
AGENT_CPUS = 0.5
FNS = 6
SIZES = (1, 2, 3)
CGROUP_PERIOD_US = 100_000
DURATION_S = float(os.environ.get("BENCH_CLUSTER_DURATION_S") or 8)
ROUNDS = int(os.environ.get("BENCH_CLUSTER_ROUNDS") or 1)


class CpuGroup:
    """A CPU cgroup ``/<name>`` with a CFS quota of ``cpus`` (cgroup v1's ``cpu`` controller,
    or v2's ``cpu.max``), for an agent and its function containers: the agent runs in its
    child ``agent`` (``wrap``), the containers in children Docker makes
    (FN_DOCKER_CGROUP_PARENT=/<name>), so the quota bounds them together."""

    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, name: str, cpus: float) -> None:
        self.name = name
        quota = int(cpus * CGROUP_PERIOD_US)
        if (self.V2 / "cgroup.controllers").exists():
            self.path = self.V2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {CGROUP_PERIOD_US}\n")
            (self.path / "cgroup.subtree_control").write_text("+cpu\n")
        elif (self.V1 / "cpu.cfs_quota_us").exists():
            self.path = self.V1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(f"{CGROUP_PERIOD_US}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        else:
            raise RuntimeError("no CPU cgroup controller to give each agent its share")
        (self.path / "agent").mkdir()

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run in the group's ``agent`` child (the shell moves in, then execs)."""
        procs = str(self.path / "agent" / "cgroup.procs")
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *argv]

    def remove(self) -> None:
        """Remove the group and what Docker made of it in every controller (v1 has one tree
        per controller), once their processes are gone."""
        trees = [self.V2] if self.path.parent == self.V2 else list(self.V2.glob("*"))
        for tree in trees:
            top = tree / self.name
            if not top.is_dir():
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                _rmdir(folder)
            _rmdir(top)


def _rmdir(folder: Path) -> None:
    deadline = time.monotonic() + 10
    while folder.exists():
        try:
            folder.rmdir()
        except OSError:  # its last process is still exiting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def agents_behind_nginx(
    work: Path, db_url: str, count: int, instance: str
) -> Iterator[tuple[str, list[str]]]:
    """``count`` agents (each in its CPU cgroup) and nginx; the front door's URL and the
    agents' instance labels."""
    port = _free_port()
    env = {
        **os.environ,
        "FN_DB_URL": db_url,
        "FN_SECRETS_KEY_FILE": str(work / "secrets-key"),
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "0",
        # A Python FDK starting on a tenth of a CPU of a busy machine takes seconds.
        "FN_HOT_START_TIMEOUT_MSECS": "60000",
        "FNAGENT_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    groups: list[CpuGroup] = []
    labels: list[str] = []
    nginx: Nginx | None = None
    try:
        addresses = []
        for k in range(count):
            folder = work / f"agent{k}"
            folder.mkdir()
            agent_port = _free_port()
            labels.append(f"{instance}-{k}")
            group = CpuGroup(f"fnagent-bench-{instance}-{k}", AGENT_CPUS)
            groups.append(group)
            argv = [sys.executable, "-m", "fnagent", "serve", "--port", str(agent_port)]
            own = {
                "FNAGENT_INSTANCE_ID": labels[-1],
                "FN_IOFS_PATH": str(folder / "iofs"),
                "FN_DOCKER_CGROUP_PARENT": f"/{group.name}",
            }
            with (folder / "serve.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(group.wrap(argv), env={**env, **own}, stdout=log, stderr=log)
                )
            _wait(f"http://127.0.0.1:{agent_port}/version", processes[-1], folder / "serve.log")
            addresses.append(f"127.0.0.1:{agent_port}")
        nginx = Nginx(work / "nginx", addresses, f"127.0.0.1:{port}").start()
        assert nginx.process is not None
        front = f"http://127.0.0.1:{port}"
        _wait(f"{front}/version", nginx.process, nginx.log)
        yield front, labels
    finally:
        if nginx is not None:
            nginx.stop()
        for process in processes:
            stop_process(process, 15)
        for group in groups:
            group.remove()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while http_get(url)[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def deploy_fns(front: str) -> list[str]:
    """``FNS`` hello fns through the front door, warmed; their invoke paths."""
    port = int(front.rsplit(":", 1)[1])
    app = _request(port, "POST", "/v2/apps", {"name": "bench"})
    paths = []
    for i in range(FNS):
        fn = _request(
            port,
            "POST",
            "/v2/fns",
            {
                "app_id": app["id"],
                "name": f"hello{i}",
                "image": FN_HELLO,
                "memory": 64,
                # Kept through the setup of every fn (a start takes seconds at this share).
                "idle_timeout": 3600,
                "annotations": {"fnagent.io/max-concurrency": 1},
            },
        )
        paths.append(f"/invoke/{fn['id']}")

    def warm(path: str) -> None:
        for _ in range(10):  # the first call launches the fn's container
            _request(port, "POST", path, {"name": "warm"})

    with ThreadPoolExecutor(FNS) as pool:
        list(pool.map(warm, paths))
    return paths


def lua(paths: list[str]) -> str:
    listed = ", ".join(json.dumps(path) for path in paths)
    return f"""
local paths = {{{listed}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", paths[(i % #paths) + 1],
    {{["Content-Type"] = "application/json"}}, '{{"name": "bench"}}')
end
"""


def spread(labels: list[str]) -> list[int]:
    """Function containers per agent (the hash's spread of the fns)."""
    counts = []
    for label in labels:
        listed = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=fnagent.instance={label}"],
            capture_output=True,
            text=True,
            check=True,
        )
        counts.append(len(listed.stdout.split()))
    return counts


@dataclass
class Run:
    rate: float
    total: int
    errors: int
    spread: list[int]
    """Function containers per agent at the end."""


def measure(postgres: PostgresServer, count: int) -> Run:
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-cluster-"))
    work.chmod(0o755)
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with agents_behind_nginx(work, postgres.create_database(), count, instance) as (
            front,
            labels,
        ):
            script = work / "cycle.lua"
            script.write_text(lua(deploy_fns(front)))
            _wrk(front, 2 * FNS, script, 2)  # warm
            loaded = _wrk(front, 2 * FNS, script, DURATION_S)
            return Run(
                rate=loaded["rate"],
                total=int(loaded["total"]),
                errors=int(loaded["errors"]),
                spread=spread(labels),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> Report:
    report = Report("cluster")
    postgres = PostgresServer().init().start()
    runs: dict[int, list[Run]] = {size: [] for size in SIZES}
    try:
        for _ in range(ROUNDS):
            for size in SIZES:
                runs[size].append(measure(postgres, size))
    finally:
        postgres.remove()

    def rate(size: int) -> float:
        return round(statistics.median(r.rate for r in runs[size]), 1)

    one = rate(1)
    for size in SIZES:
        target = ">= 2.5x 1 agent" if size == 3 else ""
        report.add(
            Row(
                f"hot invokes/s through nginx, {size} agent{'s' if size > 1 else ''}",
                rate(size),
                "1/s",
                "1 agent" if size > 1 else "",
                one if size > 1 else None,
                target,
                sum(r.total for r in runs[size]),
            )
        )
    errors = sum(r.errors for size in SIZES for r in runs[size])
    report.add(Row("errors (non-2xx, socket), all runs", errors, "count", target="0"))
    report.notes = {
        "agent_and_containers_cpus": AGENT_CPUS,
        "fns": FNS,
        "connections": 2 * FNS,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "containers_per_agent": {str(size): [r.spread for r in runs[size]] for size in SIZES},
        "method": "each agent and its function containers (FN_DOCKER_CGROUP_PARENT) in one "
        "CPU cgroup with a CFS quota of agent_and_containers_cpus; one container per fn "
        "(max-concurrency 1); wrk cycles through the fns' invoke URLs through nginx; nginx, "
        "wrk and PostgreSQL unconfined",
    }
    return report
