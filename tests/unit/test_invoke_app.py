"""InvokeApp, the raw-ASGI hot path of ``fnagent serve``: routing, errors, the answer, and a
caller that goes away cancelling its call; the agent is a stub."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from fnagent.agent import CallResult
from fnagent.errors import (
    FnAgentError,
    FunctionTimeoutError,
    ServerBusyError,
    TooManyRequestsError,
)
from fnagent.models import Call, Fn
from fnagent.server.app import ServerConfig, ServerState
from fnagent.server.metrics import Metrics
from tests.apitest import request

pytestmark = pytest.mark.anyio


class StubAgent:
    def __init__(self, hang: bool = False, error: FnAgentError | None = None) -> None:
        self.hang = hang
        self.error = error
        self.calls: list[Call] = []
        self.cancelled = False

    async def submit(self, call: Call) -> CallResult:
        self.calls.append(call)
        if self.hang:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cancelled = True
                raise
        if self.error is not None:  # what the agent returns for a failed call
            return CallResult(call_id=call.id, status=self.error.status, error=self.error)
        return CallResult(
            call_id=call.id,
            status=200,
            headers=[("Content-Type", "text/plain"), ("Content-Length", "999")],
            body=b"hello " + call.request.body,
        )


def make_state(agent: StubAgent, **config: Any) -> ServerState:
    state = ServerState(
        config=ServerConfig(**config),
        store=None,  # type: ignore[arg-type]  # InvokeApp reads the cache, never the store
        agent=agent,  # type: ignore[arg-type]  # a stub, not an Agent
        metrics=Metrics(lambda: {}),
    )
    state.cache["fn:f1"] = Fn(id="f1", name="hello", app_id="a1", app_name="app", image="img")
    state.cache["t:app:/hook"] = state.cache["fn:f1"]
    return state


async def test_invoke_answers_with_the_functions_response_and_a_call_id() -> None:
    agent = StubAgent()
    status, headers, body = await request(make_state(agent), "POST", "/invoke/f1", b"you")
    assert (status, body) == (200, b"hello you")
    assert headers[b"content-length"] == b"9" and headers[b"content-type"] == b"text/plain"
    assert headers[b"fn-call-id"].decode() == agent.calls[0].id
    assert agent.calls[0].request.url == "http://127.0.0.1:8080/invoke/f1"


async def test_the_server_renders_a_failed_call_as_json_with_retry_after_on_503() -> None:
    agent = StubAgent(error=ServerBusyError())
    status, headers, body = await request(make_state(agent), "POST", "/invoke/f1")
    assert (status, json.loads(body)) == (503, {"message": "Timed out - server too busy"})
    assert headers[b"retry-after"] == b"15" and headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"fn-call-id"].decode() == agent.calls[0].id
    agent = StubAgent(error=FunctionTimeoutError("Timed out"))
    status, headers, body = await request(make_state(agent), "PUT", "/t/app/hook")
    assert (status, json.loads(body)) == (504, {"message": "Timed out"})
    assert b"retry-after" not in headers


async def test_a_call_the_fns_max_concurrency_turned_away_is_429_with_its_retry_after() -> None:
    agent = StubAgent(error=TooManyRequestsError(retry_after_s=7))
    status, headers, body = await request(make_state(agent), "POST", "/invoke/f1")
    assert (status, json.loads(body)) == (429, {"message": "Too many requests submitted"})
    assert headers[b"retry-after"] == b"7" and headers[b"content-type"] == b"application/json"
    assert headers[b"fn-call-id"].decode() == agent.calls[0].id


async def test_trigger_calls_carry_the_gateway_flag_and_take_any_method() -> None:
    agent = StubAgent()
    status, _, _ = await request(make_state(agent), "PUT", "/t/app/hook")
    assert status == 200 and agent.calls[0].trigger and agent.calls[0].request.method == "PUT"


async def test_wrong_method_unknown_fn_and_other_paths() -> None:
    state = make_state(StubAgent())
    status, headers, body = await request(state, "GET", "/invoke/f1")
    assert (status, headers[b"allow"]) == (405, b"POST")
    assert json.loads(body) == {"message": "Method not allowed"}
    status, _, body = await request(state, "POST", "/invoke/f1/more")
    assert (status, json.loads(body)) == (404, {"message": "Path not found"})


async def test_body_over_the_limit_is_413_before_and_while_reading() -> None:
    state = make_state(StubAgent(), max_request_bytes=4)
    declared = [(b"content-length", b"5")]
    status, _, _ = await request(state, "POST", "/invoke/f1", b"12345", declared)
    assert status == 413
    status, _, body = await request(state, "POST", "/invoke/f1", b"12345")
    assert status == 413 and json.loads(body)["message"].startswith("Request body too large")


async def test_token_guards_invoke_when_asked() -> None:
    state = make_state(StubAgent(), token="s3cret", token_on_invoke=True)
    assert (await request(state, "POST", "/invoke/f1"))[0] == 401
    good = [(b"authorization", b"Bearer s3cret")]
    assert (await request(state, "POST", "/invoke/f1", headers=good))[0] == 200


async def test_a_caller_that_goes_away_cancels_its_call() -> None:
    agent = StubAgent(hang=True)
    status, _, _ = await request(make_state(agent), "POST", "/invoke/f1", disconnect=True)
    assert status == 0, "nobody to answer"
    assert agent.cancelled


async def test_a_checked_token_never_reaches_the_function() -> None:
    agent = StubAgent()
    state = make_state(agent, token="s3cret", token_on_invoke=True)
    good = [(b"authorization", b"Bearer s3cret"), (b"x-other", b"1")]
    assert (await request(state, "POST", "/invoke/f1", headers=good))[0] == 200
    assert (await request(state, "GET", "/t/app/hook", headers=good))[0] == 200
    for call in agent.calls:
        names = [name.lower() for name, _ in call.request.headers]
        assert "authorization" not in names and "x-other" in names


async def test_an_unchecked_authorization_header_is_the_functions() -> None:
    agent = StubAgent()
    state = make_state(agent, token="s3cret")  # management only: invoke checks nothing
    mine = [(b"authorization", b"Basic dXNlcjpwdw==")]
    assert (await request(state, "POST", "/invoke/f1", headers=mine))[0] == 200
    assert ("authorization", "Basic dXNlcjpwdw==") in agent.calls[0].request.headers


async def test_an_invoke_token_lets_callers_invoke_without_the_management_token() -> None:
    agent = StubAgent()
    state = make_state(agent, token="admin", invoke_token="caller")
    assert (await request(state, "POST", "/invoke/f1"))[0] == 401
    for token in (b"caller", b"admin"):
        given = [(b"authorization", b"Bearer " + token)]
        assert (await request(state, "POST", "/invoke/f1", headers=given))[0] == 200
    assert all("authorization" not in dict(c.request.headers) for c in agent.calls)
    # The invoke token manages nothing.
    caller = [(b"authorization", b"Bearer caller")]
    assert (await request(state, "GET", "/metrics", headers=caller))[0] == 401


async def test_a_non_ascii_token_matches_its_utf8_bytes() -> None:
    state = make_state(StubAgent(), token="pässwörd", token_on_invoke=True)
    utf8 = [(b"authorization", "Bearer pässwörd".encode())]
    assert (await request(state, "POST", "/invoke/f1", headers=utf8))[0] == 200
    assert (await request(state, "GET", "/metrics", headers=utf8))[0] == 200
    latin1 = [(b"authorization", "Bearer pässwörd".encode("latin-1"))]
    assert (await request(state, "POST", "/invoke/f1", headers=latin1))[0] == 401


async def test_the_request_url_a_function_gets_is_the_one_sent() -> None:
    agent = StubAgent()
    state = make_state(agent)
    fn = state.cache["fn:f1"]
    state.cache["t:приложение:/путь"] = fn
    raw = "/t/%D0%BF%D1%80%D0%B8%D0%BB%D0%BE%D0%B6%D0%B5%D0%BD%D0%B8%D0%B5/%D0%BF%D1%83%D1%82%D1%8C"
    status, _, _ = await request(
        state, "GET", "/t/приложение/путь", raw_path=raw.encode(), query=b"q=1"
    )
    assert status == 200
    assert agent.calls[0].request.url == f"http://127.0.0.1:8080{raw}?q=1"
    agent.calls[0].request.url.encode("ascii")
