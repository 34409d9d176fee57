"""Detached invocations (issue: every call on record, section 3): how fast ``fnagent serve``
answers 202 to ``Fn-Invoke-Type: detached`` at concurrency 16 (wrk in its own process) while
the dispatcher runs the queued calls of a function that sleeps, so the answer cannot wait for
the function. The target row starts with the function cold on a running server (its prefork
pool up): its first seconds include the dispatcher starting the function's containers, the
machine's busiest moment. A second run of the same load follows at once, with those containers
running, to show the 202 apart from the cold starts; then the same 16 connections offered half
that run's rate (each pausing at random between its requests), to show the 202 when the
requests do not all queue behind one event loop. ``BENCH_DETACHED_S`` sets the duration of
each wrk run (default 8 s); ``BENCH_DETACHED_DB`` the store: ``sqlite`` (default;
``FN_DB_SYNC`` from the environment applies) or ``postgres`` (a private server with
PostgreSQL's own durable defaults: fsync and synchronous_commit on)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.bench.bench_serve import _request, start_server, wrk_with_cpu
from tests.bench.report import Report, Row

FN_TEST = "fnagent/fn-test"
SLEEP_MS = 1000
_LUA = f"""
wrk.method = "POST"
wrk.body = '{{"sleep_ms": {SLEEP_MS}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Fn-Invoke-Type"] = "detached"
"""


def main() -> Report:
    database = os.environ.get("BENCH_DETACHED_DB", "sqlite")
    if database not in ("sqlite", "postgres"):
        raise SystemExit(f"BENCH_DETACHED_DB must be sqlite or postgres, got {database!r}")
    report = Report("detached" if database == "sqlite" else "detached-postgres")
    duration_s = float(os.environ.get("BENCH_DETACHED_S", "8"))
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-detached-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # the store: ~60 MB a run
        db_url = None
        if database == "postgres":
            from tests.postgres import PostgresServer

            postgres = PostgresServer(durable=True)
            stack.callback(postgres.remove)
            db_url = postgres.init().start().create_database()
        loaded, steady, paced, ping = _measure(work, duration_s, db_url)
    samples = int(loaded["total"])
    store = "" if database == "sqlite" else ", PostgreSQL"
    report.add(
        Row(
            f"detached 202 p99, concurrency 16, fn sleeping {SLEEP_MS} ms{store}",
            loaded["p99"],
            "ms",
            "ping p99",
            ping["p99"],
            target="<= 5 ms",
            samples=samples,
        )
    )
    report.add(Row("GET / (ping) p99, concurrency 16, same load", ping["p99"], "ms"))
    report.add(Row("detached 202 p50, concurrency 16", loaded["p50"], "ms", samples=samples))
    report.add(Row("detached 202s/s, concurrency 16", loaded["rate"], "1/s", samples=samples))
    steady_samples = int(steady["total"])
    report.add(
        Row(
            "detached 202 p99, the next run (the fn's containers running)",
            steady["p99"],
            "ms",
            samples=steady_samples,
        )
    )
    report.add(Row("detached 202 p50, the next run", steady["p50"], "ms", samples=steady_samples))
    report.add(Row("detached 202s/s, the next run", steady["rate"], "1/s", samples=steady_samples))
    paced_samples = int(paced["total"])
    report.add(
        Row(
            "detached 202 p99, concurrency 16 at half that rate",
            paced["p99"],
            "ms",
            samples=paced_samples,
        )
    )
    report.add(
        Row("detached 202 p50, at half that rate", paced["p50"], "ms", samples=paced_samples)
    )
    report.add(
        Row("detached 202s/s, at half that rate", paced["rate"], "1/s", samples=paced_samples)
    )
    # What the server spends per answer: unlike the latencies, barely moved by what else the
    # machine runs, so trees compare across noisy hours. A share near 1 (one core) says the
    # event loop is saturated, where the latency at concurrency 16 is 16 / the rate.
    report.add(
        Row(
            "server CPU per 202, the next run",
            steady["cpu_us"],
            "us",
            "per ping",
            ping["cpu_us"],
            samples=steady_samples,
        )
    )
    report.add(Row("server CPU per 202, cold run", loaded["cpu_us"], "us", samples=samples))
    report.add(Row("server CPU share of one core, the next run", steady["cpu_share"], "cores"))
    report.add(Row("server CPU share of one core, ping", ping["cpu_share"], "cores"))
    errors = loaded["errors"] + steady["errors"] + paced["errors"]
    report.add(Row("errors (non-2xx, socket), the 202 runs", errors, "count", target="0"))
    return report


def _wait_for_the_pool(port: int) -> None:
    """Until the prefork pool's first slots are up (~0.8 s after the server answers): the
    cold row is a cold function on a running server, not the server's own start."""
    deadline = time.monotonic() + 30
    while True:
        stats: dict[str, Any] = _request(port, "GET", "/v2/stats")
        pool = stats.get("pool") or {}
        if not pool or (pool["starting"] == 0 and pool["free"] > 0):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the prefork pool did not fill: {pool}")
        time.sleep(0.1)


def _paced(script: str, offered_per_s: float, connections: int) -> str:
    """``script`` with each of wrk's ``connections`` pausing between its requests, a random
    0 to twice the mean (so they never fall into step), to offer about ``offered_per_s``
    requests/s in all. A pause is not counted in a request's latency."""
    pause_ms = max(1, round(connections / offered_per_s * 1000))
    return script + f"function delay()\n  return math.random(0, {2 * pause_ms})\nend\n"


def _measure(
    work: Path, duration_s: float, db_url: str | None
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float]]:
    """wrk's figures for the 202s from a cold fn, for the 202s right after (its containers
    running), for 202s offered at half the rate of that run, then for ``GET /`` on the same
    server."""
    # A PostgreSQL store keeps no key file beside it: this run's own.
    key_env = {"FN_SECRETS_KEY_FILE": str(work / "secrets-key")} if db_url else None
    server, port = start_server(work, key_env, db_url=db_url)
    try:
        app = _request(port, "POST", "/v2/apps", {"name": "bench"})
        fn = _request(
            port,
            "POST",
            "/v2/fns",
            {"app_id": app["id"], "name": "sleepy", "image": FN_TEST, "memory": 64},
        )
        script = work / "detached.lua"
        script.write_text(_LUA)
        url = f"http://127.0.0.1:{port}/invoke/{fn['id']}"
        _wait_for_the_pool(port)
        loaded = wrk_with_cpu(server.pid, url, 16, script, duration_s)
        steady = wrk_with_cpu(server.pid, url, 16, script, duration_s)
        # The same 16 connections at half the rate the server reached: how long a 202 takes
        # when requests do not queue up behind the event loop.
        paced_script = work / "detached-paced.lua"
        paced_script.write_text(_paced(_LUA, steady["rate"] / 2, 16))
        paced = wrk_with_cpu(server.pid, url, 16, paced_script, duration_s)
        # The server answering a constant, under the load the queued calls make: on a busy
        # machine this says how much of the 202's time is the machine's.
        ping_script = work / "ping.lua"
        ping_script.write_text('wrk.method = "GET"\n')
        ping = wrk_with_cpu(server.pid, f"http://127.0.0.1:{port}/", 16, ping_script, duration_s)
    finally:
        server.terminate()
        server.wait(60)
    return loaded, steady, paced, ping
