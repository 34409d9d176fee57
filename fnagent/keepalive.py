"""Keep-alive that learns: when a fn version's idle container is removed, and when one is
started again before the next call. Pure bookkeeping: no I/O, time comes in as numbers.
A plan is cached per concurrency level and recomputed only as ``RelativePlan`` says, so that a
call's end costs O(1) amortised.

Three parts:

- ``IdleHistogram``: the idle times of one fn version (a call's end to the next call's start),
  as in Shahrad et al., "Serverless in the Wild: Characterizing and Optimizing the Serverless
  Workload at a Large Cloud Provider" (USENIX ATC'20), whose histogram has 1-minute bins over 4
  hours. Ours puts 1-second bins under the first minute, so that idle times of a few seconds are
  learned too: 60 bins of 1 s, then bins of 1 minute up to the range (299 bins for 4 hours).
  Each bin also remembers the sum, the shortest and the longest of its idle times (the cost-aware
  plan times a pre-warm by them). Recording is O(1); so are the sample count and the coefficient
  of variation of the bin counts (kept as running sums); a percentile or a plan scans the bins (a
  constant few hundred).
- ``KeepAlivePolicy``: the paper's hybrid histogram policy for one fn version, or (with a
  finite ``cold_start_weight``) the plan of least expected memory-time plus weighted cold-start
  time, behind a small decision API (below).
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
MIN_KEEP_S = FINE_BIN_S
"""The least a learned plan that keeps a container keeps it after its call (an explicit
idle_timeout below it still bounds it)."""
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
        self._sums = [0.0] * len(self._counts)
        self._lows = [math.inf] * len(self._counts)
        self._highs = [0.0] * len(self._counts)
        self._in_range = 0
        self._sum_squares = 0
        self._top = -1
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
        idle_s = max(idle_s, 0.0)
        index = self.bin_index(idle_s)
        if index >= len(self._counts):
            self.out_of_range += 1
            return
        count = self._counts[index]
        self._counts[index] = count + 1
        self._sums[index] += idle_s
        self._lows[index] = min(self._lows[index], idle_s)
        self._highs[index] = max(self._highs[index], idle_s)
        self._sum_squares += 2 * count + 1
        self._in_range += 1
        self._top = max(self._top, index)

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

    def total(self, index: int) -> float:
        """The sum of the idle times in bin ``index``."""
        return self._sums[index]

    def span(self, index: int) -> tuple[float, float]:
        """The shortest and the longest idle time in bin ``index`` (its edges when empty): a
        sparse fn's idle times fill a small part of a minute-wide bin, and a plan need not
        hold a container through the rest."""
        if not self._counts[index]:
            return self.bin_edges(index)
        return self._lows[index], self._highs[index]

    @property
    def top(self) -> int:
        """The highest bin holding an idle time; -1 when none does."""
        return self._top

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


RECOMPUTE_GROWTH = 10
"""A cached plan is recomputed once its histogram holds 1/RECOMPUTE_GROWTH (10%) more idle
times than when it was computed (see ``RelativePlan``)."""


@dataclass(frozen=True)
class RelativePlan:
    """A concurrency level's plan relative to a call's end (seconds after it), before the
    bound, cached by ``KeepAlivePolicy.relative_plan``: computing a plan scans the histogram's
    bins (up to ~360; with a finite weight, about a millisecond when all are filled), and the
    agent asks for one at every call's end, on its event loop.

    The cache rule: a level's plan is recomputed at a call's end when

    - its histogram has grown by 10% of the idle times it held when the plan was computed (at
      least one; below ``min_samples``, also on reaching it): a plan never misses more than
      ~9% of the idle times it could have seen, and a fn with n idle times has computed about
      log(n) / log(1.1) plans in all (145 for a million);
    - an idle time fell outside the plan, neither in its kept run nor in its pre-warm window
      (so the plan made it a cold start): a new mode or a timer's drift is learned at the next
      call's end, and such a recomputation costs far less than the container start it follows;
    - the fn version's cold-start estimate or memory changed (they weigh the plan).
    """

    learned: bool
    """The histogram decided (else: the fixed keep-alive, ``keep_s``)."""
    keep_s: float
    """Keep the container that became idle this long (margin included)."""
    samples: int
    """The level's idle times when the plan was computed."""
    recompute_at: int
    """Recompute once the level holds this many idle times."""
    cold_start_s: float
    memory_mb: float
    prewarm: tuple[float, float] | None = None
    """(start, remove) of a pre-warmed container, cold start and margins included."""

    def covers(self, idle_s: float) -> bool:
        """An idle time this plan serves warm: within the kept run or the pre-warm window."""
        if idle_s <= self.keep_s:
            return True
        if self.prewarm is None:
            return False
        start, remove = self.prewarm
        if start <= self.keep_s:  # the plan keeps the container through to the window's end
            return idle_s <= remove
        return start + self.cold_start_s <= idle_s <= remove  # the pre-warm is ready


class KeepAlivePolicy:
    """The hybrid histogram policy of Shahrad et al. (ATC'20) for one fn version, generalised
    to histograms with more than one mode and weighed against memory.

    When the histogram is representative (at least ``min_samples`` idle times, at most half of
    them beyond the range, and, for the paper's policy, a coefficient of variation of the bin
    counts of at least ``cv_threshold``), it decides *runs*: stretches of idle time through
    which a ready container is held (``warm_runs``).

    - The paper's policy (``cold_start_weight`` ``inf``): one run, from the
      ``head_percentile`` bin's lower edge to the ``tail_percentile`` bin's upper edge.
    - Cost-aware (a finite ``cold_start_weight``, GB-s of memory-time worth one second of cold
      start; the default, 300): the plan of least expected cost on the idle times seen,
      memory-time (GB x seconds held) plus weight x cold-start seconds x cold starts
      (``costed_runs``): a kept run from 0, and a pre-warmed window, each only where the
      cold starts it saves outweigh the memory it holds. Its times are the bins' spans
      (their shortest and longest idle times), not their edges, and it weighs a mode as a
      whole: a sparse mode's empty bins do not cut it, and a timer's pre-warm lasts its
      jitter, not a minute-wide bin.

    With the margin taken off a run's start and added to its end:

    - a first run starting at 0 is kept: the container stays until its end;
    - the remaining runs are covered by one pre-warmed container, started ``cold_start_s``
      before the next run's start (so that it is ready then) and kept until the last run's
      end; when that start falls before the kept run's end, the container is simply kept
      until the last run's end;
    - extra containers (concurrency level 2 and up) are only kept through their own level's
      first run, never pre-warmed: a burst's extra containers are not worth holding through
      the gap between bursts;
    - no run: the container is removed at once.

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
        self._cached: dict[int, RelativePlan] = {}
        """Per concurrency level: its latest relative plan (``relative_plan``)."""
        self.computed = 0
        """Plans computed so far (the cache's misses; for tests and benchmarks)."""

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
        """Record an idle time seen at concurrency ``level`` (1: no other call in flight). An
        idle time the level's cached plan did not cover (a cold start under it) drops that
        plan: the next one is computed afresh."""
        self._level(level).add(idle_s)
        level = min(level, MAX_LEVELS)
        cached = self._cached.get(level)
        if cached is not None and not cached.covers(idle_s):
            del self._cached[level]

    def representative(self, level: int = 1) -> bool:
        histogram, config = self._level(level), self.config
        return (
            config.policy == "adaptive"
            and histogram.samples >= config.min_samples
            and histogram.out_of_range <= MAX_OUT_OF_RANGE_FRACTION * histogram.samples
            and (histogram.cv() >= config.cv_threshold or math.isfinite(config.cold_start_weight))
        )

    def warm_runs(self, level: int = 1) -> list[tuple[float, float]] | None:
        """The stretches of idle time to hold a ready container through, as (start, end)
        seconds after a call's end, before margins and the bound, when the level's histogram
        decides; else None. A first run starting at 0 is a kept container; a later run is
        covered by a pre-warmed one. The paper's (weight ``inf``): one run, from the head
        percentile's bin to the tail percentile's; with a finite weight, the cheapest plan
        (``costed_runs``)."""
        if not self.representative(level):
            return None
        if math.isfinite(self.config.cold_start_weight):
            return self.costed_runs(level)
        histogram = self._level(level)
        head_bin = histogram.percentile_bin(self.config.head_percentile)
        tail_bin = histogram.percentile_bin(self.config.tail_percentile)
        assert head_bin is not None and tail_bin is not None  # representative: samples in range
        return [(histogram.bin_edges(head_bin)[0], histogram.bin_edges(tail_bin)[1])]

    def costed_runs(self, level: int = 1) -> list[tuple[float, float]]:
        """The plan of least expected cost on the level's idle times, as runs (see
        ``warm_runs``): keep the container until K, and (level 1 only) pre-warm one ready at
        S and kept until T, minimising, over the idle times x seen,

            GB x E[memory-seconds] + weight x cold-start s x P(cold start)

        (with ``weigh_per_start``, weight x P(cold start): each cold start costs the same)

        where x costs min(x, K) seconds of memory, plus min(x, T) - (S - cold start) when x
        passes S (the pre-warmed container's life), and is a cold start unless x <= K or
        S <= x <= T. Idle times beyond the range never end. A pre-warm window holds at least
        ``min_samples`` idle times: one for a single idle time seen would be nearly free on
        paper and miss the next one. K and T are the longest idle time
        of a bin (nothing is gained between it and the next bin's shortest), S the shortest:
        the bins' spans, so a timer with a second of jitter holds a container for seconds,
        not for its minute-wide bins. With J(t) the cost of keeping until t alone, the
        pre-warm adds J(T) - GB x E[min(x, S)] + (GB - weight) x cold-start s x P(x >= S),
        so the suffix minima of J give the best T for every S, and a prefix minimum the best
        K before S less the cold start: O(bins) in all. Ties go to the shorter plan."""
        histogram = self._level(level)
        gb, cold = self.memory_mb / 1024, self.cold_start_s
        worth = self.config.cold_start_weight * (1.0 if self.config.weigh_per_start else cold)
        total = histogram.samples
        bins = histogram.top + 1
        ends = [0.0] * (bins + 1)  # keep until ends[k]: through bins 0 .. k - 1
        keep_cost = [0.0] * (bins + 1)  # J(ends[k]) x total
        starts = [0.0] * bins  # pre-warm ready at starts[a]: for bins a ..
        start_memory = [0.0] * bins  # E[min(x, starts[a])] x total
        survivors = [0] * bins  # idle times in bin a or later
        inside = [0] * (bins + 1)  # idle times in bins 0 .. k - 1
        below, below_sum = 0, 0.0
        for index in range(bins + 1):
            left = total - below
            inside[index] = below
            if index < bins:
                starts[index] = histogram.span(index)[0]
                start_memory[index] = below_sum + starts[index] * left
                survivors[index] = left
            if index:  # an empty bin adds nothing worth holding a container for
                ends[index] = ends[index - 1]
                if histogram.count(index - 1):
                    ends[index] = histogram.span(index - 1)[1]
            keep_cost[index] = gb * (below_sum + ends[index] * left) + worth * left
            if ends[index] <= 0:  # kept until 0 is removed at once: every call is cold
                keep_cost[index] = worth * total
            if index < bins:
                below += histogram.count(index)
                below_sum += histogram.total(index)
        tolerance = 1e-9 * max(total, 1)
        best, keep = keep_cost[0], 0
        for index in range(1, bins + 1):
            if keep_cost[index] < best - tolerance:
                best, keep = keep_cost[index], index
        runs = [(0.0, ends[keep])] if keep else []
        if level > 1 or cold <= 0:
            return runs
        after = [0] * (bins + 1)  # the best T (an index into ends) at or after each index
        for index in range(bins, -1, -1):
            following = after[index + 1] if index < bins else index
            after[index] = index if keep_cost[index] <= keep_cost[following] else following
        need = max(self.config.min_samples, 1)
        kept, candidate, first_until = 0, 0, 0
        prewarm: tuple[int, int, int] | None = None
        for start in range(bins):
            while candidate < start and ends[candidate + 1] <= starts[start] - cold:
                candidate += 1
                if keep_cost[candidate] < keep_cost[kept]:
                    kept = candidate
            if ends[kept] > starts[start] - cold:
                continue
            first_until = max(first_until, start + 1)
            while first_until < bins and inside[first_until] - inside[start] < need:
                first_until += 1
            if inside[first_until] - inside[start] < need:
                break  # fewer idle times than that from here on
            until = after[first_until]
            cost = (
                keep_cost[kept]
                + keep_cost[until]
                - gb * start_memory[start]
                + (gb * cold - worth) * survivors[start]
            )
            if cost < best - tolerance:
                best, prewarm = cost, (kept, start, until)
        if prewarm is None:
            return runs
        kept, start, until = prewarm
        runs = [(0.0, ends[kept])] if kept else []
        return [*runs, (starts[start], ends[until])]

    def windows(self, level: int = 1) -> tuple[float, float] | None:
        """(head, tail) in seconds after a call's end when the level's histogram decides, else
        None: the warm runs' first start less the margin and last end plus the margin (with
        weight ``inf``, the paper's head and tail)."""
        runs = self.warm_runs(level)
        if not runs:
            return None
        margin = self.config.margin_percent / 100
        return runs[0][0] * (1 - margin), runs[-1][1] * (1 + margin)

    def plan(self, now: float, *, level: int = 1) -> Plan:
        """The plan for a container that became idle at ``now`` as the fn went down from
        ``level`` calls in flight (see the module's contract), from the level's cached relative
        plan (``relative_plan``)."""
        relative = self.relative_plan(level)
        if not relative.learned:
            return Plan(unload_at=now + self.fallback_s)
        bound = math.inf if self.bound_s is None else self.bound_s
        keep = relative.keep_s
        if 0 < keep < MIN_KEEP_S:
            # A kept container stays at least a fine bin: idle times below the histogram's
            # resolution tell nothing of the next pause, and a fn called back to back (idle
            # times of a millisecond) would lose its container to any pause in its caller's
            # loop. A plan that removes the container at once (keep 0) stays so.
            keep = MIN_KEEP_S
        if relative.prewarm is None:
            return Plan(unload_at=now + min(keep, bound), learned=True)
        head, tail = relative.prewarm
        if head <= keep:
            return Plan(unload_at=now + min(tail, bound), learned=True)
        return Plan(
            unload_at=now + min(keep, bound),
            prewarm_at=now + head,
            prewarm_unload_at=now + head + min(tail - head, bound),
            learned=True,
        )

    def relative_plan(self, level: int = 1) -> RelativePlan:
        """The level's plan relative to a call's end, recomputed only when the cache rule
        (``RelativePlan``) says so: amortised O(1) per call, where a plan scans the bins."""
        level = min(level, MAX_LEVELS)  # the levels sharing a histogram share its plan
        histogram = self._level(level)
        cached = self._cached.get(level)
        if (
            cached is None
            or histogram.samples >= cached.recompute_at
            or cached.cold_start_s != self.cold_start_s
            or cached.memory_mb != self.memory_mb
        ):
            cached = self._cached[level] = self._compute_relative(level)
            self.computed += 1
        return cached

    def _compute_relative(self, level: int) -> RelativePlan:
        histogram = self._level(level)
        samples, need = histogram.samples, self.config.min_samples
        recompute_at = samples + max(1, samples // RECOMPUTE_GROWTH)
        if samples < need:
            recompute_at = min(recompute_at, need)
        learned, keep, prewarm = self._relative_times(level)
        return RelativePlan(
            learned=learned,
            keep_s=keep,
            samples=samples,
            recompute_at=recompute_at,
            cold_start_s=self.cold_start_s,
            memory_mb=self.memory_mb,
            prewarm=prewarm,
        )

    def _relative_times(self, level: int) -> tuple[bool, float, tuple[float, float] | None]:
        """(learned, keep, pre-warm window) after a call's end, from the warm runs."""
        runs = self.warm_runs(level)
        if runs is None:
            return False, self.fallback_s, None
        margin = self.config.margin_percent / 100
        keep = 0.0
        if runs and runs[0][0] <= 0:
            keep = runs.pop(0)[1] * (1 + margin)
        if level > 1 or not runs:
            return True, keep, None
        head = max(runs[0][0] * (1 - margin) - self.cold_start_s, 0.0)
        return True, keep, (head, runs[-1][1] * (1 + margin))


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
