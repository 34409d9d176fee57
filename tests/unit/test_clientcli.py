"""The API client commands against a small in-memory Fn v2 server on 127.0.0.1.

The fake keeps apps, fns and triggers the way Fn does (name filters, cursor pagination,
config merges where "" deletes, 404/409 with {"message": ...}) and records every request, so
the tests can assert both on what the commands print and on what they sent.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import pytest
from click.testing import CliRunner

from fnagent.cli.commands import format_table
from fnagent.cli.main import main
from fnagent.client import DEFAULT_API_URL, ApiClient, ApiError
from tests.unit.fakeapi import Recorded, Reply, answer, cli, error, serve

JSONObject = dict[str, Any]
NOT_UTF8 = bytes(range(256)) + b"\xff\xfe\x80 not utf-8 \xc3\x28"


@dataclass
class FakeFn:
    """Fn's v2 API, in memory. ``url`` is set once the server listens."""

    url: str = ""
    per_page_default: int = 30
    annotate_endpoints: bool = True
    apps: dict[str, JSONObject] = field(default_factory=dict)
    fns: dict[str, JSONObject] = field(default_factory=dict)
    triggers: dict[str, JSONObject] = field(default_factory=dict)
    scale: dict[str, JSONObject] = field(default_factory=dict)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    """(app id, name) -> value, as the CLI sent it."""
    requests: list[Recorded] = field(default_factory=list)
    # (status, headers, body) for the next POST /invoke, else an echo of the request.
    invoke_answer: Reply | None = None
    # The body of GET /v2/fns/{id}/logs?follow=true: server-sent events, then the end.
    log_events: bytes = (
        b": following\n\n"
        b'event: line\ndata: {"call_id": "c1", "stream": "stderr", "line": "hello", '
        b'"container": "k"}\n\n'
        b": keep-alive\n\n"
        b'event: dropped\ndata: {"dropped": 3}\n\n'
        b'event: line\ndata: {"call_id": null, "stream": "stdout", "line": "idle", '
        b'"container": "k"}\n\n'
    )
    counter: int = 0

    # -- seeding helpers, no HTTP --------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        self.counter += 1
        return f"01{kind.upper()}{self.counter:020d}"

    def add_app(self, name: str, **fields: Any) -> JSONObject:
        app = {
            "id": self.new_id("app"),
            "name": name,
            "config": {},
            "annotations": {},
            "created_at": "2024-01-01T00:00:00.000Z",
            **fields,
        }
        self.apps[app["id"]] = app
        return app

    def add_fn(
        self, app: JSONObject, name: str, image: str = "fnproject/hello", **fields: Any
    ) -> JSONObject:
        fn = {
            "id": self.new_id("fn"),
            "name": name,
            "app_id": app["id"],
            "image": image,
            "memory": 128,
            "timeout": 30,
            "idle_timeout": 30,
            "config": {},
            "annotations": {},
            **fields,
        }
        self.fns[fn["id"]] = fn
        return fn

    def add_trigger(self, fn: JSONObject, name: str, source: str) -> JSONObject:
        trigger = {
            "id": self.new_id("trg"),
            "name": name,
            "app_id": fn["app_id"],
            "fn_id": fn["id"],
            "type": "http",
            "source": source,
            "annotations": {},
        }
        self.triggers[trigger["id"]] = trigger
        return trigger

    def sent(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE")]

    # -- the API ------------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Reply:
        self.requests.append(request)
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["invoke"] and request.method == "POST":
            return self.invoke(parts[1])
        if parts[:1] != ["v2"] or len(parts) < 2:
            return error(404, "Not found")
        kind, rest = parts[1], parts[2:]
        stores = {"apps": self.apps, "fns": self.fns, "triggers": self.triggers}
        if kind not in stores:
            return error(404, "Not found")
        store = stores[kind]
        label = {"apps": "App", "fns": "Fn", "triggers": "Trigger"}[kind]
        if not rest:
            if request.method == "GET":
                return self.list(kind, store, request.query)
            if request.method == "POST":
                return self.create(kind, store, label, request.json())
            return error(405, "Method not allowed")
        obj = store.get(rest[0])
        if obj is None:
            return error(404, f"{label} not found")
        if rest[1:2] == ["secrets"] and kind == "apps":
            return self.secret(obj["id"], rest[2:], request)
        if rest[1:] == ["logs"] and kind == "fns":
            if request.query.get("follow") != "true":
                return error(400, "add ?follow=true")
            return 200, [("Content-Type", "text/event-stream")], self.log_events
        if rest[1:] == ["scale"] and kind == "fns":
            counts = self.scale.setdefault(
                obj["id"], {"running": 1, "frozen": 2, "starting": 0, "min_hot": 0}
            )
            if request.method == "PUT":
                counts["min_hot"] = request.json()["min_hot"]
            return answer(200, counts)
        if rest[1:]:
            return error(404, "Not found")
        if request.method == "GET":
            return answer(200, self.shown(kind, obj))
        if request.method == "DELETE":
            del store[obj["id"]]
            return 204, [], b""
        if request.method == "PUT":
            change = request.json()
            for key, value in change.items():
                if key in ("config", "annotations"):
                    merged = {**obj.get(key, {}), **value}
                    obj[key] = {k: v for k, v in merged.items() if v != ""}
                else:
                    obj[key] = value
            obj["updated_at"] = "2024-01-02T00:00:00.000Z"
            return answer(200, self.shown(kind, obj))
        return error(405, "Method not allowed")

    def secret(self, app_id: str, rest: list[str], request: Recorded) -> Reply:
        """fnagent's write-only secrets routes."""
        stamps = {
            "created_at": "2024-01-01T00:00:00.000Z",
            "updated_at": "2024-01-01T00:00:00.000Z",
        }
        if not rest and request.method == "GET":
            names = sorted(name for app, name in self.secrets if app == app_id)
            return answer(200, {"items": [{"name": name, **stamps} for name in names]})
        if len(rest) == 1 and request.method == "PUT":
            self.secrets[(app_id, rest[0])] = request.json()["value"]
            return answer(200, {"name": rest[0], **stamps})
        if len(rest) == 1 and request.method == "DELETE":
            if self.secrets.pop((app_id, rest[0]), None) is None:
                return error(404, "Secret not found")
            return 204, [], b""
        return error(405, "Method not allowed")

    def list(self, kind: str, store: dict[str, JSONObject], query: dict[str, str]) -> Reply:
        if kind == "fns" and "app_id" not in query:
            return error(400, "Missing app ID")
        items = sorted(store.values(), key=lambda o: o["name"])
        for key in ("name", "app_id", "fn_id"):
            if key in query:
                items = [o for o in items if o.get(key) == query[key]]
        if "cursor" in query:
            after = base64.b64decode(query["cursor"]).decode()
            items = [o for o in items if o["name"] > after]
        per_page = int(query.get("per_page", self.per_page_default))
        page = items[:per_page]
        document: JSONObject = {"items": [self.shown(kind, o) for o in page]}
        if len(items) > per_page:
            document["next_cursor"] = base64.b64encode(page[-1]["name"].encode()).decode()
        return answer(200, document)

    def create(
        self, kind: str, store: dict[str, JSONObject], label: str, body: JSONObject
    ) -> Reply:
        if not body.get("name"):
            return error(400, f"Missing {label.lower()} name")
        scope = "fn_id" if kind == "triggers" else "app_id" if kind == "fns" else None
        if any(
            o["name"] == body["name"] and (scope is None or o[scope] == body.get(scope))
            for o in store.values()
        ):
            return error(409, f"{label} already exists")
        if kind != "apps" and body.get("app_id") not in self.apps:
            return error(404, "App not found")
        if kind == "triggers" and body.get("fn_id") not in self.fns:
            return error(404, "Fn not found")
        obj = {"id": self.new_id(kind[:3]), "config": {}, "annotations": {}, **body}
        if kind == "fns":
            obj = {"memory": 128, "timeout": 30, "idle_timeout": 30, **obj}
        if kind == "triggers":
            del obj["config"]
        store[obj["id"]] = obj
        return answer(200, self.shown(kind, obj))

    def shown(self, kind: str, obj: JSONObject) -> JSONObject:
        obj = json.loads(json.dumps(obj))
        if self.annotate_endpoints and kind == "fns":
            obj["annotations"]["fnproject.io/fn/invokeEndpoint"] = f"{self.url}/invoke/{obj['id']}"
        if self.annotate_endpoints and kind == "triggers":
            app = self.apps[obj["app_id"]]["name"]
            obj["annotations"]["fnproject.io/trigger/httpEndpoint"] = (
                f"{self.url}/t/{app}{obj['source']}"
            )
        return obj

    def invoke(self, fn_id: str) -> Reply:
        if fn_id not in self.fns:
            return error(404, "Fn not found")
        call_id = [("Fn-Call-Id", f"01CALL{len(self.requests):06d}")]
        if self.invoke_answer is not None:
            status, headers, body = self.invoke_answer
            return status, headers + call_id, body
        request = self.requests[-1]
        content_type = request.headers.get("content-type", "application/octet-stream")
        return 200, [("Content-Type", content_type), *call_id], request.body


@pytest.fixture
def api() -> Iterator[FakeFn]:
    fake = FakeFn()
    for url in serve(fake.handle):
        fake.url = url
        yield fake


@pytest.fixture
def dead_url() -> str:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fnagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The console entry as a user runs it (usage errors exit 125 there, not click's 2)."""
    import os

    full_env = {**os.environ, "FN_API_URL": "http://127.0.0.1:9", **(env or {})}
    full_env.pop("FN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "fnagent", *args],
        capture_output=True,
        env=full_env,
        timeout=60,
        check=False,
    )


# -- registration and import cost ------------------------------------------------------------


def test_help_lists_the_client_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("apps", "fns", "triggers", "invoke", "deploy", "logs", "run"):
        assert f"  {name} " in result.output


def test_importing_the_cli_loads_neither_the_client_commands_nor_the_run_body() -> None:
    code = (
        "import sys, fnagent.cli; print(sorted(m for m in "
        "('fnagent.client', 'fnagent.cli.commands', 'fnagent.cli.run', 'http.client')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert done.stdout.strip() == b"[]"


def test_a_client_command_loads_on_demand() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from fnagent.cli.main import main\n"
        "r = CliRunner().invoke(main, ['fns', '--help'])\n"
        "print(r.exit_code, 'fnagent.cli.commands' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert done.stdout.strip() == b"0 True"


def test_help_names_the_client_default_url() -> None:
    result = CliRunner().invoke(main, ["apps", "list", "--help"])
    assert DEFAULT_API_URL in result.output.replace("\n", " ").replace("  ", "")


# -- apps ------------------------------------------------------------------------------------


def test_apps_create_sends_config_and_json_annotations(api: FakeFn) -> None:
    result = cli(
        api.url,
        "apps",
        "create",
        "shop",
        "--config",
        "DB=postgres://x?a=b",
        "-c",
        "EMPTY=",
        "--annotation",
        'team={"name": "blue", "size": 3}',
        "-a",
        "tier=1",
    )
    assert result.exit_code == 0, result.stderr
    body = api.sent("POST", "/v2/apps")[0].json()
    assert body == {
        "name": "shop",
        "config": {"DB": "postgres://x?a=b", "EMPTY": ""},
        "annotations": {"team": {"name": "blue", "size": 3}, "tier": 1},
    }
    lines = result.stdout.splitlines()
    assert lines[0].startswith("id: 01APP") and lines[1] == "name: shop"
    assert "  DB: postgres://x?a=b" in lines
    assert '  team: {"name": "blue", "size": 3}' in lines


def test_apps_create_json_prints_the_servers_object(api: FakeFn) -> None:
    result = cli(api.url, "apps", "create", "shop", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == api.apps[json.loads(result.stdout)["id"]]


def test_duplicate_app_prints_the_servers_message_and_exits_1(api: FakeFn) -> None:
    api.add_app("shop")
    result = cli(api.url, "apps", "create", "shop")
    assert result.exit_code == 1
    assert result.stderr == "fnagent: App already exists\n"
    assert result.stdout == ""


def test_app_is_found_by_name_through_the_name_filter(api: FakeFn) -> None:
    app = api.add_app("shop")
    api.add_app("other")
    result = cli(api.url, "apps", "get", "shop", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["id"] == app["id"]
    assert [(r.method, r.path, r.query) for r in api.requests] == [
        ("GET", "/v2/apps", {"name": "shop"})
    ]


def test_app_is_found_by_id_when_no_app_has_that_name(api: FakeFn) -> None:
    app = api.add_app("shop")
    result = cli(api.url, "apps", "get", app["id"])
    assert result.exit_code == 0
    assert "name: shop" in result.stdout.splitlines()
    assert [r.path for r in api.requests] == ["/v2/apps", f"/v2/apps/{app['id']}"]


def test_missing_app_exits_1_with_the_servers_404_message(api: FakeFn) -> None:
    result = cli(api.url, "apps", "get", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("fnagent: App not found")
    assert "'nope'" in result.stderr
    assert "Traceback" not in result.output


def test_apps_update_merges_and_an_empty_value_deletes(api: FakeFn) -> None:
    app = api.add_app("shop", config={"KEEP": "1", "DROP": "2"})
    result = cli(api.url, "apps", "update", "shop", "-c", "DROP=", "-c", "NEW=3")
    assert result.exit_code == 0, result.stderr
    put = api.sent("PUT", f"/v2/apps/{app['id']}")[0]
    assert put.json() == {"config": {"DROP": "", "NEW": "3"}}
    assert api.apps[app["id"]]["config"] == {"KEEP": "1", "NEW": "3"}
    assert "  DROP: " not in result.stdout and "  NEW: 3" in result.stdout


def test_apps_syslog_url_is_set_on_create_and_changed_or_removed_on_update(api: FakeFn) -> None:
    result = cli(api.url, "apps", "create", "shop", "--syslog-url", "tcp://logs:514")
    assert result.exit_code == 0, result.stderr
    assert api.sent("POST", "/v2/apps")[0].json() == {
        "name": "shop",
        "syslog_url": "tcp://logs:514",
    }
    app_id = json.loads(cli(api.url, "apps", "get", "shop", "--json").stdout)["id"]
    for value in ("udp://l:1", ""):  # "" removes it
        result = cli(api.url, "apps", "update", "shop", "--syslog-url", value)
        assert result.exit_code == 0, result.stderr
        assert api.sent("PUT", f"/v2/apps/{app_id}")[-1].json() == {"syslog_url": value}


def test_apps_update_without_changes_is_a_usage_error(api: FakeFn) -> None:
    api.add_app("shop")
    result = cli(api.url, "apps", "update", "shop")
    assert result.exit_code == 2  # click's usage error; the console entry makes it 125
    assert "nothing to update" in result.stderr
    assert api.requests == []


def test_apps_delete_resolves_the_name_then_deletes_by_id(api: FakeFn) -> None:
    app = api.add_app("shop")
    result = cli(api.url, "apps", "delete", "shop")
    assert result.exit_code == 0
    assert result.stdout == f"deleted app shop ({app['id']})\n"
    assert [(r.method, r.path) for r in api.writes()] == [("DELETE", f"/v2/apps/{app['id']}")]
    assert api.apps == {}


def test_apps_list_is_an_aligned_table_with_a_hint_when_more_pages(api: FakeFn) -> None:
    for name in ("a", "bbbbbbbb", "cc"):
        api.add_app(name)
    result = cli(api.url, "apps", "list", "--per-page", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "a", "bbbbbbbb"]
    assert len({line.index("01APP") for line in lines[1:]}) == 1
    assert lines[0].index("ID") == lines[1].index("01APP")
    assert "--all" in result.stderr and "--cursor" in result.stderr


def test_apps_list_all_follows_next_cursor(api: FakeFn) -> None:
    names = [f"app{i:02d}" for i in range(7)]
    for name in reversed(names):
        api.add_app(name)
    result = cli(api.url, "apps", "list", "--all", "--per-page", "3")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == names
    gets = api.sent("GET", "/v2/apps")
    assert len(gets) == 3
    assert "cursor" not in gets[0].query
    assert [base64.b64decode(g.query["cursor"]).decode() for g in gets[1:]] == ["app02", "app05"]
    assert result.stderr == ""


def test_apps_list_all_json_is_one_items_document(api: FakeFn) -> None:
    for i in range(5):
        api.add_app(f"app{i}")
    result = cli(api.url, "apps", "list", "--all", "--per-page", "2", "--json")
    document = json.loads(result.stdout)
    assert list(document) == ["items"]
    assert [a["name"] for a in document["items"]] == [f"app{i}" for i in range(5)]


def test_apps_list_json_without_all_is_the_servers_page(api: FakeFn) -> None:
    for i in range(3):
        api.add_app(f"app{i}")
    document = json.loads(cli(api.url, "apps", "list", "--per-page", "2", "--json").stdout)
    assert [a["name"] for a in document["items"]] == ["app0", "app1"]
    assert document["next_cursor"]


# -- fns -------------------------------------------------------------------------------------


def test_fns_create_sends_numbers_and_config(api: FakeFn) -> None:
    app = api.add_app("shop")
    result = cli(
        api.url,
        "fns",
        "create",
        "shop",
        "hello",
        "fnproject/hello:1",
        "--memory",
        "256",
        "--timeout",
        "60",
        "--idle-timeout",
        "5",
        "-c",
        "GREETING=hi",
    )
    assert result.exit_code == 0, result.stderr
    assert api.sent("POST", "/v2/fns")[0].json() == {
        "name": "hello",
        "app_id": app["id"],
        "image": "fnproject/hello:1",
        "memory": 256,
        "timeout": 60,
        "idle_timeout": 5,
        "config": {"GREETING": "hi"},
    }
    assert "memory: 256" in result.stdout.splitlines()


def test_fns_list_get_update_delete(api: FakeFn) -> None:
    app = api.add_app("shop")
    fn = api.add_fn(app, "hello")
    api.add_fn(app, "bye", image="fnproject/bye")
    listed = cli(api.url, "fns", "list", "shop")
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["NAME", "IMAGE"],
        ["bye", "fnproject/bye"],
        ["hello", "fnproject/hello"],
    ]
    assert api.sent("GET", "/v2/fns")[0].query == {"app_id": app["id"]}

    got = json.loads(cli(api.url, "fns", "get", "shop", "hello", "--json").stdout)
    assert got["id"] == fn["id"]

    updated = cli(api.url, "fns", "update", "shop", "hello", "--image", "fnproject/hello:2")
    assert updated.exit_code == 0
    assert api.sent("PUT")[0].json() == {"image": "fnproject/hello:2"}
    assert "image: fnproject/hello:2" in updated.stdout.splitlines()

    deleted = cli(api.url, "fns", "delete", "shop", fn["id"])
    assert deleted.exit_code == 0
    assert api.sent("DELETE")[0].path == f"/v2/fns/{fn['id']}"


def test_fn_id_of_another_app_is_not_found(api: FakeFn) -> None:
    api.add_app("shop")
    other_fn = api.add_fn(api.add_app("other"), "hello")
    result = cli(api.url, "fns", "get", "shop", other_fn["id"])
    assert result.exit_code == 1
    assert result.stderr.startswith("fnagent: Fn not found")


def test_fns_scale_shows_counts_and_sets_min_hot(api: FakeFn) -> None:
    fn = api.add_fn(api.add_app("shop"), "hello")
    shown = cli(api.url, "fns", "scale", "shop", "hello")
    assert shown.stdout.splitlines() == ["running: 1", "frozen: 2", "starting: 0", "min_hot: 0"]
    changed = cli(api.url, "fns", "scale", "shop", "hello", "--min-hot", "3", "--json")
    assert changed.exit_code == 0
    put = api.sent("PUT", f"/v2/fns/{fn['id']}/scale")[0]
    assert put.json() == {"min_hot": 3}
    assert json.loads(changed.stdout)["min_hot"] == 3


# -- triggers --------------------------------------------------------------------------------


def test_triggers_create_list_get_update_delete(api: FakeFn) -> None:
    app = api.add_app("shop")
    fn = api.add_fn(app, "hello")
    api.add_trigger(api.add_fn(app, "bye"), "bye-t", "/bye")

    created = cli(api.url, "triggers", "create", "shop", "hello", "hello-t", "--source", "hi")
    assert created.exit_code == 0, created.stderr
    assert api.sent("POST", "/v2/triggers")[0].json() == {
        "name": "hello-t",
        "app_id": app["id"],
        "fn_id": fn["id"],
        "type": "http",
        "source": "/hi",
    }

    listed = cli(api.url, "triggers", "list", "shop").stdout.splitlines()
    assert listed[0].split() == ["FUNCTION", "NAME", "TYPE", "SOURCE", "ENDPOINT", "ID"]
    assert listed[1].split()[:5] == ["bye", "bye-t", "http", "/bye", f"{api.url}/t/shop/bye"]
    assert listed[2].split()[:4] == ["hello", "hello-t", "http", "/hi"]

    only = cli(api.url, "triggers", "list", "shop", "--fn", "hello").stdout.splitlines()
    assert [line.split()[1] for line in only[1:]] == ["hello-t"]
    assert api.sent("GET", "/v2/triggers")[-1].query == {"app_id": app["id"], "fn_id": fn["id"]}

    got = cli(api.url, "triggers", "get", "shop", "hello-t")
    assert "source: /hi" in got.stdout.splitlines()

    updated = cli(api.url, "triggers", "update", "shop", "hello-t", "--source", "/hello")
    assert updated.exit_code == 0
    assert api.sent("PUT")[0].json() == {"source": "/hello"}

    deleted = cli(api.url, "triggers", "delete", "shop", "hello-t")
    assert deleted.exit_code == 0 and deleted.stdout.startswith("deleted trigger hello-t")
    assert len(api.triggers) == 1


def test_a_trigger_name_on_two_fns_asks_for_the_id(api: FakeFn) -> None:
    app = api.add_app("shop")
    api.add_trigger(api.add_fn(app, "a"), "web", "/a")
    api.add_trigger(api.add_fn(app, "b"), "web", "/b")
    result = cli(api.url, "triggers", "get", "shop", "web")
    assert result.exit_code == 1
    assert "named 'web'" in result.stderr and "id" in result.stderr


# -- invoke ----------------------------------------------------------------------------------


def test_invoke_round_trips_non_utf8_bytes_exactly(api: FakeFn) -> None:
    fn = api.add_fn(api.add_app("shop"), "hello")
    result = cli(api.url, "invoke", "shop", "hello", input=NOT_UTF8)
    assert result.exit_code == 0, result.stderr
    call = api.sent("POST", f"/invoke/{fn['id']}")[0]
    assert call.body == NOT_UTF8
    assert result.stdout_bytes == NOT_UTF8
    assert result.stderr == ""


def test_invoke_prints_the_answer_byte_exact(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    api.invoke_answer = (200, [("Content-Type", "application/octet-stream")], b"\x00\xff\r\n")
    result = cli(api.url, "invoke", "shop", "hello", input=b"")
    assert result.stdout_bytes == b"\x00\xff\r\n"


def test_invoke_sends_content_type_and_headers(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    result = cli(
        api.url,
        "invoke",
        "shop",
        "hello",
        "--content-type",
        "application/json",
        "-H",
        "X-Trace:abc",
        "-H",
        "Content-Type: text/plain",
        "-H",
        "X-Two:  a: b ",
        input=b'{"name": "fn"}',
    )
    assert result.exit_code == 0
    call = api.sent("POST")[0]
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-trace"] == "abc"
    assert call.headers["x-two"] == "a: b"


def test_invoke_detached_queues_the_call_and_prints_its_id(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    api.invoke_answer = (202, [], b"")
    result = cli(
        api.url,
        "invoke",
        "--detached",
        "--callback-url",
        "http://h/cb",
        "shop",
        "hello",
        input=b"x",
    )
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("01CALL") and result.stdout.endswith("\n")
    call = api.sent("POST")[0]
    assert call.headers["fn-invoke-type"] == "detached"
    assert call.headers["fn-callback-url"] == "http://h/cb"
    assert call.body == b"x"
    refused = cli(api.url, "invoke", "--callback-url", "http://h/cb", "shop", "hello", input=b"")
    assert refused.exit_code == 2 and "--callback-url needs --detached" in refused.stderr


def test_invoke_verbose_shows_status_and_call_id_on_stderr(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    result = cli(api.url, "invoke", "shop", "hello", "--verbose", input=b"hi")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"hi"
    assert result.stderr.startswith("HTTP/1.1 200 OK\n")
    assert "Fn-Call-Id: 01CALL" in result.stderr


def test_invoke_error_prints_the_servers_message_and_exits_1(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    api.invoke_answer = (
        502,
        [("Content-Type", "application/json")],
        b'{"message": "function failed"}',
    )
    result = cli(api.url, "invoke", "shop", "hello", input=b"x")
    assert result.exit_code == 1
    assert result.stderr == "fnagent: function failed\n"
    assert result.stdout_bytes == b""


def test_invoke_error_without_json_prints_the_raw_body(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    api.invoke_answer = (503, [("Content-Type", "text/plain")], b"overloaded, retry later\n")
    result = cli(api.url, "invoke", "shop", "hello", input=b"x")
    assert result.exit_code == 1
    assert result.stderr == "fnagent: overloaded, retry later\n"


def test_invoke_of_a_missing_fn_exits_1(api: FakeFn) -> None:
    api.add_app("shop")
    result = cli(api.url, "invoke", "shop", "nope", input=b"x")
    assert result.exit_code == 1
    assert result.stderr.startswith("fnagent: Fn not found")
    assert api.sent("POST") == []


# -- deploy ----------------------------------------------------------------------------------


def test_deploy_creates_everything_then_changes_nothing(api: FakeFn) -> None:
    args = (
        "deploy",
        "shop",
        "hello",
        "--image",
        "fnproject/hello:1",
        "--memory",
        "256",
        "-c",
        "A=1",
        "--trigger",
        "/hello",
    )
    first = cli(api.url, *args)
    assert first.exit_code == 0, first.stderr
    assert [(r.method, r.path) for r in api.writes()] == [
        ("POST", "/v2/apps"),
        ("POST", "/v2/fns"),
        ("POST", "/v2/triggers"),
    ]
    (fn,) = api.fns.values()
    assert fn["memory"] == 256 and fn["config"] == {"A": "1"}
    out = first.stdout.splitlines()
    assert "app: shop (created)" in out and "fn: hello (created)" in out
    assert f"invoke_endpoint: {api.url}/invoke/{fn['id']}" in out
    assert f"trigger_endpoint: {api.url}/t/shop/hello" in out

    writes_before = len(api.writes())
    second = cli(api.url, *args)
    assert second.exit_code == 0, second.stderr
    assert len(api.writes()) == writes_before
    assert "fn: hello (unchanged)" in second.stdout.splitlines()
    assert f"invoke_endpoint: {api.url}/invoke/{fn['id']}" in second.stdout.splitlines()


def test_deploy_updates_only_what_changed(api: FakeFn) -> None:
    app = api.add_app("shop")
    fn = api.add_fn(app, "hello", image="fnproject/hello:1", config={"A": "1", "B": "2"})
    result = cli(
        api.url,
        "deploy",
        "shop",
        "hello",
        "--image",
        "fnproject/hello:2",
        "--timeout",
        "30",
        "-c",
        "A=1",
        "-c",
        "B=",
        "-c",
        "C=",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert [r.json() for r in api.writes()] == [{"image": "fnproject/hello:2", "config": {"B": ""}}]
    document = json.loads(result.stdout)
    assert document["actions"] == {"app": "unchanged", "fn": "updated"}
    assert document["fn_changes"] == ["config", "image"]
    assert document["fn"]["id"] == fn["id"] and document["trigger"] is None


def test_deploy_moves_its_trigger_to_a_new_source(api: FakeFn) -> None:
    app = api.add_app("shop")
    trigger = api.add_trigger(api.add_fn(app, "hello"), "hello", "/old")
    result = cli(
        api.url, "deploy", "shop", "hello", "--image", "fnproject/hello", "--trigger", "new"
    )
    assert result.exit_code == 0, result.stderr
    assert [(r.method, r.path, r.json()) for r in api.writes()] == [
        ("PUT", f"/v2/triggers/{trigger['id']}", {"source": "/new"})
    ]


def test_deploy_builds_urls_when_the_server_does_not_annotate(api: FakeFn) -> None:
    api.annotate_endpoints = False
    result = cli(api.url, "deploy", "shop", "hello", "--image", "img", "--trigger", "/x/y")
    (fn,) = api.fns.values()
    assert f"invoke_endpoint: {api.url}/invoke/{fn['id']}" in result.stdout.splitlines()
    assert f"trigger_endpoint: {api.url}/t/shop/x/y" in result.stdout.splitlines()


# -- settings: URL, token, group-level options -----------------------------------------------


def test_token_is_sent_as_bearer_on_every_request(api: FakeFn) -> None:
    api.add_fn(api.add_app("shop"), "hello")
    cli(api.url, "invoke", "shop", "hello", "--token", "s3cret", input=b"")
    assert len(api.requests) >= 3
    assert {r.headers.get("authorization") for r in api.requests} == {"Bearer s3cret"}


def test_token_comes_from_fn_token(api: FakeFn) -> None:
    cli(api.url, "apps", "list", env={"FN_TOKEN": "from-env"})
    assert api.requests[0].headers["authorization"] == "Bearer from-env"


def test_no_token_no_authorization_header(api: FakeFn) -> None:
    cli(api.url, "apps", "list")
    assert "authorization" not in api.requests[0].headers


def test_options_on_the_group_apply_and_the_command_wins(api: FakeFn, dead_url: str) -> None:
    api.add_app("shop")
    on_group = cli(dead_url, "apps", "--api-url", api.url, "--json", "get", "shop")
    assert on_group.exit_code == 0, on_group.stderr
    assert json.loads(on_group.stdout)["name"] == "shop"
    overridden = cli(dead_url, "apps", "--api-url", dead_url, "list", "--api-url", api.url)
    assert overridden.exit_code == 0, overridden.stderr


def test_api_url_prefix_and_v2_suffix(api: FakeFn) -> None:
    assert ApiClient(api.url + "/v2/").base_url == api.url
    assert cli(api.url + "/v2", "apps", "list").exit_code == 0
    assert api.requests[0].path == "/v2/apps"


def test_unreachable_server_exits_1_with_a_hint_naming_the_url(dead_url: str) -> None:
    result = cli(dead_url, "apps", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"fnagent: cannot reach the API at {dead_url}/v2/apps")
    assert "FN_API_URL" in result.stderr and "fnagent serve" in result.stderr
    assert "Traceback" not in result.output


def test_non_json_error_body_is_shown_raw() -> None:
    for url in serve(lambda r: (404, [("Content-Type", "text/html")], b"<h1>no such page</h1>")):
        result = cli(url, "apps", "get", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("fnagent: <h1>no such page</h1>")


def test_a_server_repeating_its_cursor_is_stopped() -> None:
    page = {"items": [{"id": "1", "name": "a"}], "next_cursor": "same"}
    for url in serve(lambda r: answer(200, page)):
        with pytest.raises(ApiError, match="repeated the cursor"):
            ApiClient(url).list_all("/v2/apps")


# -- usage errors through the console entry: exit 125 -----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["apps", "create", "shop", "--config", "NOEQUALS"],
        ["apps", "create", "shop", "--config", "=value"],
        ["apps", "create", "shop", "--annotation", "k={not json"],
        ["invoke", "shop", "hello", "-H", "no colon"],
        ["deploy", "shop", "hello"],
        ["apps", "list", "--api-url", "ftp://host"],
    ],
    ids=[
        "config-no-equals",
        "config-empty-key",
        "annotation-bad-json",
        "bad-header",
        "deploy-without-image",
        "bad-url",
    ],
)
def test_usage_errors_exit_125_without_calling_the_api(args: list[str]) -> None:
    done = fnagent(*args)
    assert done.returncode == 125, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"Error: " in done.stderr


def test_api_errors_exit_1_through_the_console_entry(dead_url: str) -> None:
    done = fnagent("apps", "list", env={"FN_API_URL": dead_url})
    assert done.returncode == 1
    assert done.stderr.startswith(b"fnagent: cannot reach the API at")


# -- parsers and formatting ------------------------------------------------------------------


def test_config_value_keeps_later_equals_signs_and_empty_annotation_is_the_delete_marker(
    api: FakeFn,
) -> None:
    app = api.add_app("shop", annotations={"old": 1})
    cli(api.url, "apps", "update", "shop", "-c", "URL=a=b=c", "-a", "old=", "-a", 's="x"')
    assert api.sent("PUT")[0].json() == {
        "config": {"URL": "a=b=c"},
        "annotations": {"old": "", "s": "x"},
    }
    assert api.apps[app["id"]]["annotations"] == {"s": "x"}


def test_format_table_pads_columns() -> None:
    assert format_table(("A", "LONGER"), [("xxx", "1"), ("y", "22")]) == [
        "A     LONGER",
        "xxx   1",
        "y     22",
    ]
    assert format_table(("NAME", "ID"), []) == ["NAME   ID"]


def test_bad_option_value_is_a_click_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        main.main(["apps", "create", "x", "-c", "bad"], standalone_mode=False)


@pytest.mark.parametrize(("value", "mib"), [("64", 64), ("64m", 64), ("1g", 1024), ("8192k", 8)])
def test_deploy_memory_takes_the_run_syntax(api: FakeFn, value: str, mib: int) -> None:
    done = cli(api.url, "deploy", "shop", "hello", "--image", "fnproject/hello:1", "-m", value)
    assert done.exit_code == 0, done.stderr
    (fn,) = api.fns.values()
    assert fn["memory"] == mib


@pytest.mark.parametrize("value", ["512k", "0", "5m"])
def test_deploy_memory_below_the_floor_is_refused(api: FakeFn, value: str) -> None:
    done = cli(api.url, "deploy", "shop", "hello", "--image", "fnproject/hello:1", "-m", value)
    assert done.exit_code != 0
    assert "at least 6m" in done.stderr
    assert not api.writes()


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_set_sends_stdin_exactly_and_shows_no_value(api: FakeFn) -> None:
    app = api.add_app("shop")
    value = "s3cr3t line 1\nline 2 \u2713\n"
    result = cli(api.url, "secrets", "set", "shop", "db.password", input=value.encode())
    assert result.exit_code == 0, result.output
    assert api.secrets == {(app["id"], "db.password"): value}
    assert "name: db.password" in result.output
    assert "s3cr3t" not in result.output

    listed = cli(api.url, "secrets", "list", "shop")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].split() == ["NAME", "CREATED", "UPDATED"]
    assert "db.password" in listed.output and "s3cr3t" not in listed.output
    as_json = json.loads(cli(api.url, "secrets", "list", "shop", "--json").output)
    assert [item["name"] for item in as_json["items"]] == ["db.password"]

    deleted = cli(api.url, "secrets", "delete", "shop", "db.password")
    assert deleted.exit_code == 0 and "deleted secret db.password" in deleted.output
    missing = cli(api.url, "secrets", "delete", "shop", "db.password")
    assert missing.exit_code == 1 and "Secret not found" in missing.output


def test_secrets_set_refuses_an_empty_or_binary_stdin(api: FakeFn) -> None:
    api.add_app("shop")
    empty = cli(api.url, "secrets", "set", "shop", "token", input=b"")
    assert empty.exit_code != 0
    assert "no value for secret 'token' on stdin" in empty.output
    binary = cli(api.url, "secrets", "set", "shop", "token", input=NOT_UTF8)
    assert binary.exit_code != 0 and "not UTF-8" in binary.output
    assert api.writes() == []


def test_secrets_set_refuses_an_empty_stdin_with_usage_status() -> None:
    done = fnagent("secrets", "set", "shop", "token")
    assert done.returncode == 125, done
    assert b"no value for secret 'token' on stdin" in done.stderr


# -- logs --follow ---------------------------------------------------------------------------


def test_logs_follow_prints_each_line_with_its_call_and_says_drops(api: FakeFn) -> None:
    app = api.add_app("myapp")
    fn = api.add_fn(app, "hello")
    result = cli(api.url, "logs", "myapp", "hello", "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout == "c1 stderr hello\n- stdout idle\n"
    assert "fnagent: 3 lines dropped (reading too slowly)" in result.stderr
    (sent,) = api.sent("GET", f"/v2/fns/{fn['id']}/logs")
    assert sent.query == {"follow": "true"}


def test_logs_follow_json_prints_each_event(api: FakeFn) -> None:
    app = api.add_app("myapp")
    api.add_fn(app, "hello")
    result = cli(api.url, "logs", "myapp", "hello", "--follow", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["line", "dropped", "line"]
    assert events[1] == {"event": "dropped", "dropped": 3}


def test_logs_needs_follow_and_a_known_fn(api: FakeFn) -> None:
    api.add_app("myapp")
    assert cli(api.url, "logs", "myapp", "hello").exit_code != 0
    missing = cli(api.url, "logs", "myapp", "nope", "--follow")
    assert missing.exit_code == 1
    assert "Fn not found" in missing.stderr or "not found" in missing.stderr
