"""`make bench`: every benchmark module in turn; a table on stdout, JSON in bench-results/."""

from __future__ import annotations

from tests.bench import bench_foundation, bench_pool

MODULES = [bench_foundation, bench_pool]


def main() -> None:
    for module in MODULES:
        print(f"\n== {module.__name__.rsplit('.', 1)[-1]}")
        report = module.main()
        print(f"  -> {report.write()}")


if __name__ == "__main__":
    main()
