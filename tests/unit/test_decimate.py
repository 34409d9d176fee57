"""decimate (drivers/stats.py): Fn's down-sampling of container stats into time windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.stats import Stat, decimate

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float, **metrics: int) -> Stat:
    return Stat(timestamp=T0 + timedelta(seconds=seconds), metrics=metrics)


# Gaps between samples: often equal timestamps and tiny steps, sometimes long silences.
GAPS_US = st.one_of(
    st.just(0), st.integers(1, 10), st.integers(1, 2_000_000), st.integers(1, 10**11)
)


@st.composite
def samples(draw: st.DrawFn, min_size: int = 0) -> list[Stat]:
    gaps = draw(st.lists(GAPS_US, min_size=min_size, max_size=60))
    stats, now = [], T0
    for gap in gaps:
        now += timedelta(microseconds=gap)
        stats.append(Stat(timestamp=now, metrics={"cpu": draw(st.integers(0, 10**9))}))
    return stats


def windows_oracle(max_samples: int, stats: list[Stat]) -> list[list[Stat]]:
    """The documented grouping in exact integer microseconds: ``max_samples`` equal windows
    over [first, last], half-open, the last one closed (it absorbs the final samples)."""
    start, span = stats[0].timestamp, stats[-1].timestamp - stats[0].timestamp
    groups: dict[int, list[Stat]] = {}
    for stat in stats:
        offset_us = (stat.timestamp - start) // timedelta(microseconds=1)
        span_us = span // timedelta(microseconds=1)
        index = min(offset_us * max_samples // span_us, max_samples - 1) if span_us else 0
        groups.setdefault(index, []).append(stat)
    return [groups[i] for i in sorted(groups)]


@given(st.integers(-5, 0), samples())
def test_max_not_positive_gives_nothing(max_samples: int, stats: list[Stat]) -> None:
    assert decimate(max_samples, stats) == []


@given(st.integers(1, 100), samples())
def test_no_more_samples_than_max_is_returned_as_is(max_samples: int, stats: list[Stat]) -> None:
    stats = stats[:max_samples]
    assert decimate(max_samples, stats) == stats


@given(st.integers(1, 20), samples(min_size=1))
def test_never_more_than_max_and_timestamps_sorted_from_input(
    max_samples: int, stats: list[Stat]
) -> None:
    out = decimate(max_samples, stats)
    assert 1 <= len(out) <= max_samples
    stamps = [s.timestamp for s in out]
    assert stamps == sorted(stamps)
    if len(stats) > max_samples:
        assert len(set(stamps)) == len(stamps), "disjoint windows start at different times"
    assert set(stamps) <= {s.timestamp for s in stats}
    assert out[0].timestamp == stats[0].timestamp


@given(st.integers(1, 20), samples(min_size=1))
def test_the_last_sample_is_always_in_the_last_window(max_samples: int, stats: list[Stat]) -> None:
    # Mark the final sample with a value big enough to survive any window's integer average.
    marker = len(stats)
    marked = [Stat(timestamp=s.timestamp, metrics={"marker": 0}) for s in stats[:-1]]
    marked.append(Stat(timestamp=stats[-1].timestamp, metrics={"marker": marker}))
    out = decimate(max_samples, marked)
    assert out[-1].metrics["marker"] >= 1
    assert all(s.metrics["marker"] == 0 for s in out[:-1])


@st.composite
def regular_samples(draw: st.DrawFn) -> list[Stat]:
    """Evenly spaced samples, so window boundaries fall exactly on samples."""
    # Decimal steps (0.1 s, 0.03 s...) are the ones binary floats cannot represent.
    step_us = draw(st.integers(1, 9)) * 10 ** draw(st.integers(0, 6))
    step = timedelta(microseconds=step_us)
    return [
        Stat(timestamp=T0 + i * step, metrics={"cpu": draw(st.integers(0, 1000))})
        for i in range(draw(st.integers(2, 60)))
    ]


# Regular samples put window boundaries exactly on samples, where float arithmetic slips.
@given(st.integers(1, 20), samples(min_size=1) | regular_samples())
def test_matches_the_exact_window_arithmetic(max_samples: int, stats: list[Stat]) -> None:
    expected = [
        Stat(
            timestamp=group[0].timestamp,
            metrics={"cpu": sum(s.metrics["cpu"] for s in group) // len(group)},
        )
        for group in windows_oracle(max_samples, stats)
    ]
    if len(stats) <= max_samples:
        expected = stats
    assert decimate(max_samples, stats) == expected


def test_does_not_modify_its_input() -> None:
    stats = [at(i, cpu=i) for i in range(10)]
    copy = list(stats)
    decimate(3, stats)
    assert stats == copy


@pytest.mark.parametrize(
    ("max_samples", "stats", "expected"),
    [
        # exact integer means, and the window's first timestamp
        (1, [at(0, a=1), at(1, a=2), at(2, a=4)], [at(0, a=2)]),
        # a metric a sample lacks counts as 0 there
        (1, [at(0, a=3), at(1, b=3), at(2, a=3, b=3)], [at(0, a=2, b=2)]),
        # windows of 10 s over [0, 30]: [0,10) [10,20) [20,30]; 30 closes the last one
        (
            3,
            [at(0, a=1), at(5, a=2), at(10, a=10), at(20, a=100), at(25, a=200), at(30, a=300)],
            [at(0, a=1), at(10, a=10), at(20, a=200)],
        ),
        # a long silence leaves windows empty: fewer samples come back
        (3, [at(0, a=3), at(1, a=6), at(2, a=9), at(100, a=1)], [at(0, a=6), at(100, a=1)]),
        # all at once: one window
        (2, [at(5, a=1), at(5, a=2), at(5, a=6)], [at(5, a=3)]),
        # uneven gaps, sub-second
        (
            4,
            [at(0, a=1), at(0.1, a=3), at(0.2, a=5), at(0.3, a=7), at(0.35, a=9), at(0.4, a=11)],
            [at(0, a=1), at(0.1, a=3), at(0.2, a=5), at(0.3, a=9)],
        ),
    ],
)
def test_table(max_samples: int, stats: list[Stat], expected: list[Stat]) -> None:
    assert decimate(max_samples, stats) == expected


def test_empty_input() -> None:
    assert decimate(5, []) == []
