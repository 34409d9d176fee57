"""The one memory syntax of every command: a bare number is MiB (as in Fn); k, m and g suffixes
everywhere; values below Docker's floor get fnagent's own message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import InvalidInputError
from fnagent.units import MIN_MEMORY_BYTES, parse_memory, parse_memory_mb

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64", 64 * MIB),
        ("64m", 64 * MIB),
        ("64M", 64 * MIB),
        ("64MiB", 64 * MIB),
        ("64mb", 64 * MIB),
        ("1g", 1024 * MIB),
        ("1.5g", 1536 * MIB),
        ("8192k", 8 * MIB),
        (" 128m ", 128 * MIB),
    ],
)
def test_memory_forms(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["0", "1k", "512k", "5m", "5.9m", "0g"])
def test_below_dockers_floor_is_refused_with_our_message(text: str) -> None:
    with pytest.raises(InvalidInputError, match="at least 6m"):
        parse_memory(text)


@pytest.mark.parametrize("text", ["", "lots", "64x", "-1", "64 m b", "1e3", "64b", "1t"])
def test_garbage_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid memory"):
        parse_memory(text)


@given(st.integers(min_value=6, max_value=1 << 20))
def test_a_bare_number_means_mib_like_the_m_suffix(mib: int) -> None:
    assert parse_memory(str(mib)) == parse_memory(f"{mib}m") == mib * MIB
    assert parse_memory(f"{mib * 1024}k") == mib * MIB
    assert parse_memory_mb(str(mib)) == mib


@given(st.integers(min_value=0, max_value=1 << 40))
def test_every_accepted_value_is_at_least_the_floor(n: int) -> None:
    for text in (f"{n}k", str(n), f"{n}g"):
        try:
            assert parse_memory(text) >= MIN_MEMORY_BYTES
        except InvalidInputError:
            pass


def test_whole_mib_for_the_api() -> None:
    assert parse_memory_mb("1g") == 1024
    with pytest.raises(InvalidInputError, match="whole number of MiB"):
        parse_memory_mb("6500k")
