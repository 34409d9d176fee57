"""How a container's run ended, worded once for every driver."""

from __future__ import annotations

from drivers.base import RunResult, RunStatus
from drivers.errors import (
    ContainerGoneError,
    FnAgentError,
    FunctionExitError,
    FunctionTimeoutError,
    OutOfMemoryError,
)

MIB = 1024 * 1024


def exit_result(code: int) -> RunResult:
    """The outcome of a container whose process ended with ``code`` (not by the OOM killer)."""
    if code == 0:
        return RunResult(status=RunStatus.SUCCESS, exit_code=0)
    reason = f"killed by signal {code - 128}" if code > 128 else f"exited with code {code}"
    return RunResult(
        status=RunStatus.ERROR,
        exit_code=code,
        error=FunctionExitError(f"the function's container {reason}"),
    )


def out_of_memory(memory_bytes: int, exit_code: int | None = None) -> RunResult:
    """The outcome of a container the kernel's OOM killer ended."""
    limit = f"{memory_bytes // MIB} MiB" if memory_bytes else "the host's memory"
    return RunResult(
        status=RunStatus.KILLED,
        exit_code=exit_code,
        error=OutOfMemoryError(f"the function ran out of memory and was killed (limit {limit})"),
    )


def lost(reason: str, exit_code: int | None = None) -> RunResult:
    """The outcome of a container the driver killed because something it depends on died."""
    return RunResult(status=RunStatus.KILLED, exit_code=exit_code, error=ContainerGoneError(reason))


def timed_out(timeout_s: float | None) -> RunResult:
    return RunResult(
        status=RunStatus.TIMEOUT,
        error=FunctionTimeoutError(f"Timed out: the function ran longer than {timeout_s:g} s"),
    )


def cancelled() -> RunResult:
    return RunResult(status=RunStatus.CANCELLED, error=FnAgentError("the call was cancelled"))
