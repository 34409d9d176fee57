"""How a function's response becomes the caller's: Fn-Http-Status bounds, headers the agent
owns or that describe the connection, bodies a status forbids; and Expect never forwarded."""

from __future__ import annotations

import pytest

from drivers.fake import ProgramContext
from fnagent.agent.httpclient import Response
from fnagent.agent.protocol import request_headers, response_headers
from fnagent.errors import InvalidResponseError
from fnagent.testing.fakefn import Answer, Request
from tests.helpers import poll
from tests.unit.helpers import handler_of, make_call, make_fn, message, running

pytestmark = pytest.mark.anyio


def answer_of(*headers: tuple[str, str]) -> Response:
    return Response(200, list(headers), b"body")


@pytest.mark.parametrize("value", ["100", "101", "199", "600", "700", "abc", "", "²00", "2OO"])
@pytest.mark.parametrize("trigger", [False, True])
def test_fn_http_status_outside_200_599_is_invalid(value: str, trigger: bool) -> None:
    with pytest.raises(InvalidResponseError, match="Fn-Http-Status"):
        response_headers(answer_of(("Fn-Http-Status", value)), trigger=trigger)


@pytest.mark.parametrize("value", ["200", "204", "302", "404", "599"])
def test_fn_http_status_within_200_599_sets_the_status(value: str) -> None:
    status, headers = response_headers(answer_of(("Fn-Http-Status", value)), trigger=True)
    assert (status, headers) == (int(value), [])


OWNED = [
    "Fn-Call-Id",
    "Server",
    "Date",
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Content-Length",
    "Upgrade",
    "Trailer",
    "Expect",
]


@pytest.mark.parametrize("trigger", [False, True])
def test_headers_the_agent_owns_or_that_frame_the_body_are_dropped(trigger: bool) -> None:
    wrapped = [(f"Fn-Http-H-{name}", "forged") for name in OWNED]
    sent = [(name, "forged") for name in OWNED] + wrapped
    response = answer_of(*sent, ("X-Kept", "1"), ("Fn-Http-H-X-Out", "2"))
    _, headers = response_headers(response, trigger=trigger)
    if trigger:
        assert headers == [("X-Kept", "1"), ("X-Out", "2")]
    else:  # not unwrapped: they reach the caller under their own, harmless names
        assert headers == [*wrapped, ("X-Kept", "1"), ("Fn-Http-H-X-Out", "2")]


def test_an_empty_unwrapped_header_name_is_invalid() -> None:
    with pytest.raises(InvalidResponseError):
        response_headers(answer_of(("Fn-Http-H-", "x")), trigger=True)


def test_expect_is_never_forwarded_to_the_function() -> None:
    call = make_call(make_fn(), headers=[("Expect", "100-continue"), ("X-In", "1")])
    names = [name.lower() for name, _ in request_headers(call)]
    assert "expect" not in names and "x-in" in names
    call.trigger = True
    names = [name.lower() for name, _ in request_headers(call)]
    assert "fn-http-h-expect" not in names and "fn-http-h-x-in" in names


async def test_a_bad_fn_http_status_is_502_and_replaces_the_container() -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(headers={"Fn-Http-Status": "100"}, body=b"x")

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        result = await agent.submit(make_call(make_fn()))
        assert result.status == 502
        assert message(result).startswith("invalid function response")
        await poll(lambda: driver.live() == [], "the container removed")


@pytest.mark.parametrize("status", ["204", "304"])
async def test_a_status_without_body_drops_the_body(status: str) -> None:
    async def answer(request: Request, ctx: ProgramContext) -> Answer:
        return Answer(headers={"Fn-Http-Status": status, "X-Out": "1"}, body=b"not allowed")

    async with running({"fn/echo": handler_of(answer)}) as (agent, driver):
        result = await agent.submit(make_call(make_fn()))
        assert (result.status, result.body) == (int(status), b"")
        assert ("X-Out", "1") in result.headers
        again = await agent.submit(make_call(make_fn()))
        assert again.start in ("warm", "thawed")  # a well-behaved answer keeps its container
