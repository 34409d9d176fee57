"""Sortable unique ids for calls (and later apps, fns, triggers): ULID-like, 26 characters.

48 bits of milliseconds since the epoch, then 80 random bits, in Crockford base32, so ids sort
by creation time and never collide in practice.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every call takes an id, so it is made with few Python steps: the time part two digits
# (10 bits) at a time, the random part as 16 random bytes mapped to one digit each (5 bits).
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_DIGIT_OF_BYTE = bytes(_ALPHABET.encode()[byte & 31] for byte in range(256))


def new_id(now_ms: int | None = None) -> str:
    """A new id; ``now_ms`` fixes the time part (tests)."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    pairs = _PAIRS
    return (
        pairs[(millis >> 40) & 1023]
        + pairs[(millis >> 30) & 1023]
        + pairs[(millis >> 20) & 1023]
        + pairs[(millis >> 10) & 1023]
        + pairs[millis & 1023]
        + os.urandom(16).translate(_DIGIT_OF_BYTE).decode("ascii")
    )
