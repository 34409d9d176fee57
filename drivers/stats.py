"""Container statistics samples and their decimation (Fn's ``drivers.Decimate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


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
    span = stats[-1].timestamp - start
    if span <= timedelta(0):
        return [_average(stats)]
    buckets: list[list[Stat]] = [[] for _ in range(max_samples)]
    for stat in stats:
        # timedelta // timedelta is exact integer arithmetic on microseconds; float seconds put
        # a sample lying on a window boundary into the earlier window (0.3 / 0.1 = 2.999...).
        index = min((stat.timestamp - start) * max_samples // span, max_samples - 1)
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
