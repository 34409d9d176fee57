"""Benchmark rows: medians, a baseline measured in the same run, ratios, targets."""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("bench-results")


def median_ms(samples_s: list[float]) -> float:
    return round(statistics.median(samples_s) * 1000, 2)


def percentile_ms(samples_s: list[float], pct: float) -> float:
    ordered = sorted(samples_s)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return round(ordered[index] * 1000, 2)


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    target: str = ""
    samples: int = 0

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return round(self.value / self.baseline, 3)


@dataclass
class Report:
    """Collects rows, prints them as a table and writes them to bench-results/<name>.json."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f"{row.ratio:.3f}x {row.baseline_name}" if row.ratio is not None else ""
        print(f"  {row.name:<58} {row.value:>10.2f} {row.unit:<6} {ratio:<34} {row.target}")

    def write(self) -> Path:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        document = {
            "benchmark": self.name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"python": platform.python_version(), "cpus": _cpus()},
            "notes": self.notes,
            "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
