"""``fnagent calls list``, ``calls get`` and ``logs`` against the in-memory Fn API of the
client tests, taught the calls routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.fakeapi import Recorded, Reply, answer, cli, error, serve

JSONObject = dict[str, Any]


@dataclass
class FakeCalls:
    """Just enough of Fn's API for the calls commands: apps and fns found by name, and
    ``/v2/fns/{fn_id}/calls`` one page of ``page_size`` at a time."""

    url: str = ""
    apps: dict[str, JSONObject] = field(default_factory=dict)
    fns: dict[str, JSONObject] = field(default_factory=dict)
    calls: dict[str, list[JSONObject]] = field(default_factory=dict)
    logs: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    page_size: int = 2

    def add_app(self, name: str) -> JSONObject:
        app = {"id": f"app-{name}", "name": name}
        self.apps[app["id"]] = app
        return app

    def add_fn(self, app: JSONObject, name: str) -> JSONObject:
        fn = {"id": f"fn-{name}", "name": name, "app_id": app["id"], "image": "hello"}
        self.fns[fn["id"]] = fn
        return fn

    def sent(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def add_call(self, fn: JSONObject, n: int, **fields: Any) -> JSONObject:
        call = {
            "id": f"call{n:03d}",
            "fn_id": fn["id"],
            "app_id": fn["app_id"],
            "status": "success",
            "created_at": f"2024-01-01T00:00:{n:02d}.000Z",
            "started_at": None,
            "completed_at": None,
            "http_status": 200,
            "error": None,
            "start": "hot",
            "detached": False,
            "attempts": 1,
            "timings": {"queued_ms": 0.5, "start_ms": 0.0, "exec_ms": 2.25},
            **fields,
        }
        self.calls.setdefault(fn["id"], []).insert(0, call)  # newest first
        return call

    def handle(self, request: Recorded) -> Reply:
        self.requests.append(request)
        parts = [p for p in request.path.split("/") if p]
        name = request.query.get("name")
        if parts == ["v2", "apps"]:
            return answer(200, {"items": [a for a in self.apps.values() if a["name"] == name]})
        if parts == ["v2", "fns"]:
            app_id = request.query.get("app_id")
            found = [f for f in self.fns.values() if (f["app_id"], f["name"]) == (app_id, name)]
            return answer(200, {"items": found})
        if parts[:2] == ["v2", "apps"] and len(parts) == 3:
            app = self.apps.get(parts[2])
            return answer(200, app) if app else error(404, "App not found")
        if parts[:2] == ["v2", "fns"] and len(parts) == 3:
            fn = self.fns.get(parts[2])
            return answer(200, fn) if fn else error(404, "Fn not found")
        if parts[:2] != ["v2", "fns"] or parts[3:4] != ["calls"]:
            return error(404, "Path not found")
        if parts[2] not in self.fns:
            return error(404, "Fn not found")
        calls = self.calls.get(parts[2], [])
        if len(parts) == 4:
            status = request.query.get("status")
            chosen = [c for c in calls if status is None or c["status"] == status]
            start = int(request.query.get("cursor") or 0)
            page: JSONObject = {"items": chosen[start : start + self.page_size]}
            if start + self.page_size < len(chosen):
                page["next_cursor"] = str(start + self.page_size)
            return answer(200, page)
        call = next((c for c in calls if c["id"] == parts[4]), None)
        if len(parts) == 5:
            return answer(200, call) if call else error(404, "Call not found")
        if parts[5:] == ["log"] and call and call["id"] in self.logs:
            return 200, [("Content-Type", "text/plain")], self.logs[call["id"]]
        return error(404, "Call log not found")


@pytest.fixture
def api() -> Iterator[FakeCalls]:
    fake = FakeCalls()
    for url in serve(fake.handle):
        fake.url = url
        yield fake


def seeded(api: FakeCalls) -> JSONObject:
    app = api.add_app("app")
    fn = api.add_fn(app, "fn")
    for n in range(3):
        api.add_call(fn, n, status="error" if n == 1 else "success")
    return fn


def test_calls_list_is_a_table_newest_first_with_a_hint(api: FakeCalls) -> None:
    fn = seeded(api)
    result = cli(api.url, "calls", "list", "app", "fn")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "HTTP", "START", "CREATED_AT", "MS"]
    assert lines[1].split() == [
        "call002",
        "success",
        "200",
        "hot",
        "2024-01-01T00:00:02.000Z",
        "2.8",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["call002", "call001"]
    assert "--cursor 2" in result.stderr
    assert api.sent("GET", f"/v2/fns/{fn['id']}/calls")[0].query == {}


def test_calls_list_all_json_and_filters(api: FakeCalls) -> None:
    fn = seeded(api)
    result = cli(api.url, "calls", "list", "app", "fn", "--all", "--json")
    assert [c["id"] for c in json.loads(result.stdout)["items"]] == [
        "call002",
        "call001",
        "call000",
    ]
    result = cli(
        api.url,
        "calls",
        "list",
        "app",
        fn["id"],
        "--status",
        "error",
        "--from-time",
        "5",
        "--to-time",
        "9",
    )
    assert result.exit_code == 0 and "call001" in result.stdout
    sent = api.sent("GET", f"/v2/fns/{fn['id']}/calls")[-1]
    assert sent.query == {"status": "error", "from_time": "5", "to_time": "9"}
    bad = cli(api.url, "calls", "list", "app", "fn", "--status", "done")
    assert bad.exit_code != 0 and "'done' is not one of" in bad.output


def test_calls_get_shows_one_record(api: FakeCalls) -> None:
    seeded(api)
    result = cli(api.url, "calls", "get", "app", "fn", "call001")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "id: call001" and "status: error" in lines
    assert "timings:" in lines and "  exec_ms: 2.25" in lines
    as_json = cli(api.url, "calls", "get", "app", "fn", "call001", "--json")
    assert json.loads(as_json.stdout)["status"] == "error"
    missing = cli(api.url, "calls", "get", "app", "fn", "nope")
    assert (missing.exit_code, missing.stderr) == (1, "fnagent: Call not found\n")


def test_logs_prints_the_log_byte_for_byte(api: FakeCalls) -> None:
    seeded(api)
    api.logs["call002"] = b"out line\nerr \xff line\n"
    result = cli(api.url, "logs", "app", "fn", "call002")
    assert result.exit_code == 0 and result.stdout_bytes == b"out line\nerr \xff line\n"
    missing = cli(api.url, "logs", "app", "fn", "call001")
    assert (missing.exit_code, missing.stderr) == (1, "fnagent: Call log not found\n")
    no_fn = cli(api.url, "logs", "app", "nofn", "call001")
    assert no_fn.exit_code == 1 and no_fn.stderr.startswith("fnagent: Fn not found")


def test_help_lists_calls_and_logs() -> None:
    from click.testing import CliRunner

    from fnagent.cli.main import main

    result = CliRunner().invoke(main, ["--help"])
    assert "  calls " in result.output and "  logs " in result.output
    assert CliRunner().invoke(main, ["logs", "--help"]).exit_code == 0
