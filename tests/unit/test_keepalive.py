"""Keep-alive that learns (fnagent.keepalive): the idle-time histogram, the hybrid histogram
policy's plans (fallback, pre-warm timing, idle_timeout as a bound, concurrency levels), the
Greedy-Dual eviction order, and the config (not read from the environment yet)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnagent.config import KeepAliveConfig
from fnagent.errors import InvalidInputError
from fnagent.keepalive import MIN_KEEP_S, GreedyDual, IdleHistogram, KeepAlivePolicy, Plan

CONFIG = KeepAliveConfig(cold_start_weight=math.inf, margin_percent=10.0)
"""The paper's policy (the default before the cost-aware plan)."""


def periodic(policy: KeepAlivePolicy, *, period_s: float, duration_s: float, calls: int) -> Plan:
    """Calls every ``period_s`` lasting ``duration_s``; the plan after the last one."""
    now, plan = 1000.0, None
    for _ in range(calls):
        policy.before_call(now)
        plan = policy.after_call(now + duration_s)
        now += period_s
    assert plan is not None
    return plan


# The histogram


def test_bins_are_one_second_under_a_minute_then_one_minute_up_to_the_range() -> None:
    histogram = IdleHistogram(4 * 3600)
    assert histogram.bins == 60 + 239
    assert IdleHistogram.bin_edges(IdleHistogram.bin_index(2.5)) == (2.0, 3.0)
    assert IdleHistogram.bin_edges(IdleHistogram.bin_index(59.99)) == (59.0, 60.0)
    assert IdleHistogram.bin_edges(IdleHistogram.bin_index(60.0)) == (60.0, 120.0)
    assert IdleHistogram.bin_edges(IdleHistogram.bin_index(3599.0)) == (3540.0, 3600.0)
    assert IdleHistogram.bin_edges(histogram.bins - 1)[1] == 4 * 3600


@given(st.floats(min_value=0, max_value=5 * 3600, allow_nan=False))
def test_every_idle_time_falls_in_its_bin_or_out_of_range(idle_s: float) -> None:
    histogram = IdleHistogram(4 * 3600)
    histogram.add(idle_s)
    index = IdleHistogram.bin_index(idle_s)
    if idle_s >= 4 * 3600:
        assert histogram.out_of_range == 1 and histogram.in_range == 0
    else:
        lower, upper = IdleHistogram.bin_edges(index)
        assert lower <= idle_s < upper
        assert histogram.count(index) == 1
    assert histogram.samples == 1


@given(st.lists(st.floats(min_value=0, max_value=4 * 3600 - 1, allow_nan=False), min_size=1))
def test_percentile_bins_hold_the_sample_percentiles(idle_times: list[float]) -> None:
    histogram = IdleHistogram()
    for idle_s in idle_times:
        histogram.add(idle_s)
    ordered = sorted(idle_times)
    for percentile in (5.0, 50.0, 99.0):
        index = histogram.percentile_bin(percentile)
        assert index is not None
        lower, upper = IdleHistogram.bin_edges(index)
        rank = max(1, math.ceil(percentile / 100 * len(ordered)))
        assert lower <= ordered[rank - 1] < upper


@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=200))
def test_the_running_cv_equals_the_cv_of_the_bin_counts(idle_times: list[int]) -> None:
    histogram = IdleHistogram()
    for idle_s in idle_times:
        histogram.add(idle_s)
    counts = [histogram.count(index) for index in range(histogram.bins)]
    expected = statistics.pstdev(counts) / statistics.fmean(counts)
    assert histogram.cv() == pytest.approx(expected)


def test_an_empty_histogram_has_no_percentile_and_no_cv() -> None:
    histogram = IdleHistogram()
    assert histogram.percentile_bin(99) is None
    assert histogram.cv() == 0.0


def test_negative_idle_times_count_as_zero() -> None:
    histogram = IdleHistogram()
    histogram.add(-3.0)
    assert histogram.count(0) == 1


# The policy


def test_the_fixed_keepalive_applies_until_enough_idle_times_are_seen() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    plan = periodic(policy, period_s=3.0, duration_s=0.1, calls=CONFIG.min_samples)
    assert policy.histogram.samples == CONFIG.min_samples - 1
    assert plan == Plan(unload_at=plan.unload_at, learned=False)
    assert plan.unload_at == pytest.approx(1000.0 + 3.0 * (CONFIG.min_samples - 1) + 0.1 + 30.0)


def test_a_learned_period_unloads_at_once_and_prewarms_before_the_next_call() -> None:
    """Calls every 3 s lasting 0.1 s: idle 2.9 s, in the bin [2, 3); pre-warm at 2 s less 10%,
    keep the pre-warmed container until 3 s plus 10%: the next call (2.9 s) finds it."""
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    plan = periodic(policy, period_s=3.0, duration_s=0.1, calls=CONFIG.min_samples + 1)
    end = plan.unload_at
    assert plan.learned
    assert plan.prewarm_at == pytest.approx(end + 1.8)
    assert plan.prewarm_unload_at == pytest.approx(end + 3.3)
    assert plan.prewarm_at is not None and plan.prewarm_unload_at is not None
    assert plan.prewarm_at < end + 2.9 < plan.prewarm_unload_at


def test_calls_that_come_back_within_a_second_keep_the_container_until_the_tail() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    plan = periodic(policy, period_s=0.6, duration_s=0.1, calls=20)
    assert plan.learned and plan.prewarm_at is None
    end = 1000.0 + 0.6 * 19 + 0.1
    assert plan.unload_at == pytest.approx(end + 1.0 * 1.1)


def test_hourly_calls_learn_a_prewarm_minutes_before_the_hour() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    plan = periodic(policy, period_s=3600.0, duration_s=2.0, calls=10)
    end = plan.unload_at
    assert plan.prewarm_at == pytest.approx(end + 3540 * 0.9)
    assert plan.prewarm_unload_at == pytest.approx(end + 3600 * 1.1)


def test_spread_out_idle_times_fall_back_to_the_fixed_keepalive() -> None:
    """Idle times spread evenly over the whole range: a low CV, not representative."""
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    for index in range(policy.histogram.bins):
        low, high = policy.histogram.bin_edges(index)
        policy.observe_idle((low + high) / 2)
    assert policy.histogram.cv() < CONFIG.cv_threshold
    assert policy.plan(5000.0) == Plan(unload_at=5030.0)


def test_idle_times_mostly_beyond_the_range_fall_back_to_the_fixed_keepalive() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    for _ in range(6):
        policy.observe_idle(5 * 3600)
    for _ in range(4):
        policy.observe_idle(10.0)
    assert policy.plan(0.0) == Plan(unload_at=30.0)


def test_the_fixed_policy_never_learns() -> None:
    policy = KeepAlivePolicy(KeepAliveConfig(policy="fixed"), fallback_s=600.0)
    plan = periodic(policy, period_s=3.0, duration_s=0.1, calls=50)
    assert plan == Plan(unload_at=plan.unload_at) and not plan.learned
    assert policy.windows() is None


def test_idle_timeout_bounds_the_keepalive_of_a_kept_container() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0, bound_s=5.0)
    for _ in range(20):
        policy.observe_idle(30.0)  # a 99th percentile of 31 s, 34.1 s with the margin...
    for _ in range(20):
        policy.observe_idle(0.2)  # ... and a 5th of 0 s: keep, no pre-warm
    plan = policy.plan(100.0)
    assert plan.learned and plan.prewarm_at is None
    assert plan.unload_at == 105.0


def test_idle_timeout_bounds_a_prewarmed_container_but_not_the_prewarm() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=2.0, bound_s=2.0)
    for idle_s in [100.0] * 10 + [200.0] * 10:
        policy.observe_idle(idle_s)  # bins [60, 120) and [180, 240)
    plan = policy.plan(0.0)
    assert plan.unload_at == 0.0
    assert plan.prewarm_at == pytest.approx(60 * 0.9)
    assert plan.prewarm_unload_at == pytest.approx(60 * 0.9 + 2.0)


def test_idle_timeout_caps_the_fallback() -> None:
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0, bound_s=2.0)
    assert policy.plan(10.0) == Plan(unload_at=12.0)


def test_concurrent_calls_learn_per_concurrency_level() -> None:
    """Every 10 s two calls overlap: the fn goes idle for 6 s (level 1), while the second
    container is idle 9.6 s, from its call's end to the next overlap (level 2): each level
    plans with its own histogram."""
    policy = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    now = 0.0
    for _ in range(12):
        policy.before_call(now)
        policy.before_call(now + 0.1)
        second = policy.after_call(now + 0.5)  # the fn goes down from 2 calls
        first = policy.after_call(now + 4.0)  # ... and from 1
        now += 10.0
    assert len(policy.histograms) == 2
    assert policy.histograms[0].samples == 11 and policy.histograms[1].samples == 11
    assert policy.windows(1) == pytest.approx((6 * 0.9, 7 * 1.1))
    assert policy.windows(2) == pytest.approx((9 * 0.9, 10 * 1.1))
    assert first.prewarm_at == pytest.approx(now - 10 + 4.0 + 5.4)
    assert second == Plan(unload_at=now - 10 + 0.5, learned=True)  # extra: never pre-warmed


def bimodal(config: KeepAliveConfig, **kwargs: float) -> KeepAlivePolicy:
    """40 idle times of 0.5 s inside bursts, 10 gaps of 10 minutes between them."""
    policy = KeepAlivePolicy(config, fallback_s=30.0, **kwargs)
    for _ in range(40):
        policy.observe_idle(0.5)
    for _ in range(10):
        policy.observe_idle(600.5)
    return policy


def test_the_papers_weight_keeps_through_the_gap_between_modes() -> None:
    plan = bimodal(CONFIG, cold_start_s=2.0).plan(0.0)
    assert plan.unload_at == pytest.approx(660 * 1.1)
    assert plan == Plan(unload_at=plan.unload_at, learned=True)


# The cost-aware plan (a finite cold_start_weight)

COSTED = KeepAliveConfig(cold_start_weight=100.0, margin_percent=0.0)


def test_bins_remember_the_span_and_sum_of_their_idle_times() -> None:
    histogram = IdleHistogram()
    assert histogram.top == -1
    for idle_s in (3599.0, 3601.5, 3600.2, 7.5):
        histogram.add(idle_s)
    hour = IdleHistogram.bin_index(3600.0)
    assert histogram.span(hour) == (3600.2, 3601.5)
    assert histogram.total(hour) == pytest.approx(7201.7)
    assert histogram.span(hour - 1) == (3599.0, 3599.0)
    assert histogram.span(hour + 1) == IdleHistogram.bin_edges(hour + 1)  # empty: its edges
    assert histogram.top == hour


def test_a_costed_prewarm_holds_a_timer_for_its_jitter_not_its_minute_wide_bin() -> None:
    """Hourly calls with 2 s of jitter: ready at the shortest idle time seen, removed after
    the longest (the paper's policy holds the bins: 3540 to 3660 s, plus margins)."""
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=256, cold_start_s=1.5)
    for index in range(12):
        policy.observe_idle(3598.0 + index % 3)  # 3598, 3599, 3600
    assert policy.warm_runs() == [(3598.0, 3600.0)]
    plan = policy.plan(0.0)
    assert plan == Plan(unload_at=0.0, prewarm_at=3596.5, prewarm_unload_at=3600.0, learned=True)


def test_a_sparse_mode_is_held_whole_not_cut_at_its_empty_bins() -> None:
    """Idle times every other second from 20 to 40 s leave empty 1-second bins inside the mode
    (a per-bin hazard of 0 once cut it into runs, and calls in the holes started cold)."""
    policy = KeepAlivePolicy(
        KeepAliveConfig(cold_start_weight=1000.0, margin_percent=10.0),
        fallback_s=30.0,
        cold_start_s=1.0,
    )
    for idle_s in range(20, 41, 2):
        policy.observe_idle(idle_s + 0.5)
    assert policy.warm_runs() == [(20.5, 40.5)]
    plan = policy.plan(0.0)
    assert plan.unload_at == 0.0
    assert plan.prewarm_at == pytest.approx(20.5 * 0.9 - 1.0)
    assert plan.prewarm_unload_at == pytest.approx(40.5 * 1.1)


def test_a_mode_is_prewarmed_only_when_its_cold_starts_outweigh_its_memory() -> None:
    """Idle times of 0.5 s, and 10 gaps spread evenly from 600 to 3000 s: pre-warming for the
    second mode holds 1 GB for about 1,200 s a gap to save one 1 s cold start, worth it at a
    weight of 10,000 GB-s per cold-start second, not at 100."""

    def spread(weight: float) -> KeepAlivePolicy:
        config = KeepAliveConfig(cold_start_weight=weight, margin_percent=0.0)
        policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=1024, cold_start_s=1.0)
        for _ in range(40):
            policy.observe_idle(0.5)
        for index in range(10):
            policy.observe_idle(600.0 + index * 2400 / 9)
        return policy

    assert spread(100.0).plan(0.0) == Plan(unload_at=1.0, learned=True)
    assert spread(10_000.0).plan(0.0) == Plan(
        unload_at=1.0, prewarm_at=599.0, prewarm_unload_at=3000.0, learned=True
    )


def test_a_prewarm_window_holds_at_least_min_samples_idle_times() -> None:
    """One idle time seen at 3000 s: a pre-warm ready then and gone a second later would cost
    almost nothing on paper, and miss the next call."""
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=128, cold_start_s=1.0)
    for _ in range(10):
        policy.observe_idle(0.5)
    policy.observe_idle(3000.0)
    assert policy.plan(0.0) == Plan(unload_at=1.0, learned=True)


def test_a_narrow_mode_is_prewarmed_even_at_a_small_weight() -> None:
    """10-minute gaps at 600.5 s exactly: a pre-warm holds 2 s of memory a gap, cheap."""
    plan = bimodal(COSTED, memory_mb=128, cold_start_s=2.0).plan(0.0)
    assert plan == Plan(unload_at=1.0, prewarm_at=598.5, prewarm_unload_at=600.5, learned=True)


@pytest.mark.parametrize(("weight", "kept"), [(30.0, True), (2.0, False)])
def test_memoryless_idle_times_keep_to_the_tail_or_not_at_all(weight: float, kept: bool) -> None:
    """Exponential idle times (mean 60 s; the quantiles, not random draws) have a constant
    hazard of 1/60 per s: keeping is worth it everywhere when 1/60 x 1 s x weight exceeds
    0.125 GB (a weight above 7.5), nowhere below. (The samples leave gaps of a few seconds in
    the tail, where unloading and pre-warming again looks cheaper on paper; the margin joins
    the two, so the container is simply kept.)"""
    config = KeepAliveConfig(cold_start_weight=weight, margin_percent=10.0)
    policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=128, cold_start_s=1.0)
    idle_times = [-60.0 * math.log(1 - (index + 0.5) / 200) for index in range(200)]
    for idle_s in idle_times:
        policy.observe_idle(idle_s)
    plan = policy.plan(0.0)
    assert plan.prewarm_at is None and plan.learned
    assert plan.unload_at == (pytest.approx(max(idle_times) * 1.1) if kept else 0.0)


@pytest.mark.parametrize(("per_start", "kept"), [(False, False), (True, True)])
def test_weighing_per_start_prices_a_short_cold_start_like_a_long_one(
    per_start: bool, kept: bool
) -> None:
    """Exponential idle times (mean 60 s) of a 512 MB fn starting in 0.1 s: keeping costs
    0.5 GB x 60 s = 30 GB-s a cold start saved; at a weight of 100 a cold start is worth 10
    GB-s per cold-start second (not kept), or 100 GB-s per start (kept to the tail, plus the
    margin)."""
    config = KeepAliveConfig(
        cold_start_weight=100.0, margin_percent=10.0, weigh_per_start=per_start
    )
    policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=512, cold_start_s=0.1)
    idle_times = [-60.0 * math.log(1 - (index + 0.5) / 200) for index in range(200)]
    for idle_s in idle_times:
        policy.observe_idle(idle_s)
    plan = policy.plan(0.0)
    assert plan.learned and plan.prewarm_at is None
    assert plan.unload_at == (pytest.approx(max(idle_times) * 1.1) if kept else 0.0)


def test_an_unknown_cold_start_makes_nothing_worth_keeping_under_a_finite_weight() -> None:
    policy = bimodal(KeepAliveConfig(cold_start_weight=10.0))
    assert policy.warm_runs() == []
    assert policy.plan(5.0) == Plan(unload_at=5.0, learned=True)


def test_costed_extra_containers_are_kept_through_their_level_never_prewarmed() -> None:
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=1024, cold_start_s=1.0)
    for _ in range(20):
        policy.observe_idle(0.5, level=2)
        policy.observe_idle(600.5, level=2)
    assert policy.warm_runs(2) == [(0.0, 0.5)]
    assert policy.plan(0.0, level=2) == Plan(unload_at=1.0, learned=True)


def test_a_finite_weight_learns_spread_out_idle_times_the_cv_test_refuses() -> None:
    """The CV test guards the percentiles; the cost rule weighs every bin, so it applies."""
    paper = KeepAlivePolicy(CONFIG, fallback_s=30.0)
    costed = KeepAlivePolicy(
        KeepAliveConfig(cold_start_weight=1e6), fallback_s=30.0, cold_start_s=1.0
    )
    for policy in (paper, costed):
        for idle in range(0, 14400, 60):
            policy.observe_idle(idle + 30.0)
    assert not paper.representative() and paper.plan(0.0) == Plan(unload_at=30.0)
    assert costed.representative() and costed.plan(0.0).learned


def plan_cost(
    idle_times: list[float], runs: list[tuple[float, float]], gb: float, cold_s: float, w: float
) -> float:
    """The docstring's cost of a plan, summed over ``idle_times`` (inf: beyond the range)."""
    keep = runs[0][1] if runs and runs[0][0] == 0.0 else 0.0
    window = runs[-1] if runs and runs[-1][0] > 0.0 else None
    cost = 0.0
    for x in idle_times:
        warm = 0.0 < keep and x <= keep  # kept until 0: removed at once
        cost += gb * min(x, keep)
        if window is not None and x >= window[0]:
            cost += gb * (min(x, window[1]) - (window[0] - cold_s))
            warm = warm or x <= window[1]
        cost += 0.0 if warm else w * cold_s
    return cost


@settings(deadline=None)  # a brute force over every plan: slow on a busy machine
@given(
    st.lists(st.floats(min_value=0, max_value=14_000, allow_nan=False), min_size=5, max_size=30),
    st.integers(min_value=0, max_value=2),
    st.sampled_from([128, 1024]),
    st.floats(min_value=0.1, max_value=5.0),
    st.sampled_from([1.0, 30.0, 1000.0]),
)
def test_the_costed_plan_is_the_cheapest_of_all_plans_on_the_bins_spans(
    idle_times: list[float], beyond: int, memory_mb: int, cold_s: float, weight: float
) -> None:
    """Against a brute force over every keep K (0 or a bin's longest idle time) and pre-warm
    window [S, T] (a bin's shortest and a bin's longest, S - cold start >= K, holding at
    least min_samples idle times)."""
    config = KeepAliveConfig(cold_start_weight=weight, margin_percent=0.0)
    policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=memory_mb, cold_start_s=cold_s)
    idle_times = idle_times + [20_000.0] * beyond  # beyond the range
    for idle_s in idle_times:
        policy.observe_idle(idle_s)
    runs = policy.warm_runs()
    assert runs is not None
    gb, histogram = memory_mb / 1024, policy.histogram
    seen = [x if x < histogram.range_s else math.inf for x in idle_times]
    spans = [histogram.span(i) for i in range(histogram.bins) if histogram.count(i)]
    keeps = [0.0] + [high for _, high in spans]
    best = min(plan_cost(seen, [(0.0, keep)], gb, cold_s, weight) for keep in keeps)
    for keep in keeps:
        for start, _ in spans:
            for _, until in spans:
                inside = sum(start <= x <= until for x in seen)
                if start - cold_s >= keep and until >= start and inside >= config.min_samples:
                    plan = [(0.0, keep), (start, until)]
                    best = min(best, plan_cost(seen, plan, gb, cold_s, weight))
    assert plan_cost(seen, runs, gb, cold_s, weight) == pytest.approx(best, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("config", [CONFIG, COSTED], ids=["paper", "costed"])
@given(
    idle_times=st.lists(st.floats(min_value=0, max_value=20_000, allow_nan=False), max_size=60),
    bound_s=st.floats(min_value=1, max_value=3600),
)
def test_no_plan_keeps_a_container_idle_longer_than_the_bound(
    config: KeepAliveConfig, idle_times: list[float], bound_s: float
) -> None:
    policy = KeepAlivePolicy(config, fallback_s=30.0, bound_s=bound_s, cold_start_s=1.0)
    for idle_s in idle_times:
        policy.observe_idle(idle_s)
    plan = policy.plan(0.0)
    assert 0.0 <= plan.unload_at <= bound_s
    if plan.prewarm_at is not None:
        assert plan.prewarm_unload_at is not None
        assert plan.prewarm_at <= plan.prewarm_unload_at <= plan.prewarm_at + bound_s


# The plan cache (RelativePlan): after_call recomputes a plan only when the rule says so


def fresh_plan(policy: KeepAlivePolicy, now: float, level: int = 1) -> Plan:
    """The plan computed afresh on ``policy``'s histograms (no cache)."""
    twin = KeepAlivePolicy(
        policy.config,
        fallback_s=policy.fallback_s,
        bound_s=policy.bound_s,
        memory_mb=policy.memory_mb,
        cold_start_s=policy.cold_start_s,
    )
    twin.histograms = policy.histograms
    return twin.plan(now, level=level)


def test_a_hot_fn_computes_a_plan_per_ten_percent_growth_not_per_call() -> None:
    policy = KeepAlivePolicy(KeepAliveConfig(), fallback_s=30.0, memory_mb=256, cold_start_s=0.8)
    now = 0.0
    for index in range(20_000):
        level = 1 + index % 16
        for _ in range(level):
            now += 0.001
            policy.before_call(now)
        for _ in range(level):
            now += 0.002
            policy.after_call(now)
    calls = sum(1 + index % 16 for index in range(20_000))
    assert calls > 150_000
    # 8 levels, each ~log(n)/log(1.1) computations from its first idle time
    assert policy.computed < 8 * 120


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=2.0),
            st.floats(min_value=0.0, max_value=20_000.0),
        ),
        min_size=1,
        max_size=300,
    ),
    st.sampled_from([COSTED, KeepAliveConfig(), KeepAliveConfig(cold_start_weight=math.inf)]),
)
def test_a_cached_plan_never_misses_more_than_a_tenth_of_the_idle_times(
    idle_times: list[float], config: KeepAliveConfig
) -> None:
    policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=256, cold_start_s=1.0)
    for idle_s in idle_times:
        policy.observe_idle(idle_s)
        plan = policy.plan(0.0)
        relative = policy.relative_plan()
        samples = policy.histogram.samples
        assert samples - relative.samples <= max(1, relative.samples // 10)
        if samples >= config.min_samples:  # reaching min_samples is never missed
            assert relative.samples >= config.min_samples
        if relative.samples == samples:
            assert plan == fresh_plan(policy, 0.0)


def test_the_plan_is_recomputed_once_the_histogram_grew_by_ten_percent() -> None:
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=256, cold_start_s=1.0)
    for _ in range(100):
        policy.observe_idle(0.5)
    policy.plan(0.0)
    computed = policy.computed
    for _ in range(9):
        policy.observe_idle(0.5)
        policy.plan(0.0)
    assert policy.computed == computed  # 109 idle times: not yet
    policy.observe_idle(0.5)
    policy.plan(0.0)
    assert policy.computed == computed + 1  # 110: 10% more
    assert policy.relative_plan().samples == 110


def test_an_idle_time_outside_the_plan_recomputes_it_at_the_next_call_end() -> None:
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=256, cold_start_s=1.0)
    for _ in range(1000):
        policy.observe_idle(0.5)
    assert policy.plan(0.0) == Plan(unload_at=1.0, learned=True)
    computed = policy.computed
    policy.observe_idle(0.4)  # inside the kept run: the plan stands
    policy.plan(0.0)
    assert policy.computed == computed
    cold = 0
    for _ in range(200):  # a new mode at 20 s: while the plan makes it a cold start ...
        covered = policy.relative_plan().covers(20.0)
        policy.observe_idle(20.0)
        if not covered:  # ... the next plan is computed afresh
            cold += 1
            assert policy.plan(0.0) == fresh_plan(policy, 0.0)
    assert 0 < cold < 20  # a few until the plan covers the new mode (a pre-warm ready at 20 s)
    assert policy.relative_plan().covers(20.0)
    assert policy.computed <= computed + cold + 3  # and the rest only by the growth rule


def test_a_timers_drift_past_its_prewarm_window_recomputes_the_plan() -> None:
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=256, cold_start_s=1.5)
    for index in range(100):
        policy.observe_idle(3598.0 + index % 3)
    relative = policy.relative_plan()
    assert relative.prewarm is not None and relative.covers(3599.0)
    assert not relative.covers(3650.0)
    policy.observe_idle(3650.0)
    assert policy.relative_plan() is not relative


def test_a_new_cold_start_estimate_or_memory_recomputes_the_plan() -> None:
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=256, cold_start_s=1.0)
    for _ in range(100):
        policy.observe_idle(5.5)
    before = policy.relative_plan()
    assert policy.relative_plan() is before
    policy.cold_start_s = 0.001
    assert policy.relative_plan() is not before
    assert policy.plan(0.0) == fresh_plan(policy, 0.0)
    after = policy.relative_plan()
    policy.memory_mb = 4096
    assert policy.relative_plan() is not after


def test_reaching_min_samples_is_learned_at_once_whatever_the_growth_step() -> None:
    config = KeepAliveConfig(min_samples=50, cold_start_weight=math.inf, margin_percent=10.0)
    policy = KeepAlivePolicy(config, fallback_s=30.0, memory_mb=256, cold_start_s=1.0)
    for _ in range(49):
        policy.observe_idle(0.5)
        assert not policy.plan(0.0).learned
    policy.observe_idle(0.5)
    assert policy.plan(0.0) == Plan(unload_at=1.1, learned=True)


# Greedy-Dual


def test_greedy_dual_evicts_the_rarely_used_cheap_and_large_first() -> None:
    gd: GreedyDual[str] = GreedyDual()
    gd.used("busy", fn="a", cost_s=1.0, memory_mb=128)
    gd.used("busy", fn="a", cost_s=1.0, memory_mb=128)
    gd.used("large", fn="b", cost_s=1.0, memory_mb=1024)
    gd.used("cheap", fn="c", cost_s=0.1, memory_mb=128)
    gd.used("slow", fn="d", cost_s=5.0, memory_mb=128)
    assert gd.order(["slow", "busy", "cheap", "large"]) == ["cheap", "large", "busy", "slow"]


def test_greedy_dual_clock_advances_to_the_evicted_priority_so_new_uses_age_the_old() -> None:
    gd: GreedyDual[str] = GreedyDual()
    for _ in range(3):
        gd.used("old", fn="a", cost_s=1.0, memory_mb=100)  # priority 0.03
    gd.used("victim", fn="b", cost_s=2.0, memory_mb=100)  # 0.02
    assert gd.order(["old", "victim"]) == ["victim", "old"]
    gd.evicted("victim")
    assert gd.clock == pytest.approx(0.02)
    gd.used("new", fn="c", cost_s=1.0, memory_mb=100)  # 0.02 + 0.01
    gd.used("new", fn="c", cost_s=1.0, memory_mb=100)  # 0.02 + 0.02
    assert gd.order(["new", "old"]) == ["old", "new"]


def test_greedy_dual_frequency_is_per_fn_and_resets_when_its_last_container_goes() -> None:
    gd: GreedyDual[str] = GreedyDual()
    gd.used("a1", fn="a", cost_s=1.0, memory_mb=1)
    assert gd.used("a2", fn="a", cost_s=1.0, memory_mb=1) == 2.0
    gd.removed("a1")
    gd.removed("a2")
    assert gd.clock == 0.0
    assert gd.used("a3", fn="a", cost_s=1.0, memory_mb=1) == 1.0


def test_greedy_dual_puts_never_used_containers_first() -> None:
    gd: GreedyDual[str] = GreedyDual()
    gd.used("used", fn="a", cost_s=1.0, memory_mb=1)
    assert gd.order(["used", "fresh"]) == ["fresh", "used"]


# Settings


def test_keepalive_defaults_are_the_papers_histogram_with_the_cost_aware_plan() -> None:
    config = KeepAliveConfig()
    assert (config.policy, config.range_s, config.head_percentile) == ("adaptive", 14400.0, 5.0)
    assert (config.tail_percentile, config.cv_threshold) == (99, 2)
    assert (config.cold_start_weight, config.margin_percent) == (300.0, 2.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"policy": "lru"}, "keep-alive policy 'lru'"),
        ({"tail_percentile": 101.0}, "percentiles"),
        ({"head_percentile": -1.0}, "percentiles"),
        ({"margin_percent": 100.0}, "margin"),
        ({"range_s": 30.0}, "range"),
        ({"cold_start_weight": 0.0}, "cold-start weight"),
    ],
)
def test_bad_keepalive_configs_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        KeepAliveConfig(**fields)


def test_a_kept_container_stays_at_least_a_fine_bin_after_back_to_back_calls() -> None:
    """Idle times of a millisecond (a caller's tight loop) keep the container a second, not a
    millisecond: its next pause would otherwise start cold. An explicit bound still wins."""
    policy = KeepAlivePolicy(COSTED, fallback_s=30.0, memory_mb=128, cold_start_s=0.3)
    for _ in range(30):
        policy.observe_idle(0.001)
    assert policy.plan(10.0) == Plan(unload_at=10.0 + MIN_KEEP_S, learned=True)
    bounded = KeepAlivePolicy(
        COSTED, fallback_s=30.0, bound_s=0.25, memory_mb=128, cold_start_s=0.3
    )
    for _ in range(30):
        bounded.observe_idle(0.001)
    assert bounded.plan(10.0) == Plan(unload_at=10.25, learned=True)
