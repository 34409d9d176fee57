"""``fnagent run``: one container, one call, a clear result.

Cold format: the caller's stdin is the container's stdin, its stdout the result.
http-stream format: the container is started with a private socket dir, the call is one
``POST /call`` with stdin streamed as the body once ``lsnr.sock`` is ready (chunked, or with
Content-Length when its size is known), and the response body is the result. Either way the
container is removed before returning.
"""

from __future__ import annotations

import asyncio
import enum
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from drivers import (
    ContainerTask,
    Driver,
    LogSink,
    RunResult,
    RunStatus,
    Stat,
    TaskLogger,
    decimate,
    deliver,
)
from drivers.docker import TASK_LABEL, DockerDriver, OrphanReaper
from drivers.docker.pull import PullProgress
from drivers.results import timed_out
from fnagent.agent import protocol
from fnagent.agent.readiness import CONTRACT_HINT, LISTENER
from fnagent.agent.sockdir import SocketDir
from fnagent.config import DEFAULT_IOFS_SIZE_BYTES, DEFAULT_MAX_RESPONSE_SIZE_BYTES
from fnagent.errors import (
    EXIT_AGENT_FAILURE,
    EXIT_CANCELLED,
    EXIT_HTTP_ERROR,
    EXIT_TIMEOUT,
    ContainerGoneError,
    FnAgentError,
    FunctionTimeoutError,
    InvalidInputError,
)

MAX_STAT_SAMPLES = 240
# How long a broken call waits for Docker to report the container's end.
EXIT_REPORT_GRACE_S = 5.0


class Format(enum.StrEnum):
    COLD = "cold"
    HTTP_STREAM = "http-stream"


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What the user asked ``fnagent run`` for, already parsed and checked."""

    image: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    memory_bytes: int = 0
    cpus_mcpus: int = 0
    timeout_s: float = 30.0
    format: Format = Format.COLD
    user: str | None = "1000:1000"
    hot_start_timeout_s: float = 5.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_SIZE_BYTES
    """http-stream: the most response body held (FN_MAX_RESPONSE_SIZE), as for serve."""
    headers: dict[str, str] = field(default_factory=dict)
    collect_stats: bool = False
    iofs_size_bytes: int = DEFAULT_IOFS_SIZE_BYTES
    """http-stream: the socket dir's tmpfs size (0: a plain directory)."""


@dataclass(kw_only=True)
class RunOutcome:
    """The result of one run, its timings (ms by phase) and decimated resource samples."""

    result: RunResult
    timings_ms: dict[str, float] = field(default_factory=dict)
    stats: list[Stat] = field(default_factory=list)
    http_status: int | None = None


class _Clock:
    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round((now - self._last) * 1000, 3)
        self._last = now

    def total(self) -> dict[str, float]:
        return {**self.phases, "total": round((time.perf_counter() - self._start) * 1000, 3)}


async def run_once(
    driver: Driver,
    request: RunRequest,
    *,
    stdin: AsyncIterable[bytes],
    stdout: LogSink,
    stderr: LogSink,
    progress: PullProgress | None = None,
    stdin_bytes: int | None = None,
    reaper: OrphanReaper | None = None,
    on_exit: Callable[[RunOutcome], Awaitable[None]] | None = None,
) -> RunOutcome:
    """Run ``request`` once on ``driver``; the container is gone when this returns or raises.

    ``stdin_bytes``, when known (a regular file), is how much ``stdin`` yields: the
    http-stream call then sends it with a Content-Length instead of chunked. ``reaper`` is
    told about the container and the socket dir before they exist, so that they are removed
    even if this process is killed before it can.

    ``on_exit`` is given the outcome (timings without ``remove``) as soon as the run ended
    and its output was delivered, before the container is removed: the agent answers the
    caller with it, so the removal is not on the caller's path (``docker run --rm`` waits
    for it). It is not called when the run is cancelled or fails agent-side: those are
    answered after the removal.

    Agent-side failures (bad image, daemon down, function never became ready) raise
    ``FnAgentError``; how the function itself ended is in the outcome's ``result``.
    """
    clock = _Clock()
    samples: list[Stat] = []
    call_id = uuid.uuid4().hex
    cold = request.format is Format.COLD
    socket_dir = None if cold else SocketDir.under(tempfile.gettempdir(), prefix="fnagent-run-")
    if reaper is not None:
        reaper.remove_labelled(f"{TASK_LABEL}={call_id}")
        if socket_dir is not None:
            reaper.remove_dir(socket_dir.path)
    env = dict(request.env)
    if not cold:
        env = run_environment(request, driver.iofs_mount)
    task = ContainerTask(
        id=call_id,
        image=request.image,
        command=request.command,
        env_vars=env,
        input=stdin if cold else None,
        timeout_s=request.timeout_s if cold else None,
        # In http-stream the function's stdout is its log, not its answer.
        logger=TaskLogger(stdout=stdout if cold else stderr, stderr=stderr),
        write_stat=samples.append if request.collect_stats else None,
        memory_bytes=request.memory_bytes,
        cpus_mcpus=request.cpus_mcpus,
        user=request.user,
        uds_path=socket_dir.shared if socket_dir else None,
        on_close=socket_dir.remove if socket_dir else None,
    )
    outcome = RunOutcome(result=RunResult(status=RunStatus.SUCCESS))
    try:
        if socket_dir is not None:
            socket_dir.make(request.iofs_size_bytes)
        async with await driver.create_cookie(task) as cookie:
            if isinstance(driver, DockerDriver):
                await driver.prepare_cookie(cookie, progress=progress)
            else:
                await driver.prepare_cookie(cookie)
            clock.lap("prepare")
            waiter = await cookie.run()
            clock.lap("start")
            if cold:
                outcome.result = await waiter.wait()
            else:
                assert socket_dir is not None
                outcome.result, outcome.http_status = await _call_hot(
                    waiter.wait,
                    cookie.cpu_wait_s,
                    socket_dir,
                    request,
                    call_id,
                    stdin,
                    stdin_bytes,
                    stdout,
                )
            clock.lap("run")
            if on_exit is not None:
                outcome.timings_ms = clock.total()
                outcome.stats = decimate(MAX_STAT_SAMPLES, samples)
                await on_exit(outcome)
    finally:
        if socket_dir is not None:
            socket_dir.remove()
    clock.lap("remove")
    outcome.timings_ms = clock.total()
    outcome.stats = decimate(MAX_STAT_SAMPLES, samples)
    return outcome


async def _call_hot(
    wait: Callable[[], object],
    cpu_wait_s: Callable[[], Awaitable[float | None]],
    socket_dir: SocketDir,
    request: RunRequest,
    call_id: str,
    stdin: AsyncIterable[bytes],
    stdin_bytes: int | None,
    stdout: LogSink,
) -> tuple[RunResult, int | None]:
    """Wait for the listener (its timeout extended by the time the host kept the container
    from a CPU, ``cpu_wait_s``: readiness.listen_within), make the one call (stdin streamed as
    its body, never held whole), and report how it went."""
    # Imported here: the cold format, whose start-up latency matters most, needs neither.
    from fnagent.agent.httpclient import (
        BodySizeMismatch,
        BodyTooLarge,
        ProtocolError,
        UnixHTTPConnection,
    )
    from fnagent.agent.readiness import listen_within

    exited = anyio.Event()
    ended: list[RunResult] = []

    async def watch_exit() -> None:
        result = await wait()  # type: ignore[misc]
        ended.append(result)
        exited.set()

    deadline = time.monotonic() + request.timeout_s
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_exit)
        try:
            listening = await listen_within(
                socket_dir.shared,
                socket_dir.pin,
                gave_up=exited.is_set,
                timeout_s=request.hot_start_timeout_s,
                cpu_wait_s=cpu_wait_s,
                name=call_id,
            )
        except TimeoutError:
            raise FunctionTimeoutError(
                f"the function did not listen on {LISTENER} within "
                f"{request.hot_start_timeout_s:g} s: {CONTRACT_HINT}"
            ) from None
        if not listening:
            raise ContainerGoneError(
                f"the function exited before it listened on {LISTENER} "
                f"({_describe(ended[0])}): {CONTRACT_HINT}"
            )
        headers = run_headers(request, call_id, remaining_s=deadline - time.monotonic())
        # The pinned listener, never lsnr.sock itself (fnagent.agent.sockdir).
        connection = UnixHTTPConnection(socket_dir.listener)
        try:
            with anyio.fail_after(request.timeout_s):
                response = await connection.request(
                    "POST",
                    "/call",
                    headers,
                    stdin,
                    content_length=stdin_bytes,
                    max_body_bytes=request.max_response_bytes,
                )
            status, reply = response.status, response.body
        except BodySizeMismatch as exc:  # the input file changed size while it was read
            tg.cancel_scope.cancel()
            raise InvalidInputError(f"reading the input: {exc}") from exc
        except TimeoutError:
            tg.cancel_scope.cancel()
            return timed_out(request.timeout_s), None
        except BodyTooLarge:
            tg.cancel_scope.cancel()
            limit = request.max_response_bytes
            too_large = FnAgentError(
                f"function response body too large: over {limit} bytes (FN_MAX_RESPONSE_SIZE)"
            )
            return RunResult(status=RunStatus.ERROR, error=too_large), None
        except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
            # A broken call usually means the container died (the OOM killer, an exit): its
            # own result says how, once Docker reports it, which may come a moment later.
            with anyio.move_on_after(EXIT_REPORT_GRACE_S):
                await exited.wait()
            tg.cancel_scope.cancel()
            if exited.is_set():
                return ended[0], None
            raise ContainerGoneError(f"error receiving function response: {exc}") from exc
        finally:
            connection.close()
        await deliver(stdout, reply)
        tg.cancel_scope.cancel()
    if 200 <= status < 300:
        return RunResult(status=RunStatus.SUCCESS, exit_code=0), status
    return RunResult(
        status=RunStatus.ERROR, error=FnAgentError(f"the function answered HTTP {status}")
    ), status


def run_environment(request: RunRequest, iofs_mount: str) -> dict[str, str]:
    """The http-stream container's env: ``--env``, then the contract's (as ``serve`` sets)."""
    return protocol.environment(
        listener=protocol.listener_address(iofs_mount),
        memory_mb=request.memory_bytes // protocol.MIB,
        config=request.env,
    )


def run_headers(request: RunRequest, call_id: str, *, remaining_s: float) -> list[tuple[str, str]]:
    """The call's headers: Content-Type (octet-stream unless ``--header`` sets it), the user's
    ``--header``s, then Fn-Call-Id and Fn-Deadline as ``serve`` sends them."""
    given = {"Content-Type": "application/octet-stream", **request.headers}
    return protocol.call_headers(given.items(), call_id, remaining_s)


def _describe(result: RunResult) -> str:
    return result.error.message if result.error else result.status.value


def exit_code(outcome: RunOutcome) -> int:
    """``fnagent run``'s exit code for ``outcome``: the function's own exit code; 124 timed out;
    130 cancelled; 1 an http-stream answer that is not 2xx; 125 fnagent failed."""
    result = outcome.result
    if result.status is RunStatus.TIMEOUT or isinstance(result.error, FunctionTimeoutError):
        return EXIT_TIMEOUT
    if result.status is RunStatus.CANCELLED:
        return EXIT_CANCELLED
    if result.exit_code is not None:
        return result.exit_code
    if outcome.http_status is not None and not 200 <= outcome.http_status < 300:
        return EXIT_HTTP_ERROR
    return 0 if result.ok else EXIT_AGENT_FAILURE


def failure_message(outcome: RunOutcome) -> str | None:
    """The one line ``fnagent run`` prints for a run that did not succeed, if any."""
    result = outcome.result
    if result.error is not None and result.status is not RunStatus.SUCCESS:
        return result.error.message
    return None


def outcome_document(outcome: RunOutcome) -> dict[str, Any]:
    """``fnagent run --json``'s document but stdout (``with_stdout``): how the run ended,
    timings and resource samples."""
    result = outcome.result
    return {
        "status": result.status.value,
        "exit_code": result.exit_code,
        "error": result.error.message if result.error else None,
        "http_status": outcome.http_status,
        "timings_ms": outcome.timings_ms,
        "stats": [
            {"timestamp": s.timestamp.isoformat(), "metrics": s.metrics} for s in outcome.stats
        ],
    }
