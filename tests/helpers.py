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


def _timed_out(what: str, timeout_s: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_for(
    predicate: Callable[[], T], what: str, *, timeout_s: float = 5.0, interval_s: float = 0.02
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; after
    ``timeout_s`` fail with an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s)
        time.sleep(interval_s)


async def poll(
    predicate: Callable[[], T], what: str, *, timeout_s: float = 5.0, interval_s: float = 0.005
) -> T:
    """``wait_for`` for async tests: sleeps on the event loop between calls."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s)
        await anyio.sleep(interval_s)
