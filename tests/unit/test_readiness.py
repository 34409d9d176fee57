"""fnagent/agent/readiness.py: the start timeout's allowance on plain numbers, and the
directory watch (a real inotify descriptor on a temporary directory), closed off the caller's
thread."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnagent.agent import readiness
from fnagent.agent.readiness import LISTENER, MAX_START_STRETCH, start_allowance


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _closes_on_threads(monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """Spy on os.close: which thread closed each descriptor."""
    closed: dict[int, str] = {}
    real_close = os.close

    def spy(fd: int) -> None:
        closed[fd] = threading.current_thread().name
        real_close(fd)

    monkeypatch.setattr(os, "close", spy)  # the os module readiness closes with
    return closed


def _soon(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """True once ``predicate()`` is, False if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_watch_is_closed_off_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _closes_on_threads(monkeypatch)
    watch = readiness._Inotify.open(str(tmp_path))
    assert watch is not None, "inotify is available on the machines this runs on"
    fd = watch.fd
    assert _is_open(fd)
    watch.close()
    assert _soon(lambda: fd in closed)
    assert closed[fd] == "fd-closer"


@pytest.mark.anyio
async def test_waiting_for_the_listener_closes_its_watch_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _closes_on_threads(monkeypatch)
    listener = tmp_path / LISTENER
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def listen_soon() -> None:
        await anyio.sleep(0.05)
        server.bind(str(listener))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen_soon)
            with anyio.fail_after(5):
                assert await readiness.wait_until_listening(str(tmp_path), listener.exists)
    finally:
        server.close()
    assert _soon(lambda: "fd-closer" in closed.values())
    assert "MainThread" not in closed.values()


def test_a_start_is_allowed_its_timeout_plus_its_cpu_wait_up_to_the_stretch_limit() -> None:
    assert start_allowance(timeout_s=5, cpu_wait_s=None) == 5
    assert start_allowance(timeout_s=5, cpu_wait_s=0) == 5
    assert start_allowance(timeout_s=5, cpu_wait_s=12.5) == 17.5
    assert start_allowance(timeout_s=5, cpu_wait_s=1000) == 5 * MAX_START_STRETCH


@given(
    timeout_s=st.floats(min_value=0.001, max_value=600),
    wait=st.none() | st.floats(min_value=0, max_value=1e6),
)
def test_the_start_allowance_is_between_the_timeout_and_the_stretch_limit(
    timeout_s: float, wait: float | None
) -> None:
    allowed = start_allowance(timeout_s=timeout_s, cpu_wait_s=wait)
    assert timeout_s <= allowed <= timeout_s * MAX_START_STRETCH
