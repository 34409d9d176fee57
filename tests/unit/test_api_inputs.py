"""The bounds on what a client may send to the management API, in process on an in-memory
store: body size, JSON the parser cannot take, text that is not Unicode, config sizes,
trigger sources, non-Latin-1 names, and the OpenAPI document listing every route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from fnagent.errors import InvalidInputError
from fnagent.store import SQLiteStore
from fnagent.store import models as m
from tests.apitest import Client, make_state

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(anyio_backend: str) -> AsyncIterator[Client]:
    async with SQLiteStore(":memory:") as store:
        yield Client(make_state(store, max_api_body_bytes=4096))


async def test_management_bodies_over_the_limit_are_413(client: Client) -> None:
    big = json.dumps({"name": "a", "config": {"K": "v" * 5000}}).encode()
    status, body = await client.send("POST", "/v2/apps", big)
    assert status == 413 and "4096 bytes" in body["message"]
    declared = [(b"content-length", str(len(big)).encode())]
    status, _ = await client.send("POST", "/v2/apps", chunks=[b"{"], headers=declared)
    assert status == 413
    status, _ = await client.send("POST", "/v2/apps", chunks=[b" " * 3000, b" " * 3000])
    assert status == 413
    assert (await client.send("GET", "/v2/apps"))[0] == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"name": "a", "annotations": {"n": ' + b"9" * 5000 + b"}}",
        b'{"name": "\\ud800"}',
        b'{"name": "a", "config": {"K": "\\udfff"}}',
        b'{"name": "\xff"}',
    ],
    ids=["deep", "huge-int", "surrogate-name", "surrogate-config", "not-utf8"],
)
async def test_json_the_parser_cannot_take_is_400(raw: bytes) -> None:
    async with SQLiteStore(":memory:") as store:
        status, body = await Client(make_state(store)).send("POST", "/v2/apps", raw)
    assert status == 400 and body["message"].startswith("Invalid JSON")


async def test_config_sizes_are_bounded(client: Client) -> None:
    status, body = await client.json("POST", "/v2/apps", {"name": "a", "config": {"K" * 300: "v"}})
    assert status == 400 and "config key" in body["message"]
    status, app = await client.json("POST", "/v2/apps", {"name": "a"})
    assert status == 200
    assert m.MAX_CONFIG_VALUE_BYTES < 128 * 1024, "an env string must stay under MAX_ARG_STRLEN"


def test_config_limits_in_the_model() -> None:
    value = "v" * (m.MAX_CONFIG_VALUE_BYTES + 1)
    with pytest.raises(InvalidInputError, match="config value"):
        m.validate_config({"K": value})
    many = {f"K{i}": "v" * (m.MAX_CONFIG_VALUE_BYTES - 10) for i in range(10)}
    with pytest.raises(InvalidInputError, match="config"):
        m.validate_config(many)
    m.validate_config({"K" * m.MAX_CONFIG_KEY_BYTES: "v" * m.MAX_CONFIG_VALUE_BYTES})


@pytest.mark.parametrize(
    "source",
    ["/a\r\nX-Inj: 1", "/a?b", "/a#b", "/a\x00", "/a b", "/a/../b", "/a%2Fb", "/a\tb", "/\u2028"],
)
def test_trigger_sources_outside_the_path_grammar_are_400(source: str) -> None:
    with pytest.raises(InvalidInputError, match="Invalid Trigger Source"):
        m.validate_trigger_source(source)


@pytest.mark.parametrize("source", ["/", "/hook", "/a/b-c_d.e~f", "/путь/ü", "/x:y@z!$&'()*+,;="])
def test_trigger_sources_in_the_grammar_are_taken(source: str) -> None:
    assert m.validate_trigger_source(source) == source


async def test_non_latin1_names_and_sources_work_end_to_end(client: Client) -> None:
    status, app = await client.json("POST", "/v2/apps", {"name": "приложение"})
    assert status == 200, app
    fn_body = {"app_id": app["id"], "name": "функция", "image": "fnagent/fn-test"}
    status, fn = await client.json("POST", "/v2/fns", fn_body)
    assert status == 200, fn
    trigger_body = {
        "app_id": app["id"],
        "fn_id": fn["id"],
        "name": "т",
        "type": "http",
        "source": "/путь",
    }
    status, trigger = await client.json("POST", "/v2/triggers", trigger_body)
    assert status == 200, trigger
    endpoint = trigger["annotations"]["fnproject.io/trigger/httpEndpoint"]
    assert endpoint.encode("ascii"), "the endpoint is a URL: percent-encoded"
    assert "%D0%BF%D1%83%D1%82%D1%8C" in endpoint
    status, listed = await client.send("GET", "/v2/apps?name=" + quote("приложение"))
    assert status == 200 and listed["items"][0]["id"] == app["id"]


async def test_the_openapi_document_lists_every_route(client: Client) -> None:
    status, spec = await client.send("GET", "/openapi.json")
    assert status == 200
    paths = spec["paths"]
    assert "/metrics" in paths and "/openapi.json" in paths
    trigger = paths["/t/{app_name}/{trigger_source}"]
    assert set(trigger) >= {"get", "post", "put", "patch", "delete"}
