"""Propagation between agents on one PostgreSQL database (issue "Beyond one host"): how long
after an update's answer through agent A agent B's calls get the new definition. Each round
changes the fn's config through A and calls it on B in a loop (B runs it hot): *propagated*
is when the first call that got the new config was sent, *served* when its answer came (a
config change is a new version: it includes B's cold start of the new container; the baseline,
every other round, is the same update made through B itself). Target: B's
next call served within 2 s, p99. ``BENCH_PROPAGATION_ROUNDS`` sets the rounds (default 30).
Starts its own PostgreSQL (tests/postgres.py) and two agents (tests/system/agents.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from tests.bench.report import Report, Row, median_ms, percentile_ms
from tests.postgres import PostgresServer
from tests.system.agents import Agents
from tests.system.helpers import deploy

TARGET = "<= 2000 ms p99"


def main() -> Report:
    report = Report("propagation")
    rounds = int(os.environ.get("BENCH_PROPAGATION_ROUNDS", "30"))
    work = Path(tempfile.mkdtemp(prefix="fnagent-bench-propagation-"))
    postgres = PostgresServer()
    # via: who took the update (A, or B itself: the baseline, a local change and the same
    # cold start) -> (propagated, served) samples.
    samples: dict[str, tuple[list[float], list[float]]] = {"A": ([], []), "B": ([], [])}
    try:
        postgres.init().start()
        env = {
            **os.environ,
            "FNAGENT_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "FNAGENT_LOG_LEVEL": "WARNING",
        }
        with Agents(2, work, env, postgres.create_database()) as (first, second):
            fn = deploy(first, timeout=30, config={"V": "start"})
            assert second.request("POST", f"/invoke/{fn['id']}", {}).status == 200
            for round_ in range(2 * rounds):
                via, writer = ("A", first) if round_ % 2 == 0 else ("B", second)
                answer = writer.request(
                    "PUT", f"/v2/fns/{fn['id']}", {"config": {"V": str(round_)}}
                )
                assert answer.status == 200, answer.body
                changed = time.monotonic()
                while True:
                    sent = time.monotonic()
                    got = second.request("POST", f"/invoke/{fn['id']}", {})
                    assert got.status == 200, got.body
                    if got.json()["env"].get("V") == str(round_):
                        samples[via][0].append(sent - changed)
                        samples[via][1].append(time.monotonic() - changed)
                        break
    finally:
        postgres.remove()
        shutil.rmtree(work, ignore_errors=True)
    propagated, served = samples["A"]
    _, local = samples["B"]
    report.add(
        Row(
            "update via agent A, propagated to agent B, p50",
            median_ms(propagated),
            "ms",
            samples=len(propagated),
        )
    )
    report.add(
        Row(
            "update via agent A, propagated to agent B, p99",
            percentile_ms(propagated, 99),
            "ms",
            target="<= 1000 ms",
            samples=len(propagated),
        )
    )
    report.add(
        Row(
            "update via agent A, served on agent B, p50",
            median_ms(served),
            "ms",
            "update via B",
            median_ms(local),
            samples=len(served),
        )
    )
    report.add(
        Row(
            "update via agent A, served on agent B, p99",
            percentile_ms(served, 99),
            "ms",
            "update via B",
            percentile_ms(local, 99),
            target=TARGET,
            samples=len(served),
        )
    )
    report.notes["max_served_ms"] = round(max(served) * 1000, 2)
    return report
