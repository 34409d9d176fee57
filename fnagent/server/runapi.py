"""``POST /v2/run``: ``fnagent run`` handed to this server's agent.

The run uses the server's Docker driver (its prefork pool and image cache) within the agent's
admission budget, so the command line process never loads docker-py. The wire format is
``fnagent.client.runframes``: the request body brings the run (one JSON frame) and then stdin,
streamed while the response streams stdout and stderr back and ends with the result frame.
The caller's ``CANCEL`` frame, or its going away, stops the run; the container is removed
before that result frame is sent. A run that ended by itself (its exit, a timeout, the OOM
killer) is answered as soon as its output was sent, and its container removed just after, off
the caller's path (``--json`` runs, whose document times the removal, wait for it); the
removal still happens when the agent stops meanwhile. The management token guards the route
when one is set (a run is a container of the caller's choosing, like deploying a fn).

Served as raw ASGI (like ``/invoke``) because both bodies stream at once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio

from drivers.docker import DockerDriver
from drivers.images import parse_image
from fnagent.agent.oneoff import (
    Format,
    RunOutcome,
    RunRequest,
    exit_code,
    failure_message,
    outcome_document,
    run_once,
)
from fnagent.client import runframes
from fnagent.config import AgentConfig
from fnagent.errors import (
    EXIT_AGENT_FAILURE,
    EXIT_CANCELLED,
    FnAgentError,
    InvalidInputError,
    MethodNotAllowedError,
    NotFoundError,
    UnauthorizedError,
    first_error,
)
from fnagent.server.invoke import ClientGone, Receive, Scope, Send
from fnagent.server.state import ServerState, bearer_matches, error_response_for
from fnagent.units import MIN_MEMORY_BYTES

logger = logging.getLogger(__name__)

RUN_PATH = "/v2/run"
CONTENT_TYPE = b"application/x-fnagent-run"
STDIN_BUFFER_FRAMES = 4
"""Stdin frames held ahead of the container: a fast sender waits beyond this."""
MAX_RUN_TIMEOUT_S = 3600.0
CANCELLED_MESSAGE = "interrupted; the container was removed"

_FIELDS = {
    "image",
    "command",
    "env",
    "memory_bytes",
    "cpus_mcpus",
    "timeout_s",
    "format",
    "user",
    "headers",
    "collect_stats",
}


def run_request(document: Any, config: AgentConfig) -> RunRequest:
    """The run a client asked for, checked as untrusted input (InvalidInputError naming the
    field); limits the client cannot choose come from this server's configuration."""
    if not isinstance(document, dict):
        raise InvalidInputError("the run must be a JSON object")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown run fields: {', '.join(unknown)}")
    image = document.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidInputError("image: a non-empty string is required")
    parse_image(image)
    command = document.get("command")
    if command is not None and not _strings(command):
        raise InvalidInputError("command: a list of strings or null")
    env, headers = document.get("env", {}), document.get("headers", {})
    for name, value in (("env", env), ("headers", headers)):
        if not isinstance(value, dict) or not _strings([*value, *value.values()]):
            raise InvalidInputError(f"{name}: an object of strings")
    memory = document.get("memory_bytes", 0)
    if not _int(memory) or (memory != 0 and memory < MIN_MEMORY_BYTES):
        raise InvalidInputError("memory_bytes: 0 (no limit) or at least 6 MiB")
    cpus = document.get("cpus_mcpus", 0)
    if not _int(cpus) or cpus < 0:
        raise InvalidInputError("cpus_mcpus: an integer >= 0")
    timeout = document.get("timeout_s", 30.0)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_RUN_TIMEOUT_S
    ):
        raise InvalidInputError(f"timeout_s: more than 0 and at most {MAX_RUN_TIMEOUT_S:g}")
    fmt = document.get("format", "cold")
    if fmt not in {f.value for f in Format}:
        raise InvalidInputError("format: 'cold' or 'http-stream'")
    user = document.get("user", "1000:1000")
    if user is not None and not isinstance(user, str):
        raise InvalidInputError("user: a string (uid:gid) or null for the image's own")
    collect_stats = document.get("collect_stats", False)
    if not isinstance(collect_stats, bool):
        raise InvalidInputError("collect_stats: a boolean")
    return RunRequest(
        image=image,
        command=command,
        env=env,
        memory_bytes=memory,
        cpus_mcpus=cpus,
        timeout_s=float(timeout),
        format=Format(fmt),
        user=user,
        headers=headers,
        collect_stats=collect_stats,
        hot_start_timeout_s=config.hot_start_timeout_ms / 1000,
        max_response_bytes=config.max_response_size_bytes,
        iofs_size_bytes=config.iofs_size_bytes,
    )


def _strings(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _FrameSink:
    """A container output stream as response frames; ``write`` returns an awaitable, so a
    slow client slows the container (``drivers.deliver``) instead of filling memory."""

    def __init__(self, kind: bytes, send: Send, lock: anyio.Lock) -> None:
        self.kind, self._send, self._lock = kind, send, lock
        self.written = 0

    async def write(self, data: bytes) -> None:
        self.written += len(data)
        for frame in runframes.frames_of(self.kind, data):
            async with self._lock:
                await self._send({"type": "http.response.body", "body": frame, "more_body": True})


async def serve_run(state: ServerState, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /v2/run``: errors before the run starts are JSON with their status;
    once the 200 head is sent, everything else (failures too) is in the result frame."""
    reader = runframes.FrameReader()
    pending: list[tuple[bytes, bytes]] = []
    try:
        if scope["method"] != "POST":
            raise MethodNotAllowedError(allowed=("POST",))
        token = state.config.token
        if token and not bearer_matches(scope["headers"], (token.encode(),)):
            raise UnauthorizedError()
        request = run_request(await _first_frame(receive, reader, pending), state.agent.config)
        driver = state.agent.driver
        if not isinstance(driver, DockerDriver):
            raise NotFoundError("one-off runs need the Docker driver")
    except ClientGone:
        return
    except FnAgentError as exc:
        await error_response_for(exc)(scope, receive, send)
        return
    try:
        async with state.agent.reserved(request.memory_bytes, request.cpus_mcpus):
            await _run(driver, request, reader, pending, receive, send)
    except FnAgentError as exc:  # no room: nothing was sent yet
        await error_response_for(exc)(scope, receive, send)


async def _first_frame(
    receive: Receive, reader: runframes.FrameReader, pending: list[tuple[bytes, bytes]]
) -> Any:
    """The ``REQUEST`` frame's JSON, read with ``reader`` held to MAX_REQUEST_BYTES; then the
    reader takes frames up to MAX_PAYLOAD_BYTES, and the whole ones that came with the run
    are left in ``pending`` (stdin may come in the same body chunk)."""
    reader.max_payload = runframes.MAX_REQUEST_BYTES
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone()
        try:
            frames = reader.feed(message.get("body", b""), max_frames=1)
            if frames:
                reader.max_payload = runframes.MAX_PAYLOAD_BYTES
                pending.extend(reader.feed(b""))
        except runframes.FrameError as exc:
            raise InvalidInputError(f"bad run request: {exc}") from None
        if frames:
            ((kind, payload),) = frames
            if kind != runframes.REQUEST:
                raise InvalidInputError("bad run request: it must start with the run")
            try:
                return json.loads(payload)
            except ValueError:
                raise InvalidInputError("bad run request: the run is not JSON") from None
        if not message.get("more_body", False):
            raise InvalidInputError("bad run request: the body ended before the run")


async def _run(
    driver: DockerDriver,
    request: RunRequest,
    reader: runframes.FrameReader,
    pending: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")],
        }
    )
    lock = anyio.Lock()
    stdout = _FrameSink(runframes.STDOUT, send, lock)
    stderr = _FrameSink(runframes.STDERR, send, lock)
    stdin_send, stdin_receive = anyio.create_memory_object_stream[bytes](STDIN_BUFFER_FRAMES)
    answered = False
    outcome: RunOutcome | None = None
    failure: str | None = None
    with anyio.CancelScope() as run_scope:
        input_scope = anyio.CancelScope()

        async def take_input() -> None:
            """Stdin into the run until STDIN_END or the body's end; then keep listening: a
            CANCEL frame, a broken frame or the caller going away cancels the run."""
            ended = False
            with input_scope:
                async with stdin_send:
                    frames = list(pending)
                    while True:
                        for kind, payload in frames:
                            if kind == runframes.STDIN and not ended:
                                await stdin_send.send(payload)
                            elif kind == runframes.STDIN_END and not ended:
                                ended = True
                                await stdin_send.aclose()
                            else:  # CANCEL, or anything out of place
                                run_scope.cancel()
                                return
                        message = await receive()
                        if message["type"] != "http.request":
                            run_scope.cancel()
                            return
                        try:
                            frames = reader.feed(message.get("body", b""))
                        except runframes.FrameError:
                            run_scope.cancel()
                            return
                        if not message.get("more_body", False):
                            ended = True
                            await stdin_send.aclose()

        async def stdin() -> AsyncIterator[bytes]:
            async with stdin_receive:
                async for chunk in stdin_receive:
                    yield chunk

        async def answer(outcome: RunOutcome) -> None:
            """The run ended: answer now; its container is removed after (run_once). The
            caller leaving from here on cancels nothing."""
            nonlocal answered
            input_scope.cancel()
            answered = True
            await _send_result(send, lock, _result(outcome))

        async with anyio.create_task_group() as tg:
            tg.start_soon(take_input)
            try:
                outcome = await run_once(
                    driver,
                    request,
                    stdin=stdin(),
                    stdout=stdout,
                    stderr=stderr,
                    # --json reports the removal's time too, so it waits for it.
                    on_exit=None if request.collect_stats else answer,
                )
            except Exception as exc:  # agent-side failures; task groups wrap them
                cause = first_error(exc)
                if isinstance(cause, FnAgentError):
                    failure = cause.message
                else:
                    logger.exception("one-off run failed", extra={"image": request.image})
                    failure = f"unexpected error: {type(cause).__name__}: {cause}"
            tg.cancel_scope.cancel()
    if answered:
        return
    if outcome is not None:
        result = _result(outcome)
    else:
        message = CANCELLED_MESSAGE if failure is None else failure
        code = EXIT_CANCELLED if failure is None else EXIT_AGENT_FAILURE
        result = {"exit": code, "message": message, "document": runframes.failure_document(message)}
    await _send_result(send, lock, result)


def _result(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "exit": exit_code(outcome),
        "message": failure_message(outcome),
        "document": outcome_document(outcome),
    }


async def _send_result(send: Send, lock: anyio.Lock, result: dict[str, Any]) -> None:
    """The last frame. A caller gone meanwhile: the server drops what is sent after a
    disconnect."""
    async with lock:
        body = runframes.json_frame(runframes.RESULT, result)
        await send({"type": "http.response.body", "body": body, "more_body": False})
