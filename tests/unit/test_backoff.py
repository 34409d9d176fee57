"""The one backoff the pool, the driver's sweeper and the agent's relaunches share."""

from drivers.backoff import BACKOFF_BASE_S, BACKOFF_MAX_S, backoff_s


def test_backoff_grows_from_nothing_and_is_capped() -> None:
    delays = [backoff_s(n) for n in range(12)]
    assert delays[0] == 0.0 and delays[1] == BACKOFF_BASE_S == 0.1
    assert delays == sorted(delays)
    assert max(delays) == BACKOFF_MAX_S
    assert backoff_s(100_000) == BACKOFF_MAX_S  # a daemon down for days: still a delay
