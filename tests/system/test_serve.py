"""`fnagent serve` as a live process on 127.0.0.1 with a real dockerd: Fn's v2 API, invoke,
triggers, the status table over HTTP, tokens, metrics, restarts, SIGTERM and orphans."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import docker

from tests.helpers import wait_for
from tests.system.helpers import FN_TEST, deploy, free_port, instance_containers, run_cli
from tests.system.server import Server, make_server

# -- ping, version, spec ----------------------------------------------------------------------


def test_ping_version_and_openapi(server: Server) -> None:
    assert server.request("GET", "/").json()["hello"] == "world!"
    assert server.request("GET", "/version").json()["version"]
    spec = server.request("GET", "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/v2/apps" in spec["paths"]


def test_unknown_path_and_wrong_method(server: Server) -> None:
    missing = server.request("GET", "/v2/nothing")
    assert (missing.status, missing.message) == (404, "Path not found")
    wrong = server.request("PATCH", "/v2/apps")
    assert wrong.status == 405
    assert wrong.json()["message"]
    assert server.request("GET", "/invoke/anything").status == 405


# -- CRUD -------------------------------------------------------------------------------------


def test_app_round_trip_of_every_field(server: Server) -> None:
    body = {
        "name": "shop",
        "config": {"A": "1", "B": "2"},
        "annotations": {"team": "blue"},
        "syslog_url": "tcp://127.0.0.1:514",
    }
    created = server.request("POST", "/v2/apps", body)
    assert created.status == 200, created.body
    app = created.json()
    assert {k: app[k] for k in body} == body
    assert app["id"] and app["created_at"] and app["updated_at"]
    assert server.request("GET", f"/v2/apps/{app['id']}").json() == app
    updated = server.request("PUT", f"/v2/apps/{app['id']}", {"config": {"A": "", "C": "3"}}).json()
    assert updated["config"] == {"B": "2", "C": "3"}
    assert updated["annotations"] == {"team": "blue"}
    assert updated["updated_at"] >= app["updated_at"]
    duplicate = server.request("POST", "/v2/apps", {"name": "shop"})
    assert duplicate.status == 409
    assert server.request("DELETE", f"/v2/apps/{app['id']}").status == 204
    assert server.request("GET", f"/v2/apps/{app['id']}").status == 404


def test_fn_and_trigger_round_trip(server: Server) -> None:
    fn = deploy(server, config={"X": "y"}, idle_timeout=10)
    assert (fn["memory"], fn["timeout"], fn["idle_timeout"], fn["config"]) == (
        64,
        5,
        10,
        {"X": "y"},
    )
    assert fn["annotations"]["fnproject.io/fn/invokeEndpoint"] == (
        f"{server.url}/invoke/{fn['id']}"
    )
    updated = server.request("PUT", f"/v2/fns/{fn['id']}", {"timeout": 7, "memory": 0}).json()
    assert (updated["timeout"], updated["memory"]) == (7, 64)  # zero values are ignored
    trigger = server.request(
        "POST",
        "/v2/triggers",
        {
            "app_id": fn["app_id"],
            "fn_id": fn["id"],
            "name": "hook",
            "type": "http",
            "source": "/hook",
        },
    ).json()
    assert trigger["annotations"]["fnproject.io/trigger/httpEndpoint"] == (
        f"{server.url}/t/app/hook"
    )
    listed = server.request("GET", f"/v2/triggers?app_id={fn['app_id']}").json()["items"]
    assert [t["id"] for t in listed] == [trigger["id"]]
    assert server.request("GET", "/v2/fns").status == 400  # app_id is required
    assert server.request("DELETE", f"/v2/fns/{fn['id']}").status == 204
    assert server.request("GET", f"/v2/triggers/{trigger['id']}").status == 404


def test_validation_answers_400_with_a_message(server: Server) -> None:
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/v2/apps", {}),
        ("POST", "/v2/apps", {"name": "has space"}),
        ("POST", "/v2/apps", {"name": 42}),
        ("POST", "/v2/apps", {"name": "ok", "config": {"A": 1}}),
        ("POST", "/v2/fns", {"name": "f", "image": FN_TEST}),
    ]
    for method, path, body in cases:
        answer = server.request(method, path, body)
        assert answer.status == 400, (body, answer.body)
        assert answer.message
    not_json = server.request("POST", "/v2/apps", raw=b"{nope", headers={})
    assert not_json.status == 400
    app = server.request("POST", "/v2/apps", {"name": "bounds"}).json()
    for field, value in (("memory", 9000), ("timeout", 301), ("idle_timeout", 3601)):
        answer = server.request(
            "POST", "/v2/fns", {"app_id": app["id"], "name": "f", "image": FN_TEST, field: value}
        )
        assert answer.status == 400 and "out of range" in answer.message


def test_pagination_with_cursors(server: Server) -> None:
    names = [f"app-{i:03d}" for i in range(45)]
    for name in names:
        assert server.request("POST", "/v2/apps", {"name": name}).status == 200
    seen: list[str] = []
    cursor = ""
    while True:
        page = server.request("GET", f"/v2/apps?per_page=20&cursor={cursor}").json()
        seen.extend(item["name"] for item in page["items"])
        cursor = page.get("next_cursor", "")
        if not cursor:
            break
    assert seen == sorted(names)


def test_restart_keeps_apps_fns_and_triggers(server: Server) -> None:
    fn = deploy(server)
    server.request(
        "POST",
        "/v2/triggers",
        {"app_id": fn["app_id"], "fn_id": fn["id"], "name": "t", "type": "http", "source": "/t"},
    )
    assert server.stop() == 0
    server.start()
    assert server.request("GET", f"/v2/fns/{fn['id']}").json()["name"] == "fn"
    triggers = server.request("GET", f"/v2/triggers?app_id={fn['app_id']}").json()["items"]
    assert [t["source"] for t in triggers] == ["/t"]


# -- invoke and triggers ----------------------------------------------------------------------


def test_invoke_returns_the_answer_and_a_call_id(server: Server) -> None:
    fn = deploy(server)
    answer = server.request("POST", f"/invoke/{fn['id']}", {"echo": "hi"})
    assert answer.status == 200, answer.body
    assert answer.json()["echo"] == "hi"
    assert answer.headers["fn-call-id"]
    assert server.request("POST", "/invoke/no-such-fn", {}).status == 404


def test_trigger_passes_method_url_headers_and_status(server: Server) -> None:
    fn = deploy(server)
    server.request(
        "POST",
        "/v2/triggers",
        {"app_id": fn["app_id"], "fn_id": fn["id"], "name": "t", "type": "http", "source": "/hook"},
    )
    body = {"headers": {"Fn-Http-Status": "202", "Fn-Http-H-X-Reply": "yes"}}
    answer = server.request("PUT", "/t/app/hook?q=1", body, headers={"X-Caller": "me"})
    assert answer.status == 202, answer.body
    assert answer.headers["x-reply"] == "yes"
    seen = answer.json()["headers"]
    lowered = {k.lower(): v for k, v in seen.items()}
    assert lowered["fn-http-method"] == "PUT"
    assert lowered["fn-http-request-url"].endswith("/t/app/hook?q=1")
    assert lowered["fn-http-h-x-caller"] == "me"
    assert server.request("GET", "/t/app/nowhere").status == 404


def test_status_table_over_http(server: Server) -> None:
    fn = deploy(server)
    crash = server.request("POST", f"/invoke/{fn['id']}", {"exit": 1})
    assert (crash.status, crash.message) == (502, "error receiving function response")
    slow = server.request("POST", f"/invoke/{fn['id']}", {"sleep_ms": 8000})
    assert (slow.status, slow.message) == (504, "Timed out")
    big = server.request("POST", f"/invoke/{fn['id']}", raw=b"x" * (7 * 1024 * 1024))
    assert big.status == 413
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


def test_sigterm_with_twenty_calls_in_flight_completes_them_all(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    # 20 cold starts at once on 2 cores take a while: the calls' own timeout is not the point.
    fn = deploy(server, timeout=60)
    statuses: list[int] = []

    def one() -> None:
        statuses.append(server.request("POST", f"/invoke/{fn['id']}", {"sleep_ms": 1500}).status)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    wait_for(lambda: _busy(server, fn["id"]) >= 4, "calls in flight", timeout_s=30)
    assert server.stop(signal.SIGTERM) == 0
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 20
    assert instance_containers(docker_api, cli_env["FNAGENT_INSTANCE_ID"]) == []


def _busy(server: Server, fn_id: str) -> int:
    answer = server.request("GET", f"/v2/fns/{fn_id}/scale")
    return int(answer.json()["running"]) if answer.status == 200 else 0


# -- tokens, metrics, scale, orphans ----------------------------------------------------------


def test_token_guards_management_routes(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    guarded = make_server(tmp_path, cli_env, "--token", "s3cret", token="s3cret").start()
    try:
        assert guarded.request("GET", "/v2/apps").status == 200
        no_token = guarded.request("GET", "/v2/apps", headers={"Authorization": ""})
        assert no_token.status == 401 and no_token.message
        wrong = guarded.request("GET", "/v2/apps", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        assert guarded.request("GET", "/", headers={"Authorization": ""}).status == 200
    finally:
        assert guarded.stop() == 0


def test_metrics_counters_move(server: Server) -> None:
    fn = deploy(server)
    for _ in range(3):
        server.request("POST", f"/invoke/{fn['id']}", {})
    text = server.request("GET", "/metrics").body.decode()
    line = next(
        row
        for row in text.splitlines()
        if row.startswith("fnagent_calls_total") and fn["id"] in row and 'status="200"' in row
    )
    assert float(line.split()[-1]) == 3
    assert 'fnagent_container_starts_total{kind="cold"} 1.0' in text
    assert "fnagent_call_duration_seconds_bucket" in text
    assert "fnagent_hot_containers" in text


def _dropped_bytes(server: Server, fn_id: str) -> float:
    text = server.request("GET", "/metrics").body.decode()
    for row in text.splitlines():
        if row.startswith("fnagent_output_dropped_bytes_total") and fn_id in row:
            return float(row.split()[-1])
    return 0.0


def test_output_between_calls_is_rate_limited_and_counted(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # Not frozen after the call (a freeze would pause the spew): as when a freeze fails.
    server = make_server(tmp_path, {**cli_env, "FN_FREEZE_IDLE_MSECS": "600000"}).start()
    try:
        _spew_is_dropped(server)
    finally:
        assert server.stop() == 0


def _spew_is_dropped(server: Server) -> None:
    fn = deploy(server)
    answer = server.request("POST", f"/invoke/{fn['id']}", {"spew_after_mb": 64})
    assert answer.status == 200, answer.body
    mib = 1024 * 1024
    wait_for(
        lambda: (
            _dropped_bytes(server, fn["id"]) >= 48 * mib
            or server.log_path.stat().st_size > 16 * mib
        ),
        "the spew dropped (or flooding the log)",
        timeout_s=60,
    )
    assert server.log_path.stat().st_size < 8 * mib, "between-call output flooded the log"
    assert "container output dropped" in server.log_path.read_text()
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


def test_scale_keeps_frozen_containers_and_back_to_zero(server: Server) -> None:
    fn = deploy(server)
    answer = server.request("PUT", f"/v2/fns/{fn['id']}/scale", {"min_hot": 2})
    assert answer.status == 200 and answer.json()["min_hot"] == 2
    wait_for(
        lambda: server.request("GET", f"/v2/fns/{fn['id']}/scale").json()["frozen"] == 2,
        "two frozen containers",
        timeout_s=30,
    )
    server.request("PUT", f"/v2/fns/{fn['id']}/scale", {"min_hot": 0})
    assert server.request("PUT", f"/v2/fns/{fn['id']}/scale", {"min_hot": -1}).status == 400


def test_huge_min_hot_is_refused_and_the_server_stays_responsive(server: Server) -> None:
    fn = deploy(server)
    for huge in (4611686018427387904, 20000):
        answer = server.request("PUT", f"/v2/fns/{fn['id']}/scale", {"min_hot": huge})
        assert answer.status == 400, answer.body
        assert "at most" in answer.message, answer.message
    assert server.request("GET", "/").status == 200
    counts = server.request("GET", f"/v2/fns/{fn['id']}/scale").json()
    assert counts == {"running": 0, "frozen": 0, "starting": 0, "min_hot": 0, "keepalive": []}
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


def test_orphans_are_removed_after_sigkill_and_restart(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    assert instance_containers(docker_api, instance)
    server.stop(signal.SIGKILL)
    orphans = {c["Id"] for c in instance_containers(docker_api, instance)}
    assert orphans, "SIGKILL leaves the containers"
    server.start()
    # The restarted server's own pool slots carry the same label: only the orphans must go.
    wait_for(
        lambda: not orphans & {c["Id"] for c in instance_containers(docker_api, instance)},
        "orphans removed",
        timeout_s=20,
    )
    assert server.request("GET", f"/v2/fns/{fn['id']}").status == 200
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


# -- one server per store and port ------------------------------------------------------------


def _second_serve(server: Server, port: int, db_path: Path) -> Any:

    args = ["serve", "--port", str(port), "--db-url", f"sqlite3://{db_path}"]
    return run_cli(args, server.env, timeout=30)


def _assert_first_untouched(server: Server, fn: dict[str, Any], before: set[str], api: Any) -> None:
    instance = server.env["FNAGENT_INSTANCE_ID"]
    assert {c["Id"] for c in instance_containers(api, instance)} == before
    again = server.request("POST", f"/invoke/{fn['id']}", {})
    assert again.status == 200, again.body
    assert {c["Id"] for c in instance_containers(api, instance)} == before, "no new container"


def test_second_serve_on_the_same_port_and_store_ends_at_once_touching_nothing(
    server: Server, docker_api: docker.APIClient
) -> None:
    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    before = {c["Id"] for c in instance_containers(docker_api, server.env["FNAGENT_INSTANCE_ID"])}
    assert before
    done = _second_serve(server, server.port, server.db_path)
    assert done.returncode != 0
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "another fnagent serve" in lines[0]
    _assert_first_untouched(server, fn, before, docker_api)


def test_second_serve_on_a_taken_port_says_so_in_one_line(
    server: Server, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    before = {c["Id"] for c in instance_containers(docker_api, server.env["FNAGENT_INSTANCE_ID"])}
    done = _second_serve(server, server.port, tmp_path / "other" / "fnagent.db")
    assert done.returncode != 0
    lines = done.stderr.decode().strip().splitlines()
    assert lines == [
        f"fnagent serve: 127.0.0.1:{server.port} is already in use (another fnagent serve?); "
        "pass --port or FN_PORT"
    ], done.stderr
    _assert_first_untouched(server, fn, before, docker_api)


def test_second_serve_on_the_same_store_is_refused(
    server: Server, docker_api: docker.APIClient
) -> None:

    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    before = {c["Id"] for c in instance_containers(docker_api, server.env["FNAGENT_INSTANCE_ID"])}
    done = _second_serve(server, free_port(), server.db_path)
    assert done.returncode != 0
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(server.db_path) in lines[0] and "another fnagent serve" in lines[0]
    _assert_first_untouched(server, fn, before, docker_api)


def test_an_image_that_does_not_speak_http_stream_gets_a_502_that_says_so(
    server: Server,
) -> None:
    fn = deploy(server, image="fnagent/busybox")
    answer = server.request("POST", f"/invoke/{fn['id']}", {})
    assert answer.status == 502, answer.body
    assert "http-stream" in answer.message and "FDK" in answer.message
