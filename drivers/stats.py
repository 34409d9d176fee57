"""Container statistics samples and their decimation (Fn's ``drivers.Decimate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Stat:
    """One sample of a container's resource use; ``metrics`` maps a name to a value."""

    timestamp: datetime
    metrics: dict[str, int] = field(default_factory=dict)


def decimate(max_samples: int, stats: list[Stat]) -> list[Stat]:
    """Reduce ``stats`` (sorted by time) to at most ``max_samples`` samples.

    The time span is cut into ``max_samples`` equal windows; each non-empty window becomes one
    sample whose timestamp is the window's first and whose metrics are the average (integer
    division) of the window's samples. The last window also absorbs samples at the very end.
    ``max_samples <= 0`` returns nothing; no more samples than the maximum returns them as is.
    """
    if max_samples <= 0 or not stats:
        return []
    if len(stats) <= max_samples:
        return list(stats)
    start = stats[0].timestamp
    span = (stats[-1].timestamp - start).total_seconds()
    if span <= 0:
        return [_average(stats)]
    window = span / max_samples
    buckets: list[list[Stat]] = [[] for _ in range(max_samples)]
    for stat in stats:
        index = min(int((stat.timestamp - start).total_seconds() / window), max_samples - 1)
        buckets[index].append(stat)
    return [_average(bucket) for bucket in buckets if bucket]


def _average(window: list[Stat]) -> Stat:
    totals: dict[str, int] = {}
    for stat in window:
        for name, value in stat.metrics.items():
            totals[name] = totals.get(name, 0) + value
    count = len(window)
    return Stat(
        timestamp=window[0].timestamp,
        metrics={name: total // count for name, total in totals.items()},
    )
