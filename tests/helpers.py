"""Helpers every test suite shares (unit, system, bench). Suite-specific ones live in
``tests/unit/helpers.py`` and ``tests/system/helpers.py``; no test module imports another.

Waiting for a state: a test polls a predicate with a deadline (never a sleep), and a timeout
fails naming what it waited for. ``wait_for`` blocks (threads, subprocesses, Docker seen from
outside an event loop); ``poll`` is its async form and never blocks the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


class _Deadline:
    def __init__(self, what: str, timeout_s: float) -> None:
        self.what, self.timeout_s = what, timeout_s
        self.at = time.monotonic() + timeout_s

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise AssertionError(f"timed out after {self.timeout_s} s waiting for {self.what}")


def wait_for(
    predicate: Callable[[], T], what: str, *, timeout_s: float = 5.0, interval_s: float = 0.02
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; after
    ``timeout_s`` fail with an AssertionError naming ``what``."""
    deadline = _Deadline(what, timeout_s)
    while not (value := predicate()):
        deadline.check()
        time.sleep(interval_s)
    return value


async def poll(
    predicate: Callable[[], T], what: str, *, timeout_s: float = 5.0, interval_s: float = 0.005
) -> T:
    """``wait_for`` for async tests: sleeps on the event loop between calls."""
    deadline = _Deadline(what, timeout_s)
    while not (value := predicate()):
        deadline.check()
        await anyio.sleep(interval_s)
    return value
