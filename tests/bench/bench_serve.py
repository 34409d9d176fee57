"""Serve benchmarks (issue: serve): hot invokes of the FDK hello function through HTTP, with the
load generator (wrk) in its own process, at concurrency 1 and 16; baselines in the same run: a
raw client on a hot container's socket, and ``Agent.submit`` directly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import anyio

from fnagent.agent.httpclient import UnixHTTPConnection
from tests.bench.hello import docker_rm, docker_run_hello
from tests.bench.report import Report, Row, median_ms

FN_HELLO = "fnagent/fn-hello"
BODY = '{"name": "bench"}'
DURATION_S = 8
RAW_CALLS = 2000
_LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(
    port: int, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, str]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        method,
        path,
        body=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    data = response.read()
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    if response.getheader("Content-Type", "").startswith("application/json"):
        document: dict[str, str] = json.loads(data)
        return document
    return {}


def _wrk(
    url: str, connections: int, script: Path, duration_s: float = DURATION_S, threads: int = 1
) -> dict[str, float]:
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration_s:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout

    def latency(pattern: str) -> float:
        match = re.search(pattern + r"([\d.]+)(us|ms|s)\b", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no latency {pattern!r} in wrk output:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    counts = [int(g) for g in socket_errors.groups()] if socket_errors else [0, 0, 0, 0]
    return {
        "p50": latency(r"^\s+50%\s+"),
        "p99": latency(r"^\s+99%\s+"),
        "max": latency(r"^\s+Latency\s+\S+\s+\S+\s+"),
        "rate": rate,
        "total": total,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + sum(counts),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "timeouts": counts[3],
    }


class ProcStat(NamedTuple):
    """What the benches read from ``/proc/<pid>/stat``."""

    name: str
    """The command's name (``comm``, at most 15 characters)."""
    cpu_s: float
    """CPU seconds so far, user and system, all threads."""
    started: int
    """Its start time in clock ticks since boot: tells a reused pid apart."""


def parse_proc_stat(text: str) -> ProcStat:
    """``text``, one ``/proc/<pid>/stat``, parsed (a name may hold spaces and parentheses:
    the fields start after its last ``)``)."""
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # Counting from the state (field 3 of proc(5)) as 0: utime 11, stime 12, starttime 19.
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return ProcStat(name, cpu_s, int(fields[19]))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user and system, all threads) process ``pid`` has used so far."""
    return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text()).cpu_s


def wrk_with_cpu(
    pid: int, url: str, connections: int, script: Path, duration_s: float
) -> dict[str, float]:
    """``_wrk``'s figures, with what process ``pid`` (the server) spent meanwhile: ``cpu_s``
    in all, ``cpu_us`` per request (microseconds) and ``cpu_share`` (of one core, 0-1)."""
    cpu_before, started = process_cpu_s(pid), time.monotonic()
    figures = _wrk(url, connections, script, duration_s)
    cpu_s, elapsed_s = process_cpu_s(pid) - cpu_before, time.monotonic() - started
    figures["cpu_s"] = cpu_s
    figures["cpu_us"] = cpu_s / max(1, figures["total"]) * 1e6
    figures["cpu_share"] = cpu_s / elapsed_s
    return figures


def _raw_baseline() -> list[float]:
    """A raw client on a hot fn-hello container's socket, serial."""
    labels = {"fnagent.managed": "1", "fnagent.instance": f"bench-{uuid.uuid4().hex[:8]}"}
    container, socket_dir = docker_run_hello(labels)
    try:

        async def calls() -> list[float]:
            connection = UnixHTTPConnection(os.path.join(socket_dir, "lsnr.sock"))
            headers = [
                ("Content-Type", "application/json"),
                ("Fn-Call-Id", "x"),
                ("Fn-Deadline", "2099-01-01T00:00:00.000Z"),
            ]
            samples = []
            for _ in range(RAW_CALLS):
                started = time.perf_counter()
                await connection.request("POST", "/call", headers, BODY.encode())
                samples.append(time.perf_counter() - started)
            connection.close()
            return samples

        return anyio.run(calls, backend_options={"use_uvloop": True})
    finally:
        docker_rm(container)


def start_server(
    work: Path, extra_env: dict[str, str] | None = None, db_url: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``fnagent serve`` on a free port with its store (a SQLite file unless ``db_url``) and
    sockets under ``work``, once it answers; its output goes to ``work``/serve.log."""
    port = _free_port()
    env = {
        **os.environ,
        "FNAGENT_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "FN_IOFS_PATH": str(work / "iofs"),
        "FNAGENT_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    with (work / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fnagent",
                "serve",
                "--port",
                str(port),
                "--db-url",
                db_url or f"sqlite3://{work / 'fn.db'}",
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            _request(port, "GET", "/")
            return server, port
        except (OSError, RuntimeError):
            if time.monotonic() > deadline or server.poll() is not None:
                server.terminate()
                log_text = (work / "serve.log").read_text()
                raise RuntimeError(f"serve did not start: {log_text}") from None
            time.sleep(0.1)


def deploy_hello(port: int) -> str:
    """The hello fn deployed on the server at ``port``, warmed; its invoke URL."""
    app = _request(port, "POST", "/v2/apps", {"name": "bench"})
    fn = _request(
        port,
        "POST",
        "/v2/fns",
        {"app_id": app["id"], "name": "hello", "image": FN_HELLO, "memory": 64},
    )
    for _ in range(20):  # warm: the first call launches the container
        _request(port, "POST", f"/invoke/{fn['id']}", {"name": "warm"})
    return f"http://127.0.0.1:{port}/invoke/{fn['id']}"


def main() -> Report:
    report = Report("serve")
    raw = _raw_baseline()
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-serve-"))
    server, port = start_server(work)
    try:
        url = deploy_hello(port)
        script = work / "post.lua"
        script.write_text(_LUA)
        serial = _wrk(url, 1, script)
        _wrk(url, 16, script)  # warm 16 containers
        loaded = _wrk(url, 16, script)
    finally:
        server.terminate()
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    raw_p50 = median_ms(raw)
    report.add(Row("raw client on the container socket p50", raw_p50, "ms", samples=len(raw)))
    report.add(
        Row(
            "HTTP invoke p50, concurrency 1 (wrk)",
            serial["p50"],
            "ms",
            "raw client",
            raw_p50,
            "<= raw + 1 ms",
            int(serial["total"]),
        )
    )
    report.add(
        Row(
            "HTTP invoke overhead p50 over the raw client",
            round(serial["p50"] - raw_p50, 3),
            "ms",
            target="<= 1 ms",
        )
    )
    report.add(Row("HTTP invokes/s, concurrency 1", serial["rate"], "1/s"))
    report.add(
        Row(
            "HTTP invokes/s, concurrency 16",
            loaded["rate"],
            "1/s",
            target=">= 2000/s",
            samples=int(loaded["total"]),
        )
    )
    report.add(
        Row(
            "HTTP invoke p50 / p99, concurrency 16",
            loaded["p50"],
            "ms",
            samples=int(loaded["total"]),
        )
    )
    report.add(
        Row(
            "errors (non-2xx, socket) at concurrency 1 + 16",
            serial["errors"] + loaded["errors"],
            "count",
            target="0",
        )
    )
    report.notes["p99_concurrency_16_ms"] = loaded["p99"]
    return report
