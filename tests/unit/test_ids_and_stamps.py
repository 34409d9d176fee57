"""Call ids (fnagent/ids.py) and the stored timestamp text (fnagent/store/rows.py): both are
made for every call record, so both are written for speed; these pin them to the plain
definitions they replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from fnagent.ids import new_id
from fnagent.store.rows import parse_ts, ts

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def crockford(value: int) -> str:
    """The 26 base-32 digits of ``value`` (mod 32**26), most significant first."""
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(CROCKFORD[digit])
    return "".join(reversed(chars))


@given(st.integers(0, 2**48 - 1))
def test_an_id_is_its_milliseconds_then_80_random_bits_in_crockford_base32(millis: int) -> None:
    made = new_id(millis)
    assert len(made) == 26 and set(made) <= set(CROCKFORD)
    value = 0
    for char in made:
        value = value * 32 + CROCKFORD.index(char)
    assert value >> 80 == millis
    assert crockford(value) == made


def test_the_random_part_uses_every_digit() -> None:
    seen = [set[str]() for _ in range(16)]
    for _ in range(2000):
        for position, char in enumerate(new_id(0)[10:]):
            seen[position].add(char)
    assert all(chars == set(CROCKFORD) for chars in seen)


def test_ids_sort_by_time_and_do_not_repeat() -> None:
    ids = [new_id(1_700_000_000_000 + n // 10) for n in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[:10] for i in ids] == sorted(i[:10] for i in ids)
    assert new_id(0).startswith("0000000000") and new_id(2**48 - 1).startswith("7ZZZZZZZZZ")
    assert new_id()[:10] > new_id(1_700_000_000_000)[:10]


ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
)
def test_a_timestamp_is_stored_as_strftime_would_write_it_in_utc(when: datetime) -> None:
    text = ts(when)
    assert text == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_ts(text) == when


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
def test_every_timestamp_has_the_same_width_and_reads_back(when: datetime) -> None:
    text = ts(when)
    assert len(text) == len("2026-12-01T05:00:00.000000Z")
    assert parse_ts(text) == when


def test_timestamps_within_one_second_keep_their_microseconds() -> None:
    base = datetime(2026, 12, 1, 5, 0, 0, tzinfo=UTC)
    texts = [ts(base + timedelta(microseconds=n)) for n in (0, 1, 999_999, 1_000_000)]
    assert texts == [
        "2026-12-01T05:00:00.000000Z",
        "2026-12-01T05:00:00.000001Z",
        "2026-12-01T05:00:00.999999Z",
        "2026-12-01T05:00:01.000000Z",
    ]
