"""Property-based tests of every route of `fnagent serve`: schemathesis generates requests from
the served OpenAPI document (valid and invalid ones), and no answer may be a 5xx that a
function did not cause. The fns the fuzzer creates point at images that do not exist locally,
so an invoke can only fail with the image's error, never run a container."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from fnagent.server.openapi import document
from tests.system.helpers import new_instance_id
from tests.system.server import Server, make_server

SCHEMA = schemathesis.openapi.from_dict(document())
# An invalid schema is an Err without ok(): the AttributeError fails the module loudly.
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]
# About 3,000 cases over the 20 operations; the module stays within a minute or two.
EXAMPLES_PER_OPERATION = 150


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory,
    docker_api: docker.APIClient,
) -> Iterator[Server]:
    work = Path(tmp_path_factory.mktemp("fuzz"))
    env = {"FNAGENT_INSTANCE_ID": new_instance_id("fuzz"), "FNAGENT_LOG_LEVEL": "WARNING"}
    server = make_server(work, env).start()
    yield server
    assert server.stop() == 0


def test_the_served_document_is_the_one_fuzzed(fuzzed: Server) -> None:
    assert fuzzed.request("GET", "/openapi.json").json() == document()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_route_answers_a_server_error(fuzzed: Server, operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=fuzzed.url, timeout=30)
        # 502/503/504 from /invoke and /t are the function's (or its image's) doing, which the
        # status table allows; anything else >= 500 is ours.
        if case.path.startswith(("/invoke/", "/t/")) and response.status_code in (502, 503, 504):
            return
        case.validate_response(response, checks=[not_a_server_error])

    check()


HOSTILE_BODIES = {
    "deep": b"[" * 50_000 + b"]" * 50_000,
    "deep-object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "huge-int": b'{"name": "a", "memory": ' + b"9" * 5_000 + b"}",
    "surrogate": b'{"name": "\\ud800", "config": {"K": "\\udfff"}, "source": "/\\ud800"}',
    "controls": b'{"name": "a\\u0000b", "config": {"K\\r\\n": "v\\u0000"}, '
    b'"source": "/a\\r\\nX: 1"}',
    "not-utf8": b'{"name": "\xc3\x28"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_4xx_on_every_route_that_takes_one(fuzzed: Server, name: str) -> None:
    """Deep JSON, surrogates, control characters and bytes that are not UTF-8, which the
    schema-driven generator rarely makes, on every operation that takes a JSON body."""
    for operation in OPERATIONS:
        if operation.path.startswith("/invoke/") or operation.path.startswith("/t/"):
            continue
        if operation.method.upper() not in ("POST", "PUT"):
            continue
        path = operation.path
        for param in ("app_id", "fn_id", "trigger_id"):
            path = path.replace("{" + param + "}", "nope")
        answer = fuzzed.request(
            operation.method.upper(),
            path,
            raw=HOSTILE_BODIES[name],
            headers={"Content-Type": "application/json"},
        )
        assert 400 <= answer.status < 500, (operation.label, answer.status, answer.body[:200])
