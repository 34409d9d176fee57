"""Cluster benchmark (``make bench BENCH=cluster``): hot invokes/s of the FDK hello through
nginx (deploy/nginx.conf) for 1, 2 and 3 agents sharing one PostgreSQL, every agent with the
same CPU share; target: 3 agents >= 2.5x one.

Method. This machine has 2 cores (shared), so an agent cannot have a core of its own; each
gets a CPU share instead: the agent process and its function containers run in one CPU
cgroup with a CFS quota of ``BENCH_CLUSTER_CPUS`` (0.25 CPU; cgroup v1's ``cpu`` controller,
with a ``cpuacct`` group beside it to count the group's CPU, or v2's ``cpu.max``; root only).
The agent runs in a child of it; its containers go under it through FN_DOCKER_CGROUP_PARENT
(Docker's ``--cgroup-parent``), so the agent and all its functions share the quota. The
group weighs 10 default groups (v1's ``cpu.shares``, v2's ``cpu.weight``), so that the quota
is a reservation, as a host of its own would be: without it, the other sessions of a shared
machine left a group less than its share in about a third of the runs.

What it measures is the hot steady state, nothing else: every agent serves the same number
of fns, ``FNS_PER_AGENT`` (4), each kept by one container (``fnagent.io/max-concurrency: 1``,
an hour's idle timeout, the fixed keep-alive policy) and loaded by one wrk connection of its
own (one wrk thread per connection, pinned to its fn's invoke URL), so each agent is loaded
on its own and no agent paces another's calls. The fns are placed before any is called: fns
are created until every agent has its four (which agent serves a fn is read from a header,
``X-Fnagent-Upstream: $upstream_addr``, that the bench's copy of the nginx config adds);
the others are left uncalled. The warm-up runs with no quota (a Python FDK's cold start at a
quarter of a CPU of a busy machine can outlast the agent's start timeout, which does not
forgive the container's own throttling): it launches every container the run needs and
checks that each agent has exactly its four; then the quota is set (a CFS quota can change
at run time) and one wrk run spans a 2 s warm-up under the quota, the window
(``BENCH_CLUSTER_DURATION_S``, 8 s) and a 1 s tail; the window's calls are counted by the
agents (``/v2/stats``). Not two wrk runs: wrk's end closes connections with calls in flight,
nginx closes its own to the agents, and an agent retires a container whose call was
cancelled (it may still be running), so a second run began with cold starts under the quota
(seen as kill events, cold starts and wrk timeouts). The agents' starts over the window
(``starts``: cold ones would be launches inside it), the containers at its end and their
Docker events are recorded.

What runs outside the shares: nginx, wrk, PostgreSQL (the call records), dockerd and the
containerd shims (every call's log frames, which the FDK writes on stdout and stderr, pass
through them to the agent's attach stream). They scale with the rate, so the shares must
leave them room, or the machine, not the shares, is what is measured: the notes record,
for each run, the machine's idle CPU and the CPU of the groups and of the rest (ms per
call) over the measured window, and how often the groups were throttled. Measured here:
about 1 ms of CPU outside per call (dockerd 0.25-0.4, the shims 0.15-0.25, nginx 0.1-0.2,
PostgreSQL 0.1-0.15, wrk 0.05-0.09) against 1.5-2.7 ms inside a group; a 0.25-CPU share
serves 90-170 calls/s, so 3 agents take 0.75 CPU and their calls about 0.3 more, which
leaves the machine room (at 0.5 CPU each, 3 agents and their calls' outside work needed all
of it: no run was bound by the shares).

The sizes are interleaved and repeated (``BENCH_CLUSTER_ROUNDS``, 3); the median per size
is reported over all runs, and again over the runs the shares bound (``bound``: every group
used at least SHARE_BOUND of its share; on a shared machine a busy neighbour can leave a
group less, and such a run measures the neighbour).
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
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.cluster import Nginx, http_get, stop_process
from tests.bench.bench_serve import _request, _wrk, parse_proc_stat
from tests.bench.report import Report, Row
from tests.postgres import PostgresServer

FN_HELLO = "fnagent/fn-hello"
AGENT_CPUS = float(os.environ.get("BENCH_CLUSTER_CPUS") or 0.25)
FNS_PER_AGENT = 4
SIZES = (1, 2, 3)
CGROUP_PERIOD_US = 100_000
DURATION_S = float(os.environ.get("BENCH_CLUSTER_DURATION_S") or 8)
WARM_S = 2.0
TAIL_S = 1.0
ROUNDS = int(os.environ.get("BENCH_CLUSTER_ROUNDS") or 3)
UPSTREAM_HEADER = "X-Fnagent-Upstream"
SHARE_BOUND = 0.9
"""A run is bound by the shares when every group used at least this much of its share."""
LOG_LINES = 5
MAX_FNS = 60
"""Fns created at most to find ``FNS_PER_AGENT`` for every agent (the hash is uneven)."""


class CpuGroup:
    """A CPU cgroup ``/<name>`` for an agent and its function containers, at first with no
    quota (``set_quota`` sets it): the agent runs in its child ``agent`` (``wrap``), the
    containers in children Docker makes (FN_DOCKER_CGROUP_PARENT=/<name>), so the quota
    bounds them together. Its CPU time (``usage_s``) and throttled periods (``throttled``)
    count them all: cgroup v2's ``cpu.stat``, or v1's ``cpuacct`` group of the same name
    (v1 mounts one tree per controller, or one for both; the agent joins each, Docker makes
    its containers' groups in every tree)."""

    V1 = Path("/sys/fs/cgroup/cpu")
    V1_ACCT = Path("/sys/fs/cgroup/cpuacct")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, name: str) -> None:
        self.name = name
        self.v2 = (self.V2 / "cgroup.controllers").exists()
        if self.v2:
            self.path = self.V2 / name
            self.path.mkdir()
            (self.path / "cgroup.subtree_control").write_text("+cpu\n")
            self.acct = self.path
        elif (self.V1 / "cpu.cfs_quota_us").exists() and (self.V1_ACCT / "cpuacct.usage").exists():
            self.path = self.V1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(f"{CGROUP_PERIOD_US}\n")
            self.acct = self.V1_ACCT / name
            if self.acct.resolve() == self.path.resolve():  # one tree: cpu,cpuacct
                self.acct = self.path
            else:
                self.acct.mkdir()
                (self.acct / "agent").mkdir()
        else:
            raise RuntimeError("no CPU cgroup controller to give each agent its share")
        (self.path / "agent").mkdir()
        # A weight of 10 default groups: the quota is a reservation, as a host of its own would
        # be, so a busy neighbour on a shared machine cannot leave the group less than it.
        if self.v2:
            (self.path / "cpu.weight").write_text(f"{10 * 100}\n")
        else:
            (self.path / "cpu.shares").write_text(f"{10 * 1024}\n")
        self.set_quota(None)

    def set_quota(self, cpus: float | None) -> None:
        """A CFS quota of ``cpus`` for the group and all below it; None: no quota."""
        quota = int(cpus * CGROUP_PERIOD_US) if cpus is not None else None
        if self.v2:
            value = str(quota) if quota is not None else "max"
            (self.path / "cpu.max").write_text(f"{value} {CGROUP_PERIOD_US}\n")
        else:
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota if quota else -1}\n")

    def usage_s(self) -> float:
        """CPU seconds used by the group and all below it so far."""
        if self.v2:
            return _stat(self.path / "cpu.stat")["usage_usec"] / 1e6
        return int((self.acct / "cpuacct.usage").read_text()) / 1e9

    def throttled(self) -> tuple[int, int]:
        """(CFS periods, periods in which the group was throttled) so far."""
        stat = _stat(self.path / "cpu.stat")
        return stat["nr_periods"], stat["nr_throttled"]

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run in the group's ``agent`` child (the shell moves in, then execs)."""
        procs = [str(self.path / "agent" / "cgroup.procs")]
        if self.acct != self.path:
            procs.append(str(self.acct / "agent" / "cgroup.procs"))
        moves = " && ".join(f'echo $$ > "${i}"' for i in range(len(procs)))
        script = f'{moves} && shift {len(procs) - 1} && exec "$@"'
        return ["sh", "-c", script, *procs, *argv]

    def remove(self) -> None:
        """Remove the group and what Docker made of it in every controller, once their
        processes are gone."""
        trees = [self.V2] if self.v2 else list(self.V2.glob("*"))
        for tree in trees:
            top = tree / self.name
            if not top.is_dir():
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                _rmdir(folder)
            _rmdir(top)


def _stat(path: Path) -> dict[str, int]:
    return {
        key: int(value)
        for key, value in (line.split() for line in path.read_text().splitlines() if line)
    }


def _rmdir(folder: Path) -> None:
    deadline = time.monotonic() + 10
    while folder.exists():
        try:
            folder.rmdir()
        except OSError:  # its last process is still exiting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def machine_cpu_s() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far (/proc/stat; iowait is idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    # guest time is already in user time
    return (sum(fields[:8]) - idle) / tick, idle / tick


OUTSIDE = ("dockerd", "containerd-shim", "containerd", "nginx", "postgres", "wrk")
"""The processes outside the groups that the calls use, by name; the rest is ``other``."""


def outside_snapshot(groups: list[CpuGroup]) -> dict[tuple[int, int], tuple[str, float]]:
    """The processes now outside ``groups``: (pid, start time) -> (OUTSIDE name or
    ``other``, CPU seconds so far)."""
    names = {group.name for group in groups}
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cgroups = (proc / "cgroup").read_text()
        except OSError:  # gone
            continue
        if any(f":/{name}/" in cgroups for name in names):
            continue
        parsed = parse_proc_stat(stat)
        key = next((name for name in OUTSIDE if parsed.name.startswith(name)), "other")
        found[(int(proc.name), parsed.started)] = (key, parsed.cpu_s)
    return found


def outside_cpu_s(
    before: dict[tuple[int, int], tuple[str, float]],
    after: dict[tuple[int, int], tuple[str, float]],
) -> dict[str, float]:
    """CPU seconds between two snapshots by name, of the processes in both (one that
    started or ended in between is missed: the machine's total counts it)."""
    spent = dict.fromkeys((*OUTSIDE, "other"), 0.0)
    for process, (key, used) in after.items():
        if process in before:
            spent[key] += used - before[process][1]
    return spent


@dataclass
class Cluster:
    front: str
    agents: list[str]
    """The agents' ``host:port``, as nginx's $upstream_addr names them."""
    labels: list[str]
    groups: list[CpuGroup]


@contextmanager
def agents_behind_nginx(work: Path, db_url: str, count: int, instance: str) -> Iterator[Cluster]:
    """``count`` agents (each in its CPU cgroup, no quota yet) and nginx, whose config adds
    the ``X-Fnagent-Upstream`` header."""
    port = _free_port()
    env = {
        **os.environ,
        "FN_DB_URL": db_url,
        "FN_SECRETS_KEY_FILE": str(work / "secrets-key"),
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "0",
        # A Python FDK starting on a busy 2-core machine takes seconds.
        "FN_HOT_START_TIMEOUT_MSECS": "60000",
        # Every fn keeps its container for its idle_timeout: the adaptive keep-alive, having
        # seen only back-to-back calls, removes a container after a second's pause (such as
        # the one between the warm-up and the run), and its cold start under the quota then
        # falls inside the run (a wrk timeout, a cold start in the window's starts).
        "FN_KEEPALIVE_POLICY": "fixed",
        "FNAGENT_LOG_LEVEL": os.environ.get("FNAGENT_LOG_LEVEL") or "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    groups: list[CpuGroup] = []
    labels: list[str] = []
    addresses: list[str] = []
    nginx: Nginx | None = None
    try:
        for k in range(count):
            folder = work / f"agent{k}"
            folder.mkdir()
            agent_port = _free_port()
            labels.append(f"{instance}-{k}")
            group = CpuGroup(f"fnagent-bench-{instance}-{k}")
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
        nginx = Nginx(work / "nginx", addresses, f"127.0.0.1:{port}")
        conf = nginx.root / "nginx.conf"
        tagged = conf.read_text().replace(
            "        location / {\n",
            f"        location / {{\n            add_header {UPSTREAM_HEADER} $upstream_addr"
            " always;\n",
            1,
        )
        if UPSTREAM_HEADER not in tagged:
            raise RuntimeError("deploy/nginx.conf: no `location / {` to add the upstream header")
        conf.write_text(tagged)
        nginx.start()
        assert nginx.process is not None
        front = f"http://127.0.0.1:{port}"
        _wait(f"{front}/version", nginx.process, nginx.log)
        yield Cluster(front, addresses, labels, groups)
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


def _tail_lines(log: Path) -> list[str]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-LOG_LINES:]


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while http_get(url)[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _upstream(front: str, path: str) -> str:
    """The agent (``host:port``) nginx sends ``path`` to: a GET of the fn's scale, hashed on
    the fn id like its invokes, and answered without a container."""
    import urllib.request

    with urllib.request.urlopen(front + path, timeout=30) as answer:
        return str(answer.headers[UPSTREAM_HEADER])


def place_fns(cluster: Cluster) -> list[list[str]]:
    """Hello fns created through the front door until every agent serves
    ``FNS_PER_AGENT`` of them; their invoke paths, per agent."""
    port = int(cluster.front.rsplit(":", 1)[1])
    app = _request(port, "POST", "/v2/apps", {"name": "bench"})
    placed: dict[str, list[str]] = {agent: [] for agent in cluster.agents}
    for i in range(MAX_FNS):
        if all(len(paths) == FNS_PER_AGENT for paths in placed.values()):
            return [placed[agent] for agent in cluster.agents]
        fn = _request(
            port,
            "POST",
            "/v2/fns",
            {
                "app_id": app["id"],
                "name": f"hello{i}",
                "image": FN_HELLO,
                "memory": 64,
                # Kept through the warm-up and the run, whatever the keep-alive learns.
                "idle_timeout": 3600,
                "annotations": {"fnagent.io/max-concurrency": 1},
            },
        )
        agent = _upstream(cluster.front, f"/v2/fns/{fn['id']}/scale")
        if len(placed[agent]) < FNS_PER_AGENT:
            placed[agent].append(f"/invoke/{fn['id']}")
    raise RuntimeError(f"{MAX_FNS} fns did not give every agent {FNS_PER_AGENT}: {placed}")


def warm(front: str, paths: list[str]) -> None:
    """Every fn called a few times, all at once: each launches its one container."""
    port = int(front.rsplit(":", 1)[1])

    def calls(path: str) -> None:
        for _ in range(5):
            _request(port, "POST", path, {"name": "warm"})

    with ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(calls, paths))


def lua(paths: list[str]) -> str:
    """wrk's script: thread k (with one connection of its own) calls ``paths[k]`` only."""
    listed = ", ".join(json.dumps(path) for path in paths)
    return f"""
local paths = {{{listed}}}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("path", paths[threads])
end
function init(args)
  wrk.method = "POST"
  wrk.path = path
  wrk.body = '{{"name": "bench"}}'
  wrk.headers["Content-Type"] = "application/json"
end
"""


def pinned_wrk(front: str, paths: list[str], script: Path, duration_s: float) -> dict[str, float]:
    """wrk with one thread and one connection per fn (``lua``)."""
    return _wrk(front, len(paths), script, duration_s, threads=len(paths))


def containers(labels: list[str]) -> list[int]:
    """Function containers per agent."""
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


def counters(agents: list[str]) -> dict[str, int]:
    """The agents' calls and starts so far, summed: {calls, cold, thawed, hot} (their
    /v2/stats; a call is counted when it ends)."""
    summed: dict[str, int] = {"calls": 0, "cold": 0, "thawed": 0, "hot": 0}
    for agent in agents:
        status, body = http_get(f"http://{agent}/v2/stats", timeout_s=30)
        if status != 200:
            raise RuntimeError(f"{agent}/v2/stats: {status} {body[:200]!r}")
        stats = json.loads(body)
        summed["calls"] += int(stats["calls"])
        for kind, count in stats["starts"].items():
            summed[kind] = summed.get(kind, 0) + count
    return summed


def container_events(labels: list[str], since: float) -> list[str]:
    """The die, kill and oom events of the agents' containers since ``since`` (unix time)."""
    found = []
    for k, label in enumerate(labels):
        listed = subprocess.run(
            ["docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}"]
            + ["--filter", f"label=fnagent.instance={label}"]
            + [f"--filter=event={event}" for event in ("die", "kill", "oom")]
            + ["--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        found += [f"agent{k}: {line[:300]}" for line in listed.stdout.splitlines() if line]
    return found


@dataclass
class Run:
    size: int
    rate: float
    """Calls/s over the window, counted by the agents (/v2/stats)."""
    total: int
    """Calls over the window."""
    errors: int
    """wrk's over its whole run (warm-up, window, tail): non-2xx and socket errors."""
    non2xx: int
    timeouts: int
    """wrk's (a call over 2 s)."""
    p99_ms: float
    """wrk's latencies, over its whole run."""
    max_ms: float
    starts: dict[str, int]
    """The agents' starts over the window (their /v2/stats): cold (a launch), thawed (a
    frozen container: idle for FN_FREEZE_IDLE_MSECS, 50 ms), hot."""
    containers: list[int]
    """Function containers per agent at the window's end (FNS_PER_AGENT each, unless one
    was launched or removed)."""
    bound: str
    """``share`` when every group used at least SHARE_BOUND of its share over the window,
    else ``machine`` (the machine, shared, did not give a group its share)."""
    idle_cpus: float
    """The machine's idle CPUs (of its cores) over the measured window."""
    groups_cpus: list[float]
    """CPUs each agent's group used over the window (at most its share)."""
    throttled: list[float]
    """Share of each group's CFS periods that ended throttled over the window."""
    groups_ms_per_call: float
    outside_ms_per_call: float
    """The machine's busy CPU outside the groups per call: nginx, wrk, PostgreSQL, dockerd,
    the shims, and whatever else the machine ran (it is shared)."""
    outside_by_name_ms_per_call: dict[str, float]
    """The same by process name (OUTSIDE, ``other``), of the processes alive at both ends of
    the window."""
    container_events: list[str]
    """The agents' containers that died, were killed or ran out of memory from the start of
    wrk's run to its end (Docker's events): a replaced container shows here, and so may the
    containers whose calls wrk's end cut (after the window)."""
    agent_log: list[str]
    """The agents' last log lines (warnings and errors: a failed freeze or thaw, a failed
    container), at most LOG_LINES per agent, from the start up to the end of the run."""


def measure(postgres: PostgresServer, size: int) -> Run:
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-cluster-"))
    work.chmod(0o755)
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with agents_behind_nginx(work, postgres.create_database(), size, instance) as cluster:
            paths = [path for placed in place_fns(cluster) for path in placed]
            warm(cluster.front, paths)
            launched = containers(cluster.labels)
            if launched != [FNS_PER_AGENT] * size:
                raise RuntimeError(f"containers per agent after the warm-up: {launched}")
            for group in cluster.groups:
                group.set_quota(AGENT_CPUS)
            script = work / "pinned.lua"
            script.write_text(lua(paths))
            # One wrk run spans the warm-up under the quota, the window and a tail: when wrk
            # ends, it closes its connections with calls in flight, nginx closes theirs to the
            # agents, and an agent retires a container whose call was cancelled (it may still
            # be running): a second wrk run would start with cold starts under the quota. So
            # the window is measured inside the run, its calls counted by the agents.
            warm_from = time.time()
            with ThreadPoolExecutor(1) as background:
                loading = background.submit(
                    pinned_wrk, cluster.front, paths, script, WARM_S + DURATION_S + TAIL_S
                )
                time.sleep(WARM_S)
                busy0, idle0 = machine_cpu_s()
                used0 = [group.usage_s() for group in cluster.groups]
                periods0 = [group.throttled() for group in cluster.groups]
                outside0 = outside_snapshot(cluster.groups)
                counted0 = counters(cluster.agents)
                start = time.monotonic()
                time.sleep(DURATION_S)
                counted = counters(cluster.agents)
                elapsed = time.monotonic() - start
                busy1, idle1 = machine_cpu_s()
                outside = outside_cpu_s(outside0, outside_snapshot(cluster.groups))
                used = [g.usage_s() - u for g, u in zip(cluster.groups, used0, strict=True)]
                periods = [
                    (g.throttled()[0] - p[0], g.throttled()[1] - p[1])
                    for g, p in zip(cluster.groups, periods0, strict=True)
                ]
                in_window = containers(cluster.labels)
                loaded = loading.result()
            window = {kind: counted[kind] - counted0[kind] for kind in counted}
            calls = max(1, window["calls"])

            def per_call(cpu_s: float) -> float:
                return round(cpu_s * 1000 / calls, 3)

            groups_cpus = [round(u / elapsed, 3) for u in used]
            return Run(
                size=size,
                rate=round(window["calls"] / elapsed, 2),
                total=window["calls"],
                errors=int(loaded["errors"]),
                non2xx=int(loaded["non2xx"]),
                timeouts=int(loaded["timeouts"]),
                p99_ms=loaded["p99"],
                max_ms=loaded["max"],
                starts={kind: window[kind] for kind in ("cold", "thawed", "hot")},
                containers=in_window,
                bound="share" if min(groups_cpus) >= SHARE_BOUND * AGENT_CPUS else "machine",
                idle_cpus=round((idle1 - idle0) / elapsed, 2),
                groups_cpus=groups_cpus,
                throttled=[round(t / n, 2) if n else 0.0 for n, t in periods],
                groups_ms_per_call=per_call(sum(used)),
                outside_ms_per_call=per_call(busy1 - busy0 - sum(used)),
                outside_by_name_ms_per_call={
                    name: per_call(cpu_s) for name, cpu_s in outside.items()
                },
                container_events=container_events(cluster.labels, warm_from),
                agent_log=[
                    f"agent{k}: {line[:400]}"
                    for k in range(size)
                    for line in _tail_lines(work / f"agent{k}" / "serve.log")
                ],
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
                run = measure(postgres, size)
                print(f"    {size} agent(s): {json.dumps(asdict(run))}", flush=True)
                runs[size].append(run)
    finally:
        postgres.remove()

    def add_rows(chosen: dict[int, list[Run]], which: str) -> None:
        if not all(chosen.values()):
            print(f"  (no {which}: some size has none)")
            return
        rates = {size: round(statistics.median(r.rate for r in chosen[size]), 1) for size in SIZES}
        for size in SIZES:
            report.add(
                Row(
                    f"hot invokes/s through nginx, {size} agent{'s' if size > 1 else ''}, {which}",
                    rates[size],
                    "1/s",
                    "1 agent" if size > 1 else "",
                    rates[1] if size > 1 else None,
                    ">= 2.5x 1 agent" if size == 3 else "",
                    len(chosen[size]),
                )
            )

    add_rows(runs, "all runs")
    add_rows({size: [r for r in runs[size] if r.bound == "share"] for size in SIZES}, "share-bound")
    errors = sum(r.errors for size in SIZES for r in runs[size])
    report.add(Row("errors (non-2xx, socket), all runs", errors, "count", target="0"))
    report.notes = {
        "agent_and_containers_cpus": AGENT_CPUS,
        "fns_per_agent": FNS_PER_AGENT,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "share_bound": SHARE_BOUND,
        "runs": {str(size): [asdict(r) for r in runs[size]] for size in SIZES},
        "method": "each agent and its function containers (FN_DOCKER_CGROUP_PARENT) in one "
        "CPU cgroup; every agent serves fns_per_agent fns (placed by the header nginx adds), "
        "one container each (max-concurrency 1), launched with no quota; then the CFS quota "
        "of agent_and_containers_cpus is set and only the hot steady state is measured: wrk, "
        "one thread and one connection per fn, pinned to it, through nginx; nginx, wrk, "
        "PostgreSQL, dockerd and the shims run outside the quotas (outside_ms_per_call, "
        "idle_cpus: the machine's idle CPUs over the window)",
    }
    return report
