"""The page's routes in process: ``/ui`` and its assets (cache headers, the token gate on the
dashboard script, nothing served outside the known files) and ``GET /v2/stats`` (what the page
polls); plus the agent's per-fn container counts and the metrics' totals behind it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fnagent.server.metrics import Metrics
from fnagent.server.state import ServerState
from fnagent.store import SQLiteStore
from fnagent.testing.fakefn import http_function
from tests.apitest import Client, StubAgent, make_state, request
from tests.helpers import poll
from tests.unit.helpers import make_call, make_fn, running

pytestmark = pytest.mark.anyio

TOKEN = "s3cret"
BEARER = [(b"authorization", f"Bearer {TOKEN}".encode())]


@pytest.fixture
async def store(anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:") as made:
        yield made


def header(headers: dict[bytes, bytes], name: str) -> str:
    return headers.get(name.lower().encode(), b"").decode()


async def asset_urls(state: ServerState) -> list[str]:
    status, _, body = await request(state, "GET", "/ui")
    assert status == 200
    return re.findall(r'"(/ui/static/[^"]+)"', body.decode())


async def get(
    state: ServerState, url: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    path, _, query = url.partition("?")
    return await request(state, "GET", path, headers=headers, query=query.encode())


async def test_the_page_is_the_login_form_and_a_loader_revalidated_on_every_load(
    store: SQLiteStore,
) -> None:
    state = make_state(store, token=TOKEN)
    status, headers, body = await request(state, "GET", "/ui")
    assert status == 200 and header(headers, "content-type").startswith("text/html")
    assert header(headers, "cache-control") == "no-cache"
    policy = header(headers, "content-security-policy")
    assert "script-src 'self' blob:" in policy and "unsafe-inline" not in policy
    assert header(headers, "x-content-type-options") == "nosniff"
    page = body.decode()
    assert 'id="login"' in page and "<script>" not in page, "no inline script"
    assert [url.split("?")[0] for url in await asset_urls(state)] == [
        "/ui/static/ui.css",
        "/ui/static/login.js",
        "/ui/static/dashboard.js",
    ]
    assert (await request(state, "GET", "/ui/"))[2] == body


async def test_assets_are_cached_by_version_and_revalidate_to_304(store: SQLiteStore) -> None:
    state = make_state(store)
    for url in await asset_urls(state):
        status, headers, body = await get(state, url)
        assert status == 200 and body, url
        etag = header(headers, "etag")
        assert url.endswith("?v=" + etag.strip('"')), "the URL changes with the content"
        assert "max-age=31536000" in header(headers, "cache-control")
        assert header(headers, "content-type").split(";")[0] in ("text/javascript", "text/css")
        status, _, body = await get(state, url, [(b"if-none-match", etag.encode())])
        assert (status, body) == (304, b"")


async def test_only_the_known_assets_are_served(store: SQLiteStore) -> None:
    state = make_state(store)
    for name in ("index.html", "__init__.py", "..%2F__init__.py", "nope.js"):
        status, _, body = await request(state, "GET", f"/ui/static/{name}")
        assert status == 404 and b"message" in body, name


async def test_with_a_token_the_dashboard_script_needs_it_and_the_login_parts_do_not(
    store: SQLiteStore,
) -> None:
    state = make_state(store, token=TOKEN)
    urls = {url.split("?")[0].rsplit("/", 1)[1]: url for url in await asset_urls(state)}
    assert (await get(state, urls["dashboard.js"]))[0] == 401
    assert (await get(state, urls["dashboard.js"], [(b"authorization", b"Bearer no")]))[0] == 401
    status, headers, _ = await get(state, urls["dashboard.js"], BEARER)
    assert status == 200 and header(headers, "cache-control").startswith("private")
    for name in ("login.js", "ui.css"):
        status, headers, _ = await get(state, urls[name])
        assert status == 200 and header(headers, "cache-control").startswith("public")


async def test_stats_report_containers_the_pool_and_the_counters(store: SQLiteStore) -> None:
    agent = StubAgent()
    agent.scaled["fn1"] = 2
    gauges = {
        "containers": {"running": 1, "frozen": 2, "starting": 0},
        "pool": {"free": 3, "in_use": 1, "starting": 0},
    }
    state = make_state(store, agent)
    state.metrics = Metrics(lambda: gauges)
    state.metrics.observe("fn1", 200, "cold", 0.3)
    state.metrics.observe("fn1", 200, "warm", 0.002)
    state.metrics.observe("fn2", 502, "thawed", 0.004)
    state.metrics.observe("fn2", 503, None, 0.0001)
    status, body = await Client(state).send("GET", "/v2/stats")
    assert status == 200, body
    assert body["containers"] == gauges["containers"] and body["pool"] == gauges["pool"]
    assert body["fns"] == {"fn1": {"running": 0, "frozen": 2, "starting": 0, "min_hot": 2}}
    assert body["calls"] == 4
    assert body["starts"] == {"cold": 1, "thawed": 1, "hot": 1}, "Fn's words: warm is hot"
    cumulative: dict[Any, int] = {bound: n for bound, n in body["durations"]}
    assert cumulative[0.001] == 1 and cumulative[0.0025] == 2 and cumulative[0.005] == 3
    assert cumulative[0.25] == 3 and cumulative[0.5] == 4 and cumulative["+Inf"] == 4
    assert isinstance(body["time"], float)
    assert body["invoke_requires_token"] is False


@pytest.mark.parametrize(
    ("config", "required"),
    [
        ({"token": TOKEN}, False),
        ({"token": TOKEN, "token_on_invoke": True}, True),
        ({"token": TOKEN, "invoke_token": "other"}, True),
    ],
)
async def test_stats_need_the_token_and_say_whether_invoke_does(
    store: SQLiteStore, config: dict[str, Any], required: bool
) -> None:
    client = Client(make_state(store, **config))
    status, body = await client.send("GET", "/v2/stats")
    assert (status, body) == (401, {"message": body["message"]})
    status, body = await client.send("GET", "/v2/stats", headers=BEARER)
    assert status == 200 and body["invoke_requires_token"] is required


async def test_the_agent_counts_containers_per_fn_in_one_pass() -> None:
    async with running({"fn/echo": http_function()}) as (agent, _):
        assert agent.containers_by_fn() == {}
        one, two = make_fn(), make_fn(id="fn2", name="two")
        for fn in (one, two, two):
            result = await agent.submit(make_call(fn))
            assert result.status == 200
        by_fn = agent.containers_by_fn()
        assert set(by_fn) == {"fn1", "fn2"}
        for fn_id, counts in by_fn.items():
            assert counts == agent.containers(fn_id), fn_id
        agent.forget("fn1")
        await poll(lambda: "fn1" not in agent.containers_by_fn(), "a forgotten fn's containers go")
