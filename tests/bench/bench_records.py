"""Call records benchmark (issue: every call on record): what recording costs the hot path.

Two ``fnagent serve`` processes side by side, one recording calls (the default) and one with
``FN_CALL_RECORDS=off``, each serving the FDK hello function; wrk (its own process) loads them
in turn, interleaved round by round (on, off, then off, on), so drift on a shared machine
falls on both alike. Rows: hot invokes/s at concurrency 16 on vs off (target >= 0.95x, and
still >= 2,000/s with recording on), and p50 at concurrency 1 on vs off (target: <= 0.1 ms
more); and the server's CPU per invoke at concurrency 16 on vs off, recording's cost apart
from the machine's load. ``BENCH_RECORDS_DURATION_S`` (8) and ``BENCH_RECORDS_ROUNDS`` (3)
shorten a run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.bench.bench_serve import (
    _LUA,
    _request,
    _wrk,
    deploy_hello,
    start_server,
    wrk_with_cpu,
)
from tests.bench.report import Report, Row

DURATION_S = float(os.environ.get("BENCH_RECORDS_DURATION_S") or 8)
ROUNDS = int(os.environ.get("BENCH_RECORDS_ROUNDS") or 3)


def main() -> Report:
    report = Report("records")
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-records-"))
    script = work / "post.lua"
    script.write_text(_LUA)
    servers = {}
    urls: dict[str, str] = {}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for mode, env in (("on", {}), ("off", {"FN_CALL_RECORDS": "off"})):
            folder = work / mode
            folder.mkdir()
            servers[mode], port = start_server(folder, env)
            urls[mode] = deploy_hello(port)
        for mode in ("on", "off"):  # warm 16 containers each
            _wrk(urls[mode], 16, script, min(DURATION_S, 4))
        for i in range(ROUNDS):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for connections in (16, 1):
                for mode in order:
                    pid = servers[mode].pid
                    measured = wrk_with_cpu(pid, urls[mode], connections, script, DURATION_S)
                    results.setdefault((mode, connections), []).append(measured)
        port = int(urls["on"].split(":")[2].split("/")[0])
        fn_id = urls["on"].rsplit("/", 1)[1]
        recorded = _request(port, "GET", f"/v2/fns/{fn_id}/calls?per_page=1")
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(60)
        shutil.rmtree(work, ignore_errors=True)

    def rate(mode: str) -> float:
        runs = results[(mode, 16)]
        return round(sum(r["total"] for r in runs) / (DURATION_S * len(runs)), 1)

    def p50(mode: str) -> float:
        return round(statistics.median(r["p50"] for r in results[(mode, 1)]), 3)

    def cpu_us(mode: str) -> float:
        """What the server spent per invoke at concurrency 16 (its CPU over its invokes, all
        rounds): recording's cost itself, which a busy machine moves far less than the rate."""
        runs = results[(mode, 16)]
        return round(sum(r["cpu_s"] for r in runs) / sum(r["total"] for r in runs) * 1e6, 1)

    def total(mode: str, connections: int) -> int:
        return int(sum(r["total"] for r in results[(mode, connections)]))

    report.add(Row("HTTP invokes/s, concurrency 16, recording off", rate("off"), "1/s"))
    report.add(
        Row(
            "HTTP invokes/s, concurrency 16, recording on",
            rate("on"),
            "1/s",
            "recording off",
            rate("off"),
            ">= 0.95x and >= 2000/s",
            total("on", 16),
        )
    )
    report.add(
        Row(
            "server CPU per invoke, concurrency 16, recording on",
            cpu_us("on"),
            "us",
            "recording off",
            cpu_us("off"),
            samples=total("on", 16),
        )
    )
    report.add(Row("HTTP invoke p50, concurrency 1, recording off", p50("off"), "ms"))
    report.add(
        Row(
            "HTTP invoke p50, concurrency 1, recording on",
            p50("on"),
            "ms",
            "recording off",
            p50("off"),
            samples=total("on", 1),
        )
    )
    report.add(
        Row(
            "p50 overhead of recording, concurrency 1",
            round(p50("on") - p50("off"), 3),
            "ms",
            target="<= 0.1 ms",
        )
    )
    errors = sum(int(r["errors"]) for runs in results.values() for r in runs)
    report.add(Row("errors (non-2xx, socket), all runs", errors, "count", target="0"))
    report.notes.update(
        ratio_invokes_per_s_on_over_off=round(rate("on") / rate("off"), 3),
        ratio_cpu_per_invoke_on_over_off=round(cpu_us("on") / cpu_us("off"), 3),
        p50_overhead_ms=round(p50("on") - p50("off"), 3),
        rounds=ROUNDS,
        duration_s=DURATION_S,
        a_call_was_recorded=bool(recorded.get("items")),
        runs={f"{mode}-c{c}": runs for (mode, c), runs in results.items()},
    )
    return report
