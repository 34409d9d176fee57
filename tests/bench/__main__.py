"""`make bench`: every benchmark module in turn; a table on stdout, JSON in bench-results/."""

from __future__ import annotations

import sys

from tests.bench import bench_agent, bench_foundation, bench_pool, bench_serve

MODULES = {
    "foundation": bench_foundation,
    "pool": bench_pool,
    "agent": bench_agent,
    "serve": bench_serve,
}


def main(names: list[str]) -> None:
    """Run the named benchmarks (all when none is named): `python -m tests.bench agent`."""
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(MODULES)}")
    for name in names or list(MODULES):
        print(f"\n== {name}")
        report = MODULES[name].main()
        print(f"  -> {report.write()}")


if __name__ == "__main__":
    main(sys.argv[1:])
