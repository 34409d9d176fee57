"""`make bench`: every benchmark module in turn; a table on stdout, JSON in bench-results/."""

from __future__ import annotations

import importlib
import sys

# Imported by name when run: the keepalive benchmark is a simulation and needs no docker-py.
MODULES = {
    "foundation": "tests.bench.bench_foundation",
    "pool": "tests.bench.bench_pool",
    "agent": "tests.bench.bench_agent",
    "serve": "tests.bench.bench_serve",
    "detached": "tests.bench.bench_detached",
    "records": "tests.bench.bench_records",
    "keepalive": "tests.bench.bench_keepalive",
    "keepalive-plan": "tests.bench.bench_keepalive_plan",
    "cluster": "tests.bench.bench_cluster",
    "propagation": "tests.bench.bench_propagation",
}


def main(names: list[str]) -> None:
    """Run the named benchmarks (all when none is named): `python -m tests.bench agent`."""
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(MODULES)}")
    for name in names or list(MODULES):
        print(f"\n== {name}")
        report = importlib.import_module(MODULES[name]).main()
        print(f"  -> {report.write()}")


if __name__ == "__main__":
    main(sys.argv[1:])
