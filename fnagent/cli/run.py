"""The body of ``fnagent run``: flags -> RunRequest -> one run -> exit code and output."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from fnagent.client.runframes import failure_document, with_stdout
from fnagent.errors import (
    EXIT_AGENT_FAILURE,
    EXIT_CANCELLED,
    FnAgentError,
    first_error,
)
from fnagent.units import parse_cpus, parse_duration, parse_env, parse_memory

if TYPE_CHECKING:
    # anyio and what follows load only for a run in this process (not handed to an agent).
    import anyio

    from drivers.docker import OrphanReaper
    from fnagent.agent.oneoff import RunRequest
    from fnagent.config import AgentConfig


def _headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise FnAgentError(f"invalid header {item!r}: use 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def run_command(
    *,
    image: str,
    command: list[str] | None,
    memory: str,
    cpus: str | None,
    timeout: str,
    env: tuple[str, ...],
    fmt: str,
    headers: tuple[str, ...],
    pull: str,
    user: str,
    as_json: bool,
    prefork: int | None = None,
    standalone: bool = False,
) -> int:
    """Run once and return the process exit code; every failure is one line on stderr.

    When an agent answers at FN_API_URL, the run is handed to it (``fnagent.cli.handoff``)
    unless ``standalone`` is set or a flag configures this process's own driver (``prefork``,
    ``pull`` other than "missing"). Otherwise the run happens here: ``prefork`` N starts a
    pool of N slots for this run and waits (up to the hot start timeout) for one, so the
    function joins a prefork namespace; None keeps the environment's FN_EXPERIMENTAL_PREFORK_*
    settings.
    """
    _claim_closed_stdin()
    reaper: OrphanReaper | None = None
    try:
        from drivers.images import parse_image

        parse_image(image)
        spec: dict[str, Any] = {
            "image": image,
            "command": command,
            "env": parse_env(env, dict(os.environ)),
            "memory_bytes": parse_memory(memory),
            "cpus_mcpus": parse_cpus(cpus) if cpus else 0,
            "timeout_s": parse_duration(timeout),
            "format": fmt,
            "user": None if user == "image" else user,
            "headers": _headers(headers),
            "collect_stats": as_json,
        }
        if not standalone and prefork is None and pull == "missing":
            from fnagent.cli.handoff import run_on_agent

            handed = run_on_agent(spec, as_json=as_json, environ=os.environ)
            if handed is not None:
                return handed

        from dataclasses import replace

        import anyio

        from drivers.docker import OrphanReaper, PullPolicy
        from fnagent.agent.oneoff import Format, RunRequest
        from fnagent.config import LOG_PIPE_DOCKER, AgentConfig

        config = AgentConfig.from_env(os.environ)
        # A one-off run's output stays attached (the wrapper of FN_LOG_PIPE=direct saves CPU
        # per call on hot containers, nothing on one call), so it needs no static shell.
        config = replace(config, pull_policy=PullPolicy(pull), log_pipe=LOG_PIPE_DOCKER)
        config = config.with_prefork(prefork)
        request = RunRequest(
            **{**spec, "format": Format(fmt)},
            hot_start_timeout_s=config.hot_start_timeout_ms / 1000,
            max_response_bytes=config.max_response_size_bytes,
            iofs_size_bytes=config.iofs_size_bytes,
        )
        # Forked before the event loop starts any thread; a SIGKILL of this process then
        # still ends with the run's containers removed.
        reaper = OrphanReaper.start(config.docker_config().docker_host)
        return anyio.run(_run, request, config, as_json, reaper)
    except KeyboardInterrupt:
        print("fnagent: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # the promise is one line, never a traceback
        cause = first_error(exc)
        if isinstance(cause, FnAgentError):
            message = cause.message
        else:
            message = f"unexpected error: {type(cause).__name__}: {cause}"
        print(f"fnagent: {message}", file=sys.stderr)
        if as_json:
            print(json.dumps(failure_document(message), indent=2))
        return EXIT_AGENT_FAILURE
    finally:
        if reaper is not None:
            reaper.done()


def _claim_closed_stdin() -> None:
    """A closed stdin (``<&-``) is an empty input. Left closed, fd 0 would be the lowest free
    descriptor and the event loop's own (its epoll or wake-up socket) would take it, to be read
    as the function's input until the timeout."""
    try:
        os.fstat(0)
    except OSError:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 0:
            os.dup2(fd, 0)
            os.close(fd)


async def _run(
    request: RunRequest, config: AgentConfig, as_json: bool, reaper: OrphanReaper
) -> int:
    import anyio

    from drivers.docker import DockerDriver
    from fnagent.agent.oneoff import exit_code, failure_message, outcome_document, run_once
    from fnagent.cli.progress import PullProgressBar
    from fnagent.cli.stdio import FlushingSink, read_fd, regular_file_bytes

    bar = PullProgressBar(request.image, sys.stderr) if sys.stderr.isatty() else None
    captured = io.BytesIO()
    stdout = captured if as_json else FlushingSink(sys.stdout.buffer)
    stderr = FlushingSink(sys.stderr.buffer)
    driver = DockerDriver(config.docker_config())
    if driver.pool is not None:
        from drivers.docker.pool import POOL_LABEL

        reaper.remove_labelled(f"{POOL_LABEL}={driver.pool.pool_id}")
    async with driver:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_signal, scope)
                try:
                    if driver.pool is not None:
                        # A single run gains from the pool only once a slot is up; past the
                        # timeout it falls back to the bridge.
                        with anyio.move_on_after(request.hot_start_timeout_s):
                            await driver.pool.wait_free()
                    outcome = await run_once(
                        driver,
                        request,
                        stdin=read_fd(0),
                        stdin_bytes=regular_file_bytes(0),
                        reaper=reaper,
                        stdout=stdout,
                        stderr=stderr,
                        progress=bar,
                    )
                finally:
                    if bar is not None:
                        bar.finish()
                tg.cancel_scope.cancel()
        if scope.cancelled_caught:
            print("fnagent: interrupted; the container was removed", file=sys.stderr)
            return EXIT_CANCELLED
    if as_json:
        document = with_stdout(outcome_document(outcome), captured.getvalue())
        print(json.dumps(document, indent=2))
    elif (message := failure_message(outcome)) is not None:
        print(f"fnagent: {message}", file=sys.stderr)
    return exit_code(outcome)


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
