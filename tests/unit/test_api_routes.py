"""Every ``/v2`` route of ``fnagent serve``, in process on an in-memory store: statuses, bodies,
Fn's messages, pagination, 404s, 409s, ids refused on create, delete cascades, and what the
agent is told."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fnagent.agent.agent import KeepAliveView, PrewarmView
from fnagent.server.openapi import document
from fnagent.store import SQLiteStore
from fnagent.store import models as m
from tests.apitest import Client, StubAgent, make_state

pytestmark = pytest.mark.anyio

INVOKE = "fnproject.io/fn/invokeEndpoint"
HTTP_ENDPOINT = "fnproject.io/trigger/httpEndpoint"


@pytest.fixture
async def agent() -> StubAgent:
    return StubAgent()


@pytest.fixture
async def client(anyio_backend: str, agent: StubAgent) -> AsyncIterator[Client]:
    async with SQLiteStore(":memory:") as store:
        yield Client(make_state(store, agent))


async def ok(client: Client, method: str, path: str, document: Any = None) -> Any:
    """The body of a 200 answer."""
    if document is None:
        status, body = await client.send(method, path)
    else:
        status, body = await client.json(method, path, document)
    assert status == 200, body
    return body


async def refused(client: Client, method: str, path: str, document: Any = None) -> tuple[int, str]:
    """(status, message) of an error answer."""
    if document is None:
        status, body = await client.send(method, path)
    else:
        status, body = await client.json(method, path, document)
    assert status >= 400 and set(body) == {"message"}, body
    return status, body["message"]


async def app_fn_trigger(client: Client, suffix: str = "") -> tuple[Any, Any, Any]:
    app = await ok(client, "POST", "/v2/apps", {"name": f"app{suffix}"})
    fn = await ok(
        client,
        "POST",
        "/v2/fns",
        {"app_id": app["id"], "name": f"fn{suffix}", "image": "fnproject/hello"},
    )
    trigger = await ok(
        client,
        "POST",
        "/v2/triggers",
        {
            "app_id": app["id"],
            "fn_id": fn["id"],
            "name": f"t{suffix}",
            "type": "http",
            "source": f"/t{suffix}",
        },
    )
    return app, fn, trigger


# --- endpoint annotations ----------------------------------------------------------------


async def test_endpoint_annotations_name_the_public_lb_url_when_one_is_set(
    anyio_backend: str,
) -> None:
    async with SQLiteStore(":memory:") as store:
        client = Client(make_state(store, public_lb_url="https://fn.example.com/gw"))
        app, fn, trigger = await app_fn_trigger(client)
        invoke = f"https://fn.example.com/gw/invoke/{fn['id']}"
        assert fn["annotations"][INVOKE] == invoke
        assert (await ok(client, "GET", f"/v2/fns/{fn['id']}"))["annotations"][INVOKE] == invoke
        listed = await ok(client, "GET", f"/v2/fns?app_id={app['id']}")
        assert [item["annotations"][INVOKE] for item in listed["items"]] == [invoke]
        assert trigger["annotations"][HTTP_ENDPOINT] == "https://fn.example.com/gw/t/app/t"
        got = await ok(client, "GET", f"/v2/triggers/{trigger['id']}")
        assert got["annotations"][HTTP_ENDPOINT] == "https://fn.example.com/gw/t/app/t"


async def test_endpoint_annotations_name_the_requested_host_without_a_public_lb_url(
    client: Client,
) -> None:
    _, fn, trigger = await app_fn_trigger(client)
    assert fn["annotations"][INVOKE] == f"http://127.0.0.1:8080/invoke/{fn['id']}"
    assert trigger["annotations"][HTTP_ENDPOINT] == "http://127.0.0.1:8080/t/app/t"


# --- ids in create bodies -----------------------------------------------------------------


async def test_an_id_in_a_create_body_is_400_with_fns_message(client: Client) -> None:
    assert await refused(client, "POST", "/v2/apps", {"name": "a", "id": "mine"}) == (
        400,
        "App ID cannot be supplied on create",
    )
    app = await ok(client, "POST", "/v2/apps", {"name": "a", "id": ""})  # Go's "" is no id
    fn_body = {"app_id": app["id"], "name": "f", "image": "fnproject/hello"}
    assert await refused(client, "POST", "/v2/fns", {**fn_body, "id": "mine"}) == (
        400,
        "ID cannot be provided for Fn creation",
    )
    fn = await ok(client, "POST", "/v2/fns", fn_body)
    trigger_body = {"app_id": app["id"], "fn_id": fn["id"], "name": "t", "type": "http"}
    assert await refused(
        client, "POST", "/v2/triggers", {**trigger_body, "source": "/t", "id": "mine"}
    ) == (400, "ID cannot be provided for Trigger creation")
    # Nothing was made by the refused bodies.
    assert (await ok(client, "GET", "/v2/apps"))["items"] == [app]
    assert (await ok(client, "GET", f"/v2/triggers?app_id={app['id']}"))["items"] == []


# --- apps ---------------------------------------------------------------------------------


async def test_apps_create_get_update_delete(client: Client, agent: StubAgent) -> None:
    app = await ok(
        client,
        "POST",
        "/v2/apps",
        {"name": "app", "config": {"A": "1"}, "annotations": {"k": "v"}, "shape": "GENERIC_ARM"},
    )
    assert (app["name"], app["config"], app["annotations"]) == ("app", {"A": "1"}, {"k": "v"})
    assert app["shape"] == "GENERIC_ARM" and app["created_at"] == app["updated_at"]
    assert await ok(client, "GET", f"/v2/apps/{app['id']}") == app
    fn = await ok(
        client, "POST", "/v2/fns", {"app_id": app["id"], "name": "f", "image": "fnproject/hello"}
    )
    agent.running[fn["id"]] = app["id"]  # as after a call

    updated = await ok(client, "PUT", f"/v2/apps/{app['id']}", {"config": {"A": "", "B": "2"}})
    assert updated["config"] == {"B": "2"} and updated["id"] == app["id"]
    # App config reaches every fn's containers: the agent is told about each fn.
    assert [(f.id, f.app_config) for f in agent.updated] == [(fn["id"], {"B": "2"})]
    assert await refused(client, "PUT", f"/v2/apps/{app['id']}", {"name": "b"}) == (
        409,
        "Could not update - name is immutable",
    )
    assert await refused(client, "PUT", f"/v2/apps/{app['id']}", {"id": "x"}) == (
        400,
        "App ID in path does not match ID in body",
    )

    status, body = await client.send("DELETE", f"/v2/apps/{app['id']}")
    assert (status, body) == (204, None)
    for method in ("GET", "DELETE"):
        assert await refused(client, method, f"/v2/apps/{app['id']}") == (404, "App not found")
    assert await refused(client, "PUT", "/v2/apps/nope", {}) == (404, "App not found")


async def test_apps_conflicts_and_validation(client: Client) -> None:
    await ok(client, "POST", "/v2/apps", {"name": "app"})
    assert await refused(client, "POST", "/v2/apps", {"name": "app"}) == (
        409,
        "App already exists",
    )
    for body, message in [
        ({}, "Missing Name"),
        ({"name": "in valid"}, "Invalid app name"),
        ({"name": "a" * 256}, "App name must be 255 characters or less"),
        ({"name": "a", "shape": "x86"}, "Invalid app shape"),
        ({"name": "a", "annotations": {"k": ""}}, m.MSG_ANNOTATION_VALUE),
        ({"name": 5}, "Invalid JSON: name must be a string"),
        ({"name": "a", "config": {"K": 1}}, "Invalid JSON: config must be an object of strings"),
        ({"name": "a", "annotations": []}, "Invalid JSON: annotations must be an object"),
        ({"name": "a", "syslog_url": 1}, "Invalid JSON: syslog_url must be a string"),
    ]:
        assert await refused(client, "POST", "/v2/apps", body) == (400, message), body
    app_id = (await ok(client, "GET", "/v2/apps"))["items"][0]["id"]
    for body, message in [
        ({"config": []}, "Invalid JSON: config must be an object of strings"),
        ({"annotations": "x"}, "Invalid JSON: annotations must be an object"),
        (
            {"syslog_url": "tcp://logs:0"},
            'invalid syslog url: "tcp://logs:0" the port must be a number from 1 to 65535',
        ),
    ]:
        assert await refused(client, "PUT", f"/v2/apps/{app_id}", body) == (400, message), body


async def test_apps_list_pages_with_one_clamp(client: Client) -> None:
    names = [f"app-{i:03d}" for i in range(105)]
    for name in reversed(names):
        await ok(client, "POST", "/v2/apps", {"name": name})
    first = await ok(client, "GET", "/v2/apps")
    assert [a["name"] for a in first["items"]] == names[:30]  # the default page
    second = await ok(client, "GET", f"/v2/apps?per_page=30&cursor={first['next_cursor']}")
    assert [a["name"] for a in second["items"]] == names[30:60]
    for per_page, size in [("0", 30), ("-5", 30), ("7", 7), ("1000", 100), ("", 30)]:
        page = await ok(client, "GET", f"/v2/apps?per_page={per_page}")
        assert len(page["items"]) == size, per_page
        assert "next_cursor" in page
    last = await ok(client, "GET", "/v2/apps?per_page=100&cursor=" + first["next_cursor"])
    assert len(last["items"]) == 75 and "next_cursor" not in last
    named = await ok(client, "GET", "/v2/apps?name=app-042")
    assert [a["name"] for a in named["items"]] == ["app-042"]
    assert await refused(client, "GET", "/v2/apps?per_page=x") == (
        400,
        "invalid per_page 'x': must be an integer",
    )
    assert await refused(client, "GET", "/v2/apps?cursor=%25%25") == (400, "invalid cursor '%%'")


async def test_deleting_an_app_deletes_its_fns_and_triggers(
    client: Client, agent: StubAgent
) -> None:
    app, fn, trigger = await app_fn_trigger(client)
    other_app, other_fn, other_trigger = await app_fn_trigger(client, "2")
    agent.running.update({fn["id"]: app["id"], other_fn["id"]: other_app["id"]})
    assert (await client.send("DELETE", f"/v2/apps/{app['id']}"))[0] == 204
    assert agent.forgotten == [fn["id"]]
    assert await refused(client, "GET", f"/v2/fns/{fn['id']}") == (404, "Fn not found")
    assert await refused(client, "GET", f"/v2/triggers/{trigger['id']}") == (
        404,
        "Trigger not found",
    )
    assert await ok(client, "GET", f"/v2/fns/{other_fn['id']}") == other_fn
    assert await ok(client, "GET", f"/v2/triggers/{other_trigger['id']}") == other_trigger


# --- fns ----------------------------------------------------------------------------------


async def test_fns_create_get_update_delete(client: Client, agent: StubAgent) -> None:
    app = await ok(client, "POST", "/v2/apps", {"name": "app", "shape": "GENERIC_ARM"})
    fn = await ok(
        client,
        "POST",
        "/v2/fns",
        {"app_id": app["id"], "name": "fn", "image": "fnproject/hello", "memory": 256},
    )
    assert (fn["memory"], fn["timeout"], fn["idle_timeout"]) == (256, 30, 30)
    assert fn["shape"] == "GENERIC_ARM" and fn["config"] == {}
    assert fn["annotations"] == {INVOKE: f"http://127.0.0.1:8080/invoke/{fn['id']}"}
    assert await ok(client, "GET", f"/v2/fns/{fn['id']}") == fn

    agent.running[fn["id"]] = app["id"]  # as after a call: an update reaches the agent
    updated = await ok(client, "PUT", f"/v2/fns/{fn['id']}", {"timeout": 10, "config": {"A": "1"}})
    assert (updated["timeout"], updated["memory"], updated["config"]) == (10, 256, {"A": "1"})
    assert [(f.id, f.timeout_s) for f in agent.updated] == [(fn["id"], 10)]
    for body, message in [
        ({"name": "other"}, "Fn names and IDs cannot be modified"),
        ({"app_id": "other"}, "Fn names and IDs cannot be modified"),
        ({"id": "other"}, "Fn ID in path does not match that in body"),
        ({"memory": 9000}, m.MSG_FN_INVALID_MEMORY),
        ({"timeout": "1"}, "Invalid JSON: timeout must be an integer"),
        ({"image": 1}, "Invalid JSON: image must be a string"),
    ]:
        assert await refused(client, "PUT", f"/v2/fns/{fn['id']}", body) == (400, message), body
    assert await refused(client, "PUT", "/v2/fns/nope", {}) == (404, "Fn not found")

    assert await client.send("DELETE", f"/v2/fns/{fn['id']}") == (204, None)
    assert agent.forgotten == [fn["id"]]
    for method in ("GET", "DELETE"):
        assert await refused(client, method, f"/v2/fns/{fn['id']}") == (404, "Fn not found")


async def test_fns_conflicts_and_validation(client: Client) -> None:
    app = await ok(client, "POST", "/v2/apps", {"name": "app"})
    body: dict[str, Any] = {"app_id": app["id"], "name": "fn", "image": "fnproject/hello"}
    await ok(client, "POST", "/v2/fns", body)
    assert await refused(client, "POST", "/v2/fns", body) == (
        409,
        "Fn with specified name already exists",
    )
    cases: list[tuple[dict[str, Any], tuple[int, str]]] = [
        ({"app_id": "nope"}, (404, "App not found")),
        ({"app_id": ""}, (400, "Missing AppID on Fn")),
        ({"app_id": 5}, (400, "Invalid JSON: app_id must be a string")),
        ({"name": ""}, (400, "Missing Fn name")),
        ({"image": ""}, (400, "Missing image on Fn")),
        ({"timeout": 301}, (400, m.MSG_FN_INVALID_TIMEOUT)),
        ({"idle_timeout": True}, (400, "Invalid JSON: idle_timeout must be an integer")),
        ({"memory": 1.5}, (400, "Invalid JSON: memory must be an integer")),
        ({"config": {"A": 1}}, (400, "Invalid JSON: config must be an object of strings")),
    ]
    for fields, expected in cases:
        assert await refused(client, "POST", "/v2/fns", {**body, **fields}) == expected, fields


async def test_fns_list_needs_an_app_and_pages(client: Client) -> None:
    app = await ok(client, "POST", "/v2/apps", {"name": "app"})
    for i in range(5):
        await ok(
            client,
            "POST",
            "/v2/fns",
            {"app_id": app["id"], "name": f"fn{i}", "image": "fnproject/hello"},
        )
    assert await refused(client, "GET", "/v2/fns") == (400, "Missing AppID on Fn")
    page = await ok(client, "GET", f"/v2/fns?app_id={app['id']}&per_page=2")
    assert [f["name"] for f in page["items"]] == ["fn0", "fn1"]
    assert all(INVOKE in f["annotations"] for f in page["items"])
    rest = await ok(
        client, "GET", f"/v2/fns?app_id={app['id']}&per_page=10&cursor={page['next_cursor']}"
    )
    assert [f["name"] for f in rest["items"]] == ["fn2", "fn3", "fn4"] and "next_cursor" not in rest
    named = await ok(client, "GET", f"/v2/fns?app_id={app['id']}&name=fn3")
    assert [f["name"] for f in named["items"]] == ["fn3"]
    assert await ok(client, "GET", "/v2/fns?app_id=nope") == {"items": []}


async def test_deleting_a_fn_deletes_its_triggers(client: Client, agent: StubAgent) -> None:
    app, fn, trigger = await app_fn_trigger(client)
    keep = await ok(
        client, "POST", "/v2/fns", {"app_id": app["id"], "name": "keep", "image": "fnproject/x"}
    )
    assert (await client.send("DELETE", f"/v2/fns/{fn['id']}"))[0] == 204
    assert agent.forgotten == [fn["id"]]
    assert await refused(client, "GET", f"/v2/triggers/{trigger['id']}") == (
        404,
        "Trigger not found",
    )
    assert await ok(client, "GET", f"/v2/fns/{keep['id']}") == keep


async def test_fn_limit_annotations_are_checked_on_create_and_update(client: Client) -> None:
    app = await ok(client, "POST", "/v2/apps", {"name": "app"})
    limit, init = "fnagent.io/max-concurrency", "fnagent.io/init-timeout-ms"
    body = {"app_id": app["id"], "name": "fn", "image": "fnproject/hello"}
    status, message = await refused(client, "POST", "/v2/fns", {**body, "annotations": {limit: 0}})
    assert (status, message.startswith(f"annotation {limit} must be an integer >= 1")) == (
        400,
        True,
    )
    fn = await ok(client, "POST", "/v2/fns", {**body, "annotations": {limit: 2, init: 20000}})
    assert (fn["annotations"][limit], fn["annotations"][init]) == (2, 20000)
    path = f"/v2/fns/{fn['id']}"
    status, message = await refused(client, "PUT", path, {"annotations": {init: 50}})
    assert (status, message.startswith(f"annotation {init} must be an integer from 100")) == (
        400,
        True,
    )
    updated = await ok(client, "PUT", path, {"annotations": {limit: "1", init: None}})
    assert updated["annotations"][limit] == "1" and init not in updated["annotations"]


async def test_fn_scale(client: Client, agent: StubAgent) -> None:
    _, fn, _ = await app_fn_trigger(client)
    path = f"/v2/fns/{fn['id']}/scale"
    assert await ok(client, "GET", path) == {
        "running": 0,
        "frozen": 0,
        "starting": 0,
        "min_hot": 0,
        "keepalive": [],
    }
    assert (await ok(client, "PUT", path, {"min_hot": 2}))["min_hot"] == 2
    assert agent.scaled == {fn["id"]: 2}
    assert (await ok(client, "GET", path))["min_hot"] == 2
    for body in [{"min_hot": -1}, {"min_hot": "2"}, {"min_hot": True}, {}]:
        assert await refused(client, "PUT", path, body) == (
            400,
            "min_hot must be an integer >= 0",
        ), body
    assert await refused(client, "GET", "/v2/fns/nope/scale") == (404, "Fn not found")
    assert await refused(client, "PUT", "/v2/fns/nope/scale", {"min_hot": 1}) == (
        404,
        "Fn not found",
    )


async def test_fn_scale_shows_the_learned_keepalive_and_the_next_prewarm(
    client: Client, agent: StubAgent
) -> None:
    _, fn, _ = await app_fn_trigger(client)
    path = f"/v2/fns/{fn['id']}/scale"
    view = KeepAliveView(
        version="v1",
        serving=True,
        policy="adaptive",
        learned=True,
        representative=True,
        idle_samples=7,
        keepalive_s=0.0,
        unload_in_s=-1.25,
    )
    draining = dataclasses.replace(
        view, version="v0", serving=False, learned=False, representative=False, idle_samples=0
    )
    draining = dataclasses.replace(draining, keepalive_s=30.0, unload_in_s=None)
    agent.keepalives[fn["id"]] = ([view, draining], PrewarmView(version="v1", in_s=1.5, keep_s=2))
    before = datetime.now(UTC)
    scale = await ok(client, "GET", path)
    keepalive, prewarm = scale["keepalive"], scale["prewarm"]
    assert keepalive[0] == {
        "version": "v1",
        "serving": True,
        "policy": "adaptive",
        "learned": True,
        "representative": True,
        "idle_samples": 7,
        "keepalive_s": 0.0,
        "unload_in_s": -1.25,
        "unload_at": keepalive[0]["unload_at"],
    }
    assert "unload_at" not in keepalive[1] and "unload_in_s" not in keepalive[1]
    assert keepalive[1]["keepalive_s"] == 30.0
    unload_at = datetime.fromisoformat(keepalive[0]["unload_at"])
    assert before - timedelta(seconds=2) < unload_at < datetime.now(UTC)
    assert (prewarm["version"], prewarm["in_s"], prewarm["keep_s"]) == ("v1", 1.5, 2)
    assert before < datetime.fromisoformat(prewarm["at"]) < datetime.now(UTC) + timedelta(2)
    agent.keepalives[fn["id"]] = ([view], None)
    assert "prewarm" not in await ok(client, "PUT", path, {"min_hot": 1})


# --- triggers -----------------------------------------------------------------------------


async def test_triggers_create_get_update_delete(client: Client) -> None:
    app, fn, trigger = await app_fn_trigger(client)
    assert (trigger["name"], trigger["type"], trigger["source"]) == ("t", "http", "/t")
    assert trigger["annotations"] == {HTTP_ENDPOINT: "http://127.0.0.1:8080/t/app/t"}
    assert await ok(client, "GET", f"/v2/triggers/{trigger['id']}") == trigger

    path = f"/v2/triggers/{trigger['id']}"
    updated = await ok(client, "PUT", path, {"source": "/new", "annotations": {"a": 1}})
    assert updated["source"] == "/new"
    assert updated["annotations"] == {"a": 1, HTTP_ENDPOINT: "http://127.0.0.1:8080/t/app/new"}
    for body, message in [
        ({"fn_id": "other"}, "Trigger app_id, fn_id and type cannot be modified"),
        ({"id": "other"}, "ID in path does not match ID in body"),
        ({"source": "new"}, "Missing Trigger Source Prefix '/'"),
        ({"name": 1}, "Invalid JSON: name must be a string"),
    ]:
        assert await refused(client, "PUT", path, body) == (400, message), body
    assert await refused(client, "PUT", "/v2/triggers/nope", {}) == (404, "Trigger not found")

    assert await client.send("DELETE", path) == (204, None)
    for method in ("GET", "DELETE"):
        assert await refused(client, method, path) == (404, "Trigger not found")
    assert await ok(client, "GET", f"/v2/fns/{fn['id']}") == fn


async def test_triggers_conflicts_and_validation(client: Client) -> None:
    app, fn, _ = await app_fn_trigger(client)
    _, other_fn, _ = await app_fn_trigger(client, "2")
    body = {"app_id": app["id"], "fn_id": fn["id"], "name": "u", "type": "http", "source": "/u"}
    for fields, expected in [
        ({"source": "/t"}, (409, "Trigger with the same type and source exists on this app")),
        ({"name": "t"}, (409, "Trigger already exists")),
        ({"fn_id": other_fn["id"]}, (400, "Invalid Fn ID - not owned by specified app")),
        ({"fn_id": "nope"}, (404, "Fn not found")),
        ({"app_id": "nope"}, (404, "App not found")),
        ({"app_id": ""}, (400, "Missing App ID on Trigger")),
        ({"fn_id": ""}, (400, "Missing Fn ID on Trigger")),
        ({"type": "cron"}, (400, "Trigger Type Not Supported")),
        ({"source": ""}, (400, "Missing Trigger Source")),
        ({"fn_id": ["x"]}, (400, "Invalid JSON: fn_id must be a string")),
        ({"annotations": {"": "x"}}, (400, m.MSG_ANNOTATION_KEY)),
    ]:
        assert await refused(client, "POST", "/v2/triggers", {**body, **fields}) == expected, fields


async def test_triggers_list_by_app_and_fn(client: Client) -> None:
    app, fn, trigger = await app_fn_trigger(client)
    second = await ok(
        client, "POST", "/v2/fns", {"app_id": app["id"], "name": "g", "image": "fnproject/x"}
    )
    for i in range(3):
        await ok(
            client,
            "POST",
            "/v2/triggers",
            {
                "app_id": app["id"],
                "fn_id": second["id"],
                "name": f"g{i}",
                "type": "http",
                "source": f"/g/{i}",
            },
        )
    assert await refused(client, "GET", "/v2/triggers") == (400, "Missing App ID on Trigger")
    everything = await ok(client, "GET", f"/v2/triggers?app_id={app['id']}")
    assert [t["name"] for t in everything["items"]] == ["g0", "g1", "g2", "t"]
    assert all(HTTP_ENDPOINT in t["annotations"] for t in everything["items"])
    by_fn = await ok(client, "GET", f"/v2/triggers?app_id={app['id']}&fn_id={fn['id']}")
    assert by_fn["items"] == [trigger]
    page = await ok(client, "GET", f"/v2/triggers?app_id={app['id']}&per_page=3")
    assert len(page["items"]) == 3
    rest = await ok(client, "GET", f"/v2/triggers?app_id={app['id']}&cursor={page['next_cursor']}")
    assert rest["items"] == [trigger]
    named = await ok(client, "GET", f"/v2/triggers?app_id={app['id']}&name=g1")
    assert [t["source"] for t in named["items"]] == ["/g/1"]


# --- every route ---------------------------------------------------------------------------


V2_ROUTES = [
    ("GET", "/v2/apps"),
    ("POST", "/v2/apps"),
    ("GET", "/v2/apps/x"),
    ("PUT", "/v2/apps/x"),
    ("DELETE", "/v2/apps/x"),
    ("GET", "/v2/fns?app_id=x"),
    ("POST", "/v2/fns"),
    ("GET", "/v2/fns/x"),
    ("PUT", "/v2/fns/x"),
    ("DELETE", "/v2/fns/x"),
    ("GET", "/v2/fns/x/scale"),
    ("PUT", "/v2/fns/x/scale"),
    ("GET", "/v2/triggers?app_id=x"),
    ("POST", "/v2/triggers"),
    ("GET", "/v2/triggers/x"),
    ("PUT", "/v2/triggers/x"),
    ("DELETE", "/v2/triggers/x"),
]


async def test_every_v2_route_wants_the_token_when_one_is_set(anyio_backend: str) -> None:
    async with SQLiteStore(":memory:") as store:
        client = Client(make_state(store, token="s3cret"))
        for method, path in V2_ROUTES:
            status, body = await client.json(method, path, {})
            assert (status, body) == (401, {"message": "Invalid authentication credentials"})
            good = [(b"authorization", b"Bearer s3cret")]
            status, _ = await client.send(method, path, b"{}", headers=good)
            assert status != 401, (method, path)


async def test_every_v2_route_answers_json_errors_for_bad_bodies(client: Client) -> None:
    for method, path in V2_ROUTES:
        if method in ("POST", "PUT"):
            for raw in (b"[]", b"{", b""):
                status, body = await client.send(method, path, raw)
                assert status == 400 and body["message"].startswith("Invalid JSON"), (path, raw)


def test_the_openapi_scale_schema_has_the_keepalive_and_the_prewarm() -> None:
    get = document()["paths"]["/v2/fns/{fn_id}/scale"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    fields = schema["properties"]
    assert {"running", "frozen", "starting", "min_hot", "keepalive", "prewarm"} <= set(fields)
    version = fields["keepalive"]["items"]["properties"]
    assert set(version) == {
        "version",
        "serving",
        "policy",
        "learned",
        "representative",
        "idle_samples",
        "keepalive_s",
        "unload_in_s",
        "unload_at",
    }
    assert set(fields["prewarm"]["properties"]) == {"version", "at", "in_s", "keep_s"}
