"""Per-call logs on a real dockerd: each call of one hot container gets its own lines (the FDK
frames them; a raw function is cut by time), and a container that fails to start leaves its
last stderr lines in the caller's answer and the call's log. Every test runs with both ways
the output can travel (FN_LOG_PIPE): the container's own FIFOs, and Docker's attach."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker import DockerDriver
from fnagent.agent import Agent, CallResult
from fnagent.agent.calllogs import FRAME_NAME, TRUNCATED
from fnagent.client import ApiClient, ApiError
from fnagent.config import AgentConfig
from fnagent.models import Call, CallRequest, Fn
from fnagent.server.invoke import error_answer
from tests.helpers import wait_for
from tests.system.helpers import FN_HELLO, FN_TEST, deploy, invoke, require_image
from tests.system.server import Server

pytestmark = pytest.mark.anyio
CALLS = 12


def make_fn(image: str = FN_TEST, **fields: Any) -> Fn:
    values: dict[str, Any] = dict(
        id="fn-logs", name="fnlogs", app_id="app", app_name="app", image=image, memory_mb=64
    )
    return Fn(**{**values, **fields})


def call(fn: Fn, request: dict[str, Any] | None = None) -> Call:
    return Call(fn=fn, request=CallRequest(body=json.dumps(request or {}).encode()))


@pytest.fixture(params=["direct", "docker"])
def log_pipe(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cli_env(cli_env: dict[str, str], log_pipe: str) -> dict[str, str]:
    return {**cli_env, "FN_LOG_PIPE": log_pipe}


@pytest.fixture
async def agent(
    instance_id: str, docker_api: docker.APIClient, tmp_path: Path, log_pipe: str
) -> AsyncIterator[Agent]:
    require_image(docker_api, FN_TEST)
    require_image(docker_api, FN_HELLO)
    config = AgentConfig(
        instance_id=instance_id,
        iofs_path=str(tmp_path / "iofs"),
        hot_start_timeout_ms=5000,
        log_pipe=log_pipe,
    )
    async with DockerDriver(config.docker_config()) as driver:
        async with Agent(driver, config) as made:
            yield made


def error_body(result: object) -> dict[str, str]:
    error = getattr(result, "error", None)
    assert error is not None, result
    _, body = error_answer(error)
    document: dict[str, str] = json.loads(body)
    return document


async def test_each_fdk_call_s_log_holds_only_its_own_lines(agent: Agent) -> None:
    # FDK_DEBUG makes the Python FDK print lines naming each call's id while it runs.
    fn = make_fn(FN_HELLO, config={"FDK_DEBUG": "1"})
    results = [await agent.submit(call(fn, {"name": f"n{i}"})) for i in range(CALLS)]
    assert [r.status for r in results] == [200] * CALLS
    assert {r.start for r in results[1:]} <= {"warm", "thawed"}, "one hot container"
    ids = [r.call_id for r in results]
    for result in results:
        assert f"{result.call_id} - fdk - DEBUG - request execution completed".encode() in (
            result.logs
        ), result.logs
        others = [i for i in ids if i != result.call_id]
        assert not any(other.encode() in result.logs for other in others), result.logs
        assert FRAME_NAME.encode() not in result.logs, "frame lines are not logged"
        assert b"starting infinite loop" not in result.logs, "start-up output is nobody's"


async def test_each_framed_call_s_log_holds_only_its_own_lines_on_one_container(
    agent: Agent,
) -> None:
    # fn-test frames nothing itself: each call asks it to print the frame an FDK prints,
    # then a line on each stream.
    fn = make_fn()
    results = []
    for i in range(CALLS):
        made = call(fn)
        body = {
            "stderr": f"\n{FRAME_NAME}={made.id}\n\nerr-{i}",
            "stdout": f"\n{FRAME_NAME}={made.id}\n\nout-{i}",
        }
        request = CallRequest(body=json.dumps(body).encode())
        results.append(await agent.submit(Call(fn=fn, id=made.id, request=request)))
    assert [r.status for r in results] == [200] * CALLS
    assert {r.start for r in results[1:]} <= {"warm", "thawed"}, "one hot container"
    assert_own_lines(results)


def assert_own_lines(results: list[CallResult]) -> None:
    """Each call's log holds its two lines only. (A container's first call may miss lines
    that Docker hands over later than the settle waits: whether it frames is yet unknown.)"""
    for i, result in enumerate(results):
        mine = [f"err-{i}".encode(), f"out-{i}".encode()]
        if i == 0:
            assert set(result.logs.splitlines()) <= set(mine), result.logs
        else:
            assert sorted(result.logs.splitlines()) == mine, (i, result.logs)


async def test_each_unframed_call_s_log_holds_only_its_own_lines(agent: Agent) -> None:
    # A raw function does not frame: its lines are cut by the time they arrive.
    fn = make_fn()
    results = [
        await agent.submit(call(fn, {"stdout": f"out-{i}", "stderr": f"err-{i}"}))
        for i in range(CALLS)
    ]
    assert [r.status for r in results] == [200] * CALLS
    assert {r.start for r in results[1:]} <= {"warm", "thawed"}, "one hot container"
    # By arrival time, a line Docker delivers later than the settle lands in the next call's
    # log: rare (seen under a load average of 15 on 2 cores), never for a framed container
    # (the tests above), so only most calls are asserted exact here.
    own_only = complete = 0
    for i, result in enumerate(results):
        mine = [f"err-{i}".encode(), f"out-{i}".encode()]
        own_only += set(result.logs.splitlines()) <= set(mine)
        complete += sorted(result.logs.splitlines()) == mine
    logs = [r.logs for r in results]
    assert own_only >= CALLS - 2 and complete >= CALLS // 2, logs
    every = [line for log in logs for line in log.splitlines()]
    assert len(every) == len(set(every)), "no line in two logs"


async def test_a_call_s_log_is_capped_with_a_truncation_line(agent: Agent) -> None:
    agent.config = replace(agent.config, max_log_size_bytes=4096)
    fn = make_fn()
    lines = "".join(f"{i:05d}{'y' * 94}\n" for i in range(100))  # 10,000 bytes
    results = []
    for _ in range(3):
        made = call(fn)
        # Framed (as an FDK does), so that lines Docker hands over late are still the call's.
        body = {"stdout": f"\n{FRAME_NAME}={made.id}\n\n{lines}"}
        request = CallRequest(body=json.dumps(body).encode())
        results.append(await agent.submit(Call(fn=fn, id=made.id, request=request)))
    assert [r.status for r in results] == [200] * 3
    # The first call's lines may be taken for start-up output (whether the container frames
    # is known at its end): the next ones on the same container are whole.
    for result in results[1:]:
        assert result.logs == lines.encode()[:4096] + TRUNCATED % 4096, result.logs[-200:]


async def test_exit_before_listening_answers_502_with_the_stderr_lines(agent: Agent) -> None:
    result = await agent.submit(call(make_fn(config={"TEST_EXIT_BEFORE_LISTEN": "7"})))
    body = error_body(result)
    assert result.status == 502
    assert body["message"].startswith(
        "Container failed to initialize: exited with code 7 before listening; "
    )
    assert body["stderr"] == "exiting before listen\n"
    assert result.logs == b"exiting before listen\n"


async def test_a_start_timeout_answers_504_with_a_stderr_field(agent: Agent) -> None:
    agent.config = replace(agent.config, hot_start_timeout_ms=1000)
    fn = make_fn(timeout_s=60, config={"TEST_DELAY_LISTEN_MS": "20000"})
    result = await agent.submit(call(fn))
    body = error_body(result)
    assert result.status == 504
    assert "Container initialization timed out after 1 s" in body["message"]
    assert body["stderr"] == "" and result.logs == b""


# -- through `fnagent serve` -------------------------------------------------------------------


def test_follow_shows_the_lines_of_calls_made_while_following(server: Server) -> None:
    fn = deploy(server, fn="followed")
    events: list[tuple[str, dict[str, Any]]] = []

    def follow() -> None:
        try:
            for item in ApiClient(server.url).follow_logs(str(fn["id"])):
                events.append(item)
        except ApiError:
            pass  # the server stopped at the end of the test

    threading.Thread(target=follow, daemon=True).start()
    # The stream is open once the follower is subscribed: a first call's lines reach it.
    wait_for(
        lambda: (
            invoke(server, fn, {"stdout": "ping"}).status == 200
            and any(e[1].get("line") == "ping" for e in events)
        ),
        "the follower to see a call's line",
        timeout_s=60,
    )
    answers = [invoke(server, fn, {"stdout": f"out-{i}", "stderr": f"err-{i}"}) for i in range(3)]
    assert [a.status for a in answers] == [200] * 3
    call_ids = [a.headers["fn-call-id"] for a in answers]
    wanted = {
        (call_id, stream, f"{stream[3:]}-{i}")
        for i, call_id in enumerate(call_ids)
        for stream in ("stdout", "stderr")
    }

    def seen() -> set[tuple[Any, Any, Any]]:
        return {(d.get("call_id"), d.get("stream"), d.get("line")) for _, d in events}

    # Each line tagged with its call: a line can only reach a follower with the wrong call if
    # it came after its call's settle (then it is nobody's, call_id None).
    wait_for(
        lambda: {w[2] for w in wanted} <= {s[2] for s in seen()},
        "every line followed",
        timeout_s=30,
    )
    for call_id, stream, line in seen():
        if line in {w[2] for w in wanted} and call_id is not None:
            assert (call_id, stream, line) in wanted, events


def test_follow_without_follow_true_is_400_and_an_unknown_fn_404(server: Server) -> None:
    fn = deploy(server, fn="notfollowed")
    answer = server.request("GET", f"/v2/fns/{fn['id']}/logs")
    assert answer.status == 400 and "follow=true" in answer.message
    assert server.request("GET", "/v2/fns/nope/logs?follow=true").status == 404


def test_a_start_failure_answers_502_through_serve_with_its_stderr(server: Server) -> None:
    fn = deploy(server, fn="crashes", config={"TEST_EXIT_BEFORE_LISTEN": "7"})
    answer = invoke(server, fn, {})
    assert answer.status == 502
    body = answer.json()
    assert body["message"].startswith("Container failed to initialize: exited with code 7")
    assert body["stderr"] == "exiting before listen\n"
