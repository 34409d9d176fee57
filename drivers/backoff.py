"""Retry delays after failures in a row (the daemon down, a launch failing): short at first, so
work resumes soon after the cause goes away, doubling up to a cap, so nothing spins."""

from __future__ import annotations

BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 2.0


def backoff_s(failures: int) -> float:
    """The delay after ``failures`` failures in a row: none for 0, then 0.1 s doubling to 2 s."""
    if failures <= 0:
        return 0.0
    # The exponent is capped: 2 ** 1100 does not convert to a float (a daemon down for hours).
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(failures - 1, 30)))
