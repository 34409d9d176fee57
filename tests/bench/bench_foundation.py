"""Foundation benchmarks (issue: foundation): `fnagent run` vs `docker run --rm -i`, Engine API
container start with bridge networking vs joining another container's namespace, and the CLI's
import time."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from tests.bench.report import Report, Row, median_ms

RUNS = 12
API_RUNS = 10
LABELS = {"fnagent.managed": "1", "fnagent.instance": f"bench-{uuid.uuid4().hex[:8]}"}
FN_SHELL = "fnagent/fn-shell"
BUSYBOX = "fnagent/busybox"
RAWRUN = str(Path(__file__).with_name("rawrun.py"))


def _timed(
    command: list[str],
    stdin: bytes,
    env: dict[str, str] | None = None,
    expect: bytes = b"Hello, bench!\n",
) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, check=False, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or done.stdout != expect:
        raise RuntimeError(f"{command[0]} failed: {done.returncode} {done.stderr[-300:]!r}")
    return elapsed


def bench_run_vs_docker(report: Report) -> None:
    """``fnagent run`` against ``docker run --rm -i``, and two references that say where the
    gap comes from: the docker CLI's API sequence in Python with the standard library only, and
    the same with docker-py imported first (unused)."""
    label_args = [a for k, v in LABELS.items() for a in ("--label", f"{k}={v}")]
    docker_cmd = ["docker", "run", "--rm", "-i", *label_args, FN_SHELL]
    fnagent_cmd = [sys.executable, "-m", "fnagent", "run", "--standalone", FN_SHELL]
    raw_cmd = [sys.executable, RAWRUN, FN_SHELL, *(f"{k}={v}" for k, v in LABELS.items())]
    with_docker_py = {**os.environ, "FNAGENT_RAWRUN_IMPORT": "docker"}
    ours: list[float] = []
    theirs: list[float] = []
    raw: list[float] = []
    raw_docker_py: list[float] = []
    _timed(docker_cmd, b"bench")  # warm every path once
    _timed(fnagent_cmd, b"bench")
    _timed(raw_cmd, b"bench", with_docker_py)
    for _ in range(RUNS):  # interleaved, so drift hits all alike
        theirs.append(_timed(docker_cmd, b"bench"))
        ours.append(_timed(fnagent_cmd, b"bench"))
        raw.append(_timed(raw_cmd, b"bench"))
        raw_docker_py.append(_timed(raw_cmd, b"bench", with_docker_py))
    report.add(
        Row("docker run --rm -i fn-shell (whole process)", median_ms(theirs), "ms", samples=RUNS)
    )
    for name, samples in (
        ("stdlib Engine API client, the CLI's calls (floor)", raw),
        ("same + `import docker` (docker-py's import alone)", raw_docker_py),
    ):
        report.add(Row(name, median_ms(samples), "ms", "docker run", median_ms(theirs), "", RUNS))
    report.add(
        Row(
            "fnagent run --standalone fn-shell (whole process)",
            median_ms(ours),
            "ms",
            "docker run",
            median_ms(theirs),
            "<= 1.2x",
            RUNS,
        )
    )
    pairwise = sorted(o / t for o, t in zip(ours, theirs, strict=True))
    report.notes["run_vs_docker_median_pairwise_ratio"] = round(pairwise[len(pairwise) // 2], 3)


@contextlib.contextmanager
def _agent() -> Iterator[str]:
    """A `fnagent serve` of its own (default prefork pool) on a free port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-agent-"))
    env = {**os.environ, "FNAGENT_INSTANCE_ID": LABELS["fnagent.instance"]}
    command = [sys.executable, "-m", "fnagent", "serve", "--port", str(port)]
    with (work / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--db-url", f"sqlite3://{work}/fnagent.db"], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if json.load(answer)["pool"]["free"] >= 2:
                        break
            except (OSError, KeyError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fnagent serve did not start: {work / 'serve.log'}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def bench_run_via_agent(report: Report) -> None:
    """``fnagent run`` handed to a running agent (its prefork pool) against ``docker run --rm
    -i`` of busybox ``true``, and the standalone path, interleaved."""
    label_args = [a for k, v in LABELS.items() for a in ("--label", f"{k}={v}")]
    docker_cmd = ["docker", "run", "--rm", "-i", *label_args, BUSYBOX, "true"]
    run_cmd = [sys.executable, "-m", "fnagent", "run", BUSYBOX, "true"]
    standalone = {**os.environ, "FN_API_URL": "http://127.0.0.1:1"}
    with _agent() as url:
        via_agent = {**os.environ, "FN_API_URL": url}
        samples: dict[str, list[float]] = {"docker": [], "agent": [], "standalone": []}
        envs = {"docker": None, "agent": via_agent, "standalone": standalone}
        commands = {"docker": docker_cmd, "agent": run_cmd, "standalone": run_cmd}
        for name in samples:  # warm every path once
            _timed(commands[name], b"", envs[name], expect=b"")
        for _ in range(RUNS):
            for name in samples:
                samples[name].append(_timed(commands[name], b"", envs[name], expect=b""))
    theirs = median_ms(samples["docker"])
    report.add(Row("docker run --rm -i busybox true", theirs, "ms", samples=RUNS))
    report.add(
        Row(
            "fnagent run busybox true, via a running agent",
            median_ms(samples["agent"]),
            "ms",
            "docker run",
            theirs,
            "<= 0.8x",
            RUNS,
        )
    )
    report.add(
        Row(
            "fnagent run --standalone busybox true",
            median_ms(samples["standalone"]),
            "ms",
            "docker run",
            theirs,
            "",
            RUNS,
        )
    )
    pairwise = sorted(a / d for a, d in zip(samples["agent"], samples["docker"], strict=True))
    report.notes["agent_run_vs_docker_median_pairwise_ratio"] = round(
        pairwise[len(pairwise) // 2], 3
    )


def _create_start_wait(api: docker.APIClient, network_mode: str) -> float:
    started = time.perf_counter()
    container = api.create_container(
        BUSYBOX,
        ["true"],
        labels=LABELS,
        host_config=api.create_host_config(network_mode=network_mode),
    )
    api.start(container)
    api.wait(container)
    elapsed = time.perf_counter() - started
    api.remove_container(container, force=True)
    return elapsed


def bench_namespace_join(report: Report, api: docker.APIClient) -> None:
    holder = api.create_container(
        BUSYBOX,
        ["tail", "-f", "/dev/null"],
        labels=LABELS,
        host_config=api.create_host_config(log_config={"type": "none"}),
    )
    api.start(holder)
    try:
        join = f"container:{holder['Id']}"
        bridge_s: list[float] = []
        join_s: list[float] = []
        for _ in range(API_RUNS):
            bridge_s.append(_create_start_wait(api, "bridge"))
            join_s.append(_create_start_wait(api, join))
        report.add(
            Row(
                "API create+start+wait busybox true: bridge",
                median_ms(bridge_s),
                "ms",
                samples=API_RUNS,
            )
        )
        report.add(
            Row(
                "API create+start+wait busybox true: join namespace",
                median_ms(join_s),
                "ms",
                "bridge",
                median_ms(bridge_s),
                "",
                API_RUNS,
            )
        )
        for concurrency in (8,):
            for mode, name in (("bridge", "bridge"), (join, "join namespace")):
                report.add(
                    Row(
                        f"containers/s at concurrency {concurrency}: {name}",
                        _throughput(api, mode, concurrency),
                        "c/s",
                        samples=concurrency * 3,
                    )
                )
    finally:
        api.remove_container(holder, force=True)


def _throughput(api: docker.APIClient, network_mode: str, concurrency: int) -> float:
    total = concurrency * 3
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: _create_start_wait(api, network_mode), range(total)))
    return round(total / (time.perf_counter() - started), 2)


def bench_import_time(report: Report) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fnagent", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    # Lines are "import time: self | cumulative | name", nested imports indented under their
    # importer; the top-level lines' cumulative times add up to the whole.
    total_us = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            if not parts[2].startswith("  "):
                total_us += int(parts[1])
    report.add(Row("python -X importtime: fnagent --help, total", round(total_us / 1000, 2), "ms"))


def main() -> Report:
    report = Report("foundation")
    api = docker.APIClient(version="auto")
    try:
        bench_import_time(report)
        bench_run_vs_docker(report)
        bench_run_via_agent(report)
        bench_namespace_join(report, api)
    finally:
        for container in api.containers(
            all=True, filters={"label": "fnagent.instance=" + LABELS["fnagent.instance"]}
        ):
            api.remove_container(container["Id"], force=True)
        api.close()
    return report
