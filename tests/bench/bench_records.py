"""Call records benchmark (issue: every call on record): what recording costs the hot path.

Two ``fnagent serve`` processes side by side, one recording calls (the default) and one with
``FN_CALL_RECORDS=off``, each serving the FDK hello function; wrk (its own process) loads them
in turn. Each round starts a fresh pair (in alternating order) and measures both, on then off
or off then on: in an A/A test on this machine (2026-12-02, two servers of the same tree, four
interleaved rounds) one server was faster in every round, 1,245 vs 1,072/s in all, so a pair
kept for every round could carry its own difference into the ratio.

Rows: hot invokes/s at concurrency 16 on vs off (target >= 0.95x, and still >= 2,000/s with
recording on), pooled over the rounds and as the median of the rounds' ratios; p50 at
concurrency 1 on vs off (target: <= 0.1 ms more); and the server's CPU per invoke at
concurrency 16 on vs off, recording's cost apart from the machine's load. Last, recording's
cost in instructions per call (callgrind over ``tests/bench/recordcost.py``, on minus off),
which no load on the machine moves: the figure to compare trees by.
``BENCH_RECORDS_DURATION_S`` (8) and ``BENCH_RECORDS_ROUNDS`` (3) shorten a run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
PRUNE_INTERVAL_S = "2"
MODES = {
    "on": {"FN_CALL_PRUNE_INTERVAL_S": PRUNE_INTERVAL_S},
    "off": {"FN_CALL_RECORDS": "off", "FN_CALL_PRUNE_INTERVAL_S": PRUNE_INTERVAL_S},
}
"""Each server's environment: recording on (the default) or off. Retention prunes every 2 s
(60 by default), so that each run holds its share of the deletes a recording server makes at
steady state (as many as it inserts past 1,000 calls), not a minute's at once or none."""


CALLGRIND_CALLS = (1000, 3000)
"""Two sizes of the callgrind run: their difference per call leaves start-up out."""


def _instructions(work: Path, calls: int, mode: str) -> int:
    """Instructions ``tests.bench.recordcost`` takes for ``calls`` calls, recording ``mode``."""
    out = work / f"callgrind.{mode}.{calls}"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "tests.bench.recordcost",
            str(calls),
            mode,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dicts and sets in every run
    )
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {out}")


def recording_instructions(work: Path) -> dict[str, float]:
    """Instructions per call with recording on and off (two runs at a time: one core each)."""
    runs = [(calls, mode) for mode in ("on", "off") for calls in CALLGRIND_CALLS]
    with ThreadPoolExecutor(2) as pool:
        counted = pool.map(lambda run: _instructions(work, *run), runs)
        counts = dict(zip(runs, counted, strict=True))
    few, many = CALLGRIND_CALLS
    return {
        mode: (counts[(many, mode)] - counts[(few, mode)]) / (many - few) for mode in ("on", "off")
    }


def _round(
    work: Path, script: Path, order: tuple[str, str]
) -> tuple[dict[tuple[str, int], dict[str, float]], bool]:
    """One round: a fresh pair of servers started in ``order``, each warmed (16 containers),
    then measured at concurrency 16 and 1 in that order, and stopped. Returns wrk's figures
    by (mode, connections), and whether the recording server listed a call afterwards."""
    servers: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    measured: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for mode in order:
            folder = work / mode
            folder.mkdir(parents=True)
            servers[mode], port = start_server(folder, MODES[mode])
            urls[mode] = deploy_hello(port)
        for mode in order:  # warm 16 containers each
            _wrk(urls[mode], 16, script, min(DURATION_S, 4))
        for connections in (16, 1):
            for mode in order:
                pid = servers[mode].pid
                measured[(mode, connections)] = wrk_with_cpu(
                    pid, urls[mode], connections, script, DURATION_S
                )
        port = int(urls["on"].split(":")[2].split("/")[0])
        fn_id = urls["on"].rsplit("/", 1)[1]
        recorded = _request(port, "GET", f"/v2/fns/{fn_id}/calls?per_page=1")
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(60)
    return measured, bool(recorded.get("items"))


def main() -> Report:
    report = Report("records")
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-records-"))
    script = work / "post.lua"
    script.write_text(_LUA)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    recorded: list[bool] = []
    if shutil.which("valgrind") is None:
        raise SystemExit("the records bench needs valgrind: run `make bench-tools`")
    try:
        for i in range(ROUNDS):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            runs, listed = _round(work / f"round-{i}", script, order)
            for key, measured in runs.items():
                results.setdefault(key, []).append(measured)
            recorded.append(listed)
        instructions = recording_instructions(work)
    finally:
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

    def round_ratios(figure: str) -> list[float]:
        """Each round's ``figure`` at concurrency 16, recording on over off (one pair of
        servers each)."""
        pairs = zip(results[("on", 16)], results[("off", 16)], strict=True)
        return [round(on[figure] / off[figure], 3) for on, off in pairs]

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
    rate_ratios = round_ratios("total")
    report.add(
        Row(
            "invokes/s on over off, concurrency 16, median of rounds",
            statistics.median(rate_ratios),
            "x",
            target=">= 0.95x",
            samples=len(rate_ratios),
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
    report.add(
        Row(
            "instructions per call, recording off (callgrind)",
            round(instructions["off"] / 1000, 1),
            "k",
        )
    )
    report.add(
        Row(
            "instructions per call, recording on (callgrind)",
            round(instructions["on"] / 1000, 1),
            "k",
            "recording off",
            round(instructions["off"] / 1000, 1),
        )
    )
    report.add(
        Row(
            "recording's instructions per call (on minus off)",
            round((instructions["on"] - instructions["off"]) / 1000, 1),
            "k",
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
        rounds_invokes_per_s_on_over_off=rate_ratios,
        rounds_cpu_per_invoke_on_over_off=round_ratios("cpu_us"),
        a_call_was_recorded=all(recorded),
        runs={f"{mode}-c{c}": runs for (mode, c), runs in results.items()},
    )
    return report
