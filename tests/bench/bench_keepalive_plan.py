"""The keep-alive plan's cost on the call path (issue #17): microseconds per call of a policy's
``before_call`` + ``after_call`` (what the agent runs on its event loop for every call), with
the plan cache and without it (a plan computed at every call's end, as before the cache), by
timeit. No Docker, no I/O.

Three patterns, each for the default (weight 300, 2% margin) and the paper's policy (weight
inf, 10% margin), at 256 MB and a 0.8 s cold start:

- hot fn: calls in rounds of 1 to 16 in flight, idle times of 0 to 5 ms (every idle time in
  the first bin);
- hot fn, long tail: the same, on a histogram that also holds one idle time in every bin (a
  hot fn that was once idle for minutes and hours: the plan scans every bin);
- full histogram: three idle times in every bin, one call at a time, each after ~1,000 s idle.

The fixed policy's cost is the floor (its plan is the fixed keep-alive). Minimum of 5 repeats.
"""

from __future__ import annotations

import math
import random
import timeit
from collections.abc import Callable

from fnagent.config import KeepAliveConfig
from fnagent.keepalive import MAX_LEVELS, KeepAlivePolicy, RelativePlan
from tests.bench.report import Report, Row

ROUNDS = 300
REPEATS = 5
CONFIGS = {
    "default (weight 300, 2%)": KeepAliveConfig(),
    "paper's (weight inf, 10%)": KeepAliveConfig(cold_start_weight=math.inf, margin_percent=10.0),
    "fixed": KeepAliveConfig(policy="fixed"),
}


class Uncached(KeepAlivePolicy):
    """The policy as before the cache: a plan computed at every call's end."""

    def relative_plan(self, level: int = 1) -> RelativePlan:
        return self._compute_relative(min(level, MAX_LEVELS))


def _policy(config: KeepAliveConfig, cached: bool) -> KeepAlivePolicy:
    kind = KeepAlivePolicy if cached else Uncached
    return kind(config, fallback_s=30.0, memory_mb=256.0, cold_start_s=0.8)


def _fill(policy: KeepAlivePolicy, rng: random.Random, per_bin: int) -> None:
    histogram = policy.histogram
    for index in range(histogram.bins):
        low, high = histogram.bin_edges(index)
        for _ in range(per_bin):
            policy.observe_idle(rng.uniform(low, high))


def _hot(policy: KeepAlivePolicy, rng: random.Random) -> Callable[[], int]:
    levels = [rng.randint(1, 16) for _ in range(ROUNDS)]
    gaps = [rng.uniform(0, 0.005) for _ in range(64)]
    clock = [0.0]

    def run() -> int:
        now, calls = clock[0], 0
        for round_, level in enumerate(levels):
            for index in range(level):
                now += gaps[(round_ + index) % 64]
                policy.before_call(now)
            for index in range(level):
                now += gaps[(round_ + index + 7) % 64]
                policy.after_call(now)
            calls += level
        clock[0] = now
        return calls

    return run


def _sparse(policy: KeepAlivePolicy) -> Callable[[], int]:
    clock = [0.0]

    def run() -> int:
        for _ in range(ROUNDS):
            clock[0] += 1000.0
            policy.before_call(clock[0])
            policy.after_call(clock[0] + 0.01)
        return ROUNDS

    return run


def per_call_us(pattern: str, config: KeepAliveConfig, cached: bool) -> float:
    rng = random.Random(17)
    policy = _policy(config, cached)
    if pattern == "hot fn":
        run = _hot(policy, rng)
    elif pattern == "hot fn, long tail":
        _fill(policy, rng, 1)
        run = _hot(policy, rng)
    else:
        _fill(policy, rng, 3)
        run = _sparse(policy)
    calls = run()  # warm up: the histograms fill, the plans are cached
    best = min(timeit.repeat(run, number=1, repeat=REPEATS))
    return round(best / calls * 1e6, 1)


def main() -> Report:
    report = Report("keepalive-plan")
    for pattern in ("hot fn", "hot fn, long tail", "full histogram"):
        for name, config in CONFIGS.items():
            uncached = per_call_us(pattern, config, cached=False)
            cached = per_call_us(pattern, config, cached=True)
            report.add(Row(f"{pattern}, {name}: cached", cached, "us/call", "uncached", uncached))
    return report
