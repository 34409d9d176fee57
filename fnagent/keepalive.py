"""Keep-alive that learns: when a fn version's idle container is removed, and when one is
started again before the next call. Pure bookkeeping: no I/O, time comes in as numbers.

Three parts:

- ``IdleHistogram``: the idle times of one fn version (a call's end to the next call's start),
  as in Shahrad et al., "Serverless in the Wild: Characterizing and Optimizing the Serverless
  Workload at a Large Cloud Provider" (USENIX ATC'20), whose histogram has 1-minute bins over 4
  hours. Ours puts 1-second bins under the first minute, so that idle times of a few seconds are
  learned too: 60 bins of 1 s, then bins of 1 minute up to the range (299 bins for 4 hours).
  Recording is O(1); so are the sample count and the coefficient of variation of the bin counts
  (kept as running sums); a percentile scans the bins (a constant few hundred).
- ``KeepAlivePolicy``: the paper's hybrid histogram policy for one fn version, behind a small
  decision API (below).
- ``GreedyDual``: which idle container to evict first under memory pressure, by the priority of
  Fuerst and Sharma, "FaasCache: Keeping Serverless Computing Alive with Greedy-Dual Caching"
  (ASPLOS'21).

The decision contract (what the agent calls, and what it must do with the answers):

1. ``before_call(now)`` when a call of the fn version starts (before it takes a container);
   this records the idle time since the last call ended. With calls in flight it is counted per
   concurrency level, which is what the k-th container sees when calls take the most recently
   used container: the k-th concurrent call's idle time runs from when the fn last went down
   from k calls in flight to k - 1, and goes into level k's own histogram, which plans for the
   container that goes idle when the fn goes down from k again. At level 1 that is the paper's
   idle time (the paper has one instance per application; without levels, the rare idle times
   of a second container would decide the first one's keep-alive, and the reverse).
2. ``after_call(now) -> Plan`` when the call ends and its container becomes idle. The plan says:
   remove that container at ``plan.unload_at`` unless a call takes it before (``unload_at ==
   now``: at once); and when ``plan.prewarm_at`` is set, start a container at that time (and
   freeze it) unless the fn version has one then, and remove that container at
   ``plan.prewarm_unload_at`` unless a call takes it before. A later plan replaces an earlier
   one's pre-warm.
3. ``observe_idle(seconds)`` records an idle time learned another way (tests, replays).

Each ``before_call`` is paired with one ``after_call``. With ``policy="fixed"`` the plan is
always: keep the container for the fixed keep-alive, no pre-warm (Fn's behaviour).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fnagent.config import KeepAliveConfig

FINE_BIN_S = 1.0
COARSE_BIN_S = 60.0
FINE_BINS = int(COARSE_BIN_S / FINE_BIN_S)
MAX_LEVELS = 8
"""Concurrency levels with a histogram of their own; higher ones share the last."""
MAX_OUT_OF_RANGE_FRACTION = 0.5
"""Ours: when more than this share of a fn's idle times exceed the range, the histogram does not
describe it (the paper hands such functions to a time-series forecast; we use the fixed
keep-alive)."""


class IdleHistogram:
    """Counts of idle times in bins: 1 s wide below 60 s, 60 s wide from there to ``range_s``;
    longer idle times are counted apart (``out_of_range``)."""

    def __init__(self, range_s: float = 4 * 3600.0) -> None:
        if range_s < COARSE_BIN_S:
            raise ValueError(f"range_s must be at least {COARSE_BIN_S} s")
        self.range_s = range_s
        coarse = math.ceil((range_s - COARSE_BIN_S) / COARSE_BIN_S)
        self._counts = [0] * (FINE_BINS + coarse)
        self._in_range = 0
        self._sum_squares = 0
        self.out_of_range = 0

    def __repr__(self) -> str:
        return (
            f"<IdleHistogram samples={self.samples} out_of_range={self.out_of_range}"
            f" bins={self.bins}>"
        )

    @property
    def bins(self) -> int:
        return len(self._counts)

    @property
    def samples(self) -> int:
        """Every idle time recorded, in range or not."""
        return self._in_range + self.out_of_range

    @property
    def in_range(self) -> int:
        return self._in_range

    def add(self, idle_s: float) -> None:
        """Record one idle time (negative ones count as 0). O(1)."""
        index = self.bin_index(max(idle_s, 0.0))
        if index >= len(self._counts):
            self.out_of_range += 1
            return
        count = self._counts[index]
        self._counts[index] = count + 1
        self._sum_squares += 2 * count + 1
        self._in_range += 1

    @staticmethod
    def bin_index(idle_s: float) -> int:
        if idle_s < COARSE_BIN_S:
            return int(idle_s // FINE_BIN_S)
        return FINE_BINS - 1 + int(idle_s // COARSE_BIN_S)

    @staticmethod
    def bin_edges(index: int) -> tuple[float, float]:
        """The idle times bin ``index`` holds: [lower, upper)."""
        if index < FINE_BINS:
            return index * FINE_BIN_S, (index + 1) * FINE_BIN_S
        lower = (index - FINE_BINS + 1) * COARSE_BIN_S
        return lower, lower + COARSE_BIN_S

    def count(self, index: int) -> int:
        return self._counts[index]

    def percentile_bin(self, percentile: float) -> int | None:
        """The bin holding ``percentile`` (0-100) of the in-range idle times; None when there
        are none."""
        if self._in_range == 0:
            return None
        wanted = max(1, math.ceil(percentile / 100 * self._in_range))
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= wanted:
                return index
        return len(self._counts) - 1  # pragma: no cover - seen reaches _in_range

    def cv(self) -> float:
        """The coefficient of variation of the bin counts (the paper's test of whether the
        histogram is representative: high when a few bins hold most idle times, low when they
        are spread out). 0 when empty. O(1)."""
        if self._in_range == 0:
            return 0.0
        bins = len(self._counts)
        mean = self._in_range / bins
        variance = max(self._sum_squares / bins - mean * mean, 0.0)
        return math.sqrt(variance) / mean


@dataclass(frozen=True)
class Plan:
    """What to do after a call ends (see the module's contract). Times are on the caller's
    clock."""

    unload_at: float
    """Remove the container that just became idle at this time (== now: at once)."""
    prewarm_at: float | None = None
    """Start a container at this time unless the fn version has one; None: no pre-warm."""
    prewarm_unload_at: float | None = None
    """Remove the pre-warmed container at this time unless a call took it."""
    learned: bool = False
    """True when the histogram decided; False for the fixed keep-alive (policy, or fallback)."""


class KeepAlivePolicy:
    """The hybrid histogram policy of Shahrad et al. (ATC'20) for one fn version, generalised
    to histograms with more than one mode and weighed against memory.

    When the histogram is representative (at least ``min_samples`` idle times, at most half of
    them beyond the range, and a coefficient of variation of the bin counts of at least
    ``cv_threshold``), the bins from the ``head_percentile`` bin to the ``tail_percentile`` bin
    are candidates, and a bin is *warm* when keeping a container through it is worth its
    memory: the bin's hazard (the share of the idle times that reached the bin which end in it,
    per second) times ``cold_start_s`` times ``cold_start_weight`` is at least the container's
    memory in GB. (Keeping a container through the instant t costs memory x P(idle > t) and
    saves a cold start with probability density f(t), so keeping it is worth it exactly where
    f(t) / P(idle > t) x cold-start seconds x weight >= GB.) With the default weight (``inf``)
    every candidate is warm: the paper's policy. The warm bins form runs (modes); with the
    margin taken off a run's start and added to its end:

    - a first run starting at 0 (calls often come back within a second) is kept: the container
      stays until its end;
    - the remaining runs are covered by one pre-warmed container, started ``cold_start_s``
      before the next run's start (so that it is ready then) and kept until the last run's
      end; when that start falls before the kept run's end, the container is simply kept
      until the last run's end;
    - extra containers (concurrency level 2 and up) are only kept through their own level's
      first run, never pre-warmed: a burst's extra containers are not worth holding through
      the gap between bursts;
    - no warm bin: the container is removed at once.

    Otherwise keep it for the fixed keep-alive ``fallback_s`` (the fn's idle_timeout), without
    pre-warm. ``bound_s`` (an idle_timeout the user set) caps how long any container stays idle:
    a pre-warm may still bring one back before a predicted call. ``memory_mb`` and
    ``cold_start_s`` are the fn version's memory and cold-start time (the caller's estimate).
    """

    def __init__(
        self,
        config: KeepAliveConfig,
        *,
        fallback_s: float,
        bound_s: float | None = None,
        memory_mb: float = 128.0,
        cold_start_s: float = 0.0,
    ) -> None:
        self.config = config
        self.fallback_s = fallback_s if bound_s is None else min(fallback_s, bound_s)
        self.bound_s = bound_s
        self.memory_mb = memory_mb
        self.cold_start_s = cold_start_s
        self.histograms = [IdleHistogram(config.range_s)]
        """One per concurrency level (the first: the paper's), up to MAX_LEVELS."""
        self._in_flight = 0
        self._last_end: dict[int, float] = {}
        """Per concurrency level k: when the fn last went from k calls in flight to k - 1."""

    def __repr__(self) -> str:
        return (
            f"<KeepAlivePolicy {self.config.policy} in_flight={self._in_flight}"
            f" levels={len(self.histograms)} {self.histogram!r}>"
        )

    @property
    def histogram(self) -> IdleHistogram:
        """The first level's: the fn's own idle times."""
        return self.histograms[0]

    def _level(self, level: int) -> IdleHistogram:
        index = min(level, MAX_LEVELS) - 1
        while len(self.histograms) <= index:
            self.histograms.append(IdleHistogram(self.config.range_s))
        return self.histograms[index]

    def before_call(self, now: float) -> None:
        self._in_flight += 1
        last_end = self._last_end.get(self._in_flight)
        if last_end is not None:
            self.observe_idle(now - last_end, level=self._in_flight)

    def after_call(self, now: float) -> Plan:
        level = max(self._in_flight, 1)
        self._last_end[level] = now
        self._in_flight = level - 1
        return self.plan(now, level=level)

    def observe_idle(self, idle_s: float, *, level: int = 1) -> None:
        """Record an idle time seen at concurrency ``level`` (1: no other call in flight)."""
        self._level(level).add(idle_s)

    def representative(self, level: int = 1) -> bool:
        histogram, config = self._level(level), self.config
        return (
            config.policy == "adaptive"
            and histogram.samples >= config.min_samples
            and histogram.out_of_range <= MAX_OUT_OF_RANGE_FRACTION * histogram.samples
            and (histogram.cv() >= config.cv_threshold or math.isfinite(config.cold_start_weight))
        )

    def hazard_threshold(self) -> float:
        """The hazard (per second) from which a bin is warm: GB / (cold-start s x weight)."""
        if math.isinf(self.config.cold_start_weight):
            return 0.0
        worth = self.cold_start_s * self.config.cold_start_weight
        return math.inf if worth <= 0 else self.memory_mb / 1024 / worth

    def warm_runs(self, level: int = 1) -> list[tuple[float, float]] | None:
        """The runs of warm bins, as (start, end) seconds after a call's end, before margins
        and the bound, when the level's histogram decides; else None."""
        if not self.representative(level):
            return None
        histogram, threshold = self._level(level), self.hazard_threshold()
        head_bin = histogram.percentile_bin(self.config.head_percentile)
        tail_bin = histogram.percentile_bin(self.config.tail_percentile)
        assert head_bin is not None and tail_bin is not None  # representative: samples in range
        survivors = histogram.samples - sum(histogram.count(i) for i in range(head_bin))
        runs: list[tuple[float, float]] = []
        for index in range(head_bin, tail_bin + 1):
            lower, upper = histogram.bin_edges(index)
            count = histogram.count(index)
            if count >= threshold * (upper - lower) * survivors:
                if runs and runs[-1][1] == lower:
                    runs[-1] = (runs[-1][0], upper)
                else:
                    runs.append((lower, upper))
            survivors -= count
        return runs

    def windows(self, level: int = 1) -> tuple[float, float] | None:
        """(head, tail) in seconds after a call's end when the level's histogram decides, else
        None: the warm runs' first start less the margin and last end plus the margin (with
        the default weight, the paper's head and tail)."""
        runs = self.warm_runs(level)
        if not runs:
            return None
        margin = self.config.margin_percent / 100
        return runs[0][0] * (1 - margin), runs[-1][1] * (1 + margin)

    def plan(self, now: float, *, level: int = 1) -> Plan:
        """The plan for a container that became idle at ``now`` as the fn went down from
        ``level`` calls in flight (see the module's contract)."""
        runs = self.warm_runs(level)
        if runs is None:
            return Plan(unload_at=now + self.fallback_s)
        margin = self.config.margin_percent / 100
        bound = math.inf if self.bound_s is None else self.bound_s
        keep = 0.0
        if runs and runs[0][0] <= 0:
            keep = runs.pop(0)[1] * (1 + margin)
        if level > 1 or not runs:
            return Plan(unload_at=now + min(keep, bound), learned=True)
        head = max(runs[0][0] * (1 - margin) - self.cold_start_s, 0.0)
        tail = runs[-1][1] * (1 + margin)
        if head <= keep:
            return Plan(unload_at=now + min(tail, bound), learned=True)
        return Plan(
            unload_at=now + min(keep, bound),
            prewarm_at=now + head,
            prewarm_unload_at=now + head + min(tail - head, bound),
            learned=True,
        )


K = TypeVar("K", bound=Hashable)


class GreedyDual(Generic[K]):
    """Eviction order of containers by FaasCache's Greedy-Dual priority (Fuerst and Sharma,
    ASPLOS'21): priority = clock + frequency x cold-start cost / memory, where frequency counts
    the calls of the container's fn (reset when its last container goes), and the clock
    advances to the priority of each container evicted. The lowest priority goes first: rarely
    called, cheap to start again, large. Keys are whatever identifies a container.
    """

    def __init__(self) -> None:
        self.clock = 0.0
        self._priority: dict[K, float] = {}
        self._fn_of: dict[K, Hashable] = {}
        self._frequency: dict[Hashable, int] = {}
        self._containers: dict[Hashable, int] = {}

    def __repr__(self) -> str:
        return f"<GreedyDual clock={self.clock:.3f} containers={len(self._priority)}>"

    def used(self, key: K, *, fn: Hashable, cost_s: float, memory_mb: float) -> float:
        """A call used container ``key`` of ``fn``, whose cold start costs ``cost_s`` and which
        holds ``memory_mb``: count it and return the container's new priority."""
        if key not in self._fn_of:
            self._fn_of[key] = fn
            self._containers[fn] = self._containers.get(fn, 0) + 1
        frequency = self._frequency.get(fn, 0) + 1
        self._frequency[fn] = frequency
        priority = self.clock + frequency * cost_s / max(memory_mb, 1e-9)
        self._priority[key] = priority
        return priority

    def priority(self, key: K) -> float:
        return self._priority[key]

    def order(self, keys: Iterable[K]) -> list[K]:
        """``keys`` (idle containers) lowest priority first: the order to evict them in.
        Unknown keys (never used) come first."""
        return sorted(keys, key=lambda key: self._priority.get(key, -math.inf))

    def evicted(self, key: K) -> None:
        """``key`` was evicted: the clock advances to its priority, and it is forgotten."""
        self.clock = max(self.clock, self._priority.get(key, self.clock))
        self.removed(key)

    def removed(self, key: K) -> None:
        """``key`` is gone for another reason (expired, failed): forget it, clock unchanged."""
        self._priority.pop(key, None)
        fn = self._fn_of.pop(key, None)
        if fn is None:
            return
        left = self._containers[fn] - 1
        if left:
            self._containers[fn] = left
        else:
            del self._containers[fn]
            self._frequency.pop(fn, None)
