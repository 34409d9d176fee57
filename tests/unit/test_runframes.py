"""The wire format of `fnagent run` handed to an agent, and the agent's check of a run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fnagent.client import runframes
from fnagent.config import AgentConfig
from fnagent.errors import InvalidInputError
from fnagent.server.app import ServerConfig, ServerState
from fnagent.server.metrics import Metrics
from fnagent.server.runapi import RUN_PATH, run_request
from tests.apitest import request


def test_frames_come_out_whole_however_the_bytes_are_cut() -> None:
    stream = (
        runframes.json_frame(runframes.REQUEST, {"image": "busybox"})
        + runframes.frame(runframes.STDIN, b"x" * 70_000)
        + runframes.frame(runframes.STDIN_END)
    )
    for step in (1, 7, 4096, len(stream)):
        reader = runframes.FrameReader()
        frames = []
        for i in range(0, len(stream), step):
            frames += reader.feed(stream[i : i + step])
        assert [kind for kind, _ in frames] == [
            runframes.REQUEST,
            runframes.STDIN,
            runframes.STDIN_END,
        ]
        assert json.loads(frames[0][1]) == {"image": "busybox"}
        assert frames[1][1] == b"x" * 70_000 and frames[2][1] == b""
        assert reader.pending == 0


def test_output_is_cut_into_frames_no_larger_than_the_limit() -> None:
    data = bytes(range(256)) * (runframes.MAX_PAYLOAD_BYTES // 128 + 3)
    frames = runframes.frames_of(runframes.STDOUT, data)
    reader = runframes.FrameReader()
    payloads = [payload for frame in frames for _, payload in reader.feed(frame)]
    assert len(frames) == 3 and b"".join(payloads) == data
    assert runframes.frames_of(runframes.STDOUT, b"") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Z\x00\x00\x00\x00", "unknown frame kind"),
        (runframes.STDIN + (2**31).to_bytes(4, "big"), "over the"),
    ],
)
def test_a_broken_stream_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(runframes.FrameError, match=message):
        runframes.FrameReader().feed(data)


def test_stdout_goes_into_the_json_document_as_text_or_base64() -> None:
    assert runframes.with_stdout({"status": "success"}, b"hi\n")["stdout"] == "hi\n"
    binary = runframes.with_stdout({}, b"\xff\x00")
    assert binary == {"stdout_base64": "/wA="}


def good(**changes: Any) -> dict[str, Any]:
    return {"image": "fnagent/busybox", "command": ["true"], **changes}


def test_a_run_takes_the_clients_choices_and_the_servers_limits() -> None:
    config = AgentConfig(hot_start_timeout_ms=7000)
    request = run_request(
        good(env={"A": "1"}, memory_bytes=64 * 2**20, timeout_s=2, format="http-stream"),
        config,
    )
    assert request.image == "fnagent/busybox" and request.env == {"A": "1"}
    assert request.memory_bytes == 64 * 2**20 and request.timeout_s == 2.0
    assert request.format.value == "http-stream"
    assert request.hot_start_timeout_s == 7.0
    assert request.max_response_bytes == config.max_response_size_bytes


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        (good(privileged=True), "unknown run fields: privileged"),
        ({"command": ["true"]}, "image"),
        (good(image="Not An Image"), "invalid image reference"),
        (good(command="true"), "command"),
        (good(env={"A": 1}), "env"),
        (good(headers=["x"]), "headers"),
        (good(memory_bytes=1024), "memory_bytes"),
        (good(memory_bytes=True), "memory_bytes"),
        (good(cpus_mcpus=-1), "cpus_mcpus"),
        (good(timeout_s=0), "timeout_s"),
        (good(timeout_s=float("nan")), "timeout_s"),
        (good(timeout_s=10**9), "timeout_s"),
        (good(format="smoke"), "format"),
        (good(user=0), "user"),
        (good(collect_stats="yes"), "collect_stats"),
    ],
)
def test_a_bad_run_is_refused_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        run_request(document, AgentConfig())


class RunlessAgent:
    """An agent without the Docker driver: the route checks the run, then answers 404."""

    config = AgentConfig()
    driver = object()


def run_state(**config: Any) -> ServerState:
    return ServerState(
        config=ServerConfig(**config),
        store=None,  # type: ignore[arg-type]  # the run route never reads the store
        agent=RunlessAgent(),  # type: ignore[arg-type]
        metrics=Metrics(lambda: {}),
    )


GOOD_BODY = runframes.json_frame(runframes.REQUEST, good())


@pytest.mark.parametrize(
    ("method", "body", "headers", "config", "status", "message"),
    [
        ("GET", b"", [], {}, 405, "Method not allowed"),
        ("POST", GOOD_BODY, [], {"token": "t0k"}, 401, "Invalid authentication"),
        ("POST", b"Z\x00\x00\x00\x00", [], {}, 400, "unknown frame kind"),
        ("POST", runframes.frame(runframes.STDIN, b"x"), [], {}, 400, "must start with the run"),
        ("POST", runframes.frame(runframes.REQUEST, b"{"), [], {}, 400, "not JSON"),
        ("POST", b"R\x00\x00", [], {}, 400, "ended before the run"),
        ("POST", runframes.json_frame(runframes.REQUEST, {}), [], {}, 400, "image"),
        ("POST", GOOD_BODY, [], {}, 404, "need the Docker driver"),
        # Stdin cut mid-frame in the run's own body chunk is stdin, not a broken request.
        (
            "POST",
            GOOD_BODY + runframes.frame(runframes.STDIN, b"abc")[:6],
            [],
            {},
            404,
            "need the Docker driver",
        ),
        (
            "POST",
            runframes.frame(runframes.REQUEST, b"x" * (runframes.MAX_REQUEST_BYTES + 1)),
            [],
            {},
            400,
            "over the",
        ),
        (
            "POST",
            GOOD_BODY,
            [(b"authorization", b"Bearer t0k")],
            {"token": "t0k"},
            404,
            "need the Docker driver",
        ),
    ],
)
@pytest.mark.anyio
async def test_the_run_route_answers_json_errors_before_any_run(
    method: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    config: dict[str, Any],
    status: int,
    message: str,
) -> None:
    got, _, answer = await request(run_state(**config), method, RUN_PATH, body, headers)
    assert got == status
    assert message in json.loads(answer)["message"]
