"""``fnagent serve`` on a PostgreSQL store (FN_DB_URL=postgresql://...): two agents on one
database serve the same fns, each with its own containers, and the database going away answers
503 with a message until it is back; a detached call queued through one of two agents runs once
and calls back, its record readable through either."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import docker

from tests.helpers import wait_for
from tests.postgres import PASSWORD, PostgresServer
from tests.system.helpers import (
    FN_HELLO,
    FN_TEST,
    deploy,
    free_port,
    invoke,
    new_instance_id,
    receiver,
    require_image,
)
from tests.system.server import Server, make_server


def test_two_agents_share_one_postgres_and_survive_its_outage(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    own_postgres: PostgresServer,
) -> None:
    require_image(docker_api, FN_HELLO)
    # Both agents seal secrets with one key (a shared store needs FN_SECRETS_KEY_FILE).
    env = {
        **cli_env,
        "FN_DB_CONNECT_TIMEOUT_MSECS": "2000",
        "FN_SECRETS_KEY_FILE": str(tmp_path / "secrets-key"),
    }
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = make_server(tmp_path / "a", env)
    # A second agent on this host: its own instance label, so neither sweeps the other's.
    second = make_server(tmp_path / "b", {**env, "FNAGENT_INSTANCE_ID": new_instance_id()})
    servers: list[Server] = []
    try:
        for server in (first, second):
            server.db_url = own_postgres.url()
            servers.append(server.start())
        assert PASSWORD not in first.log_path.read_text()
        fn = deploy(first, app="hello", fn="hello", image=FN_HELLO, memory=128, timeout=30)
        answer = invoke(first, fn, {"name": "first"})
        assert (answer.status, answer.body) == (200, b"Hello, first!")
        # The other agent reads the same registry and runs the fn in its own container.
        answer = invoke(second, fn, {"name": "second"})
        assert (answer.status, answer.body) == (200, b"Hello, second!")
        taken = second.request("POST", "/v2/apps", {"name": "hello"})
        assert (taken.status, taken.message) == (409, "App already exists")
        # A key PostgreSQL's text cannot hold names nothing, as on SQLite.
        for path in ("/v2/apps/%00", f"/v2/fns/{fn['id']}/calls/%00", "/t/hello/%00"):
            missing = first.request("GET", path)
            assert missing.status == 404, (path, missing.body)

        own_postgres.stop()
        down = first.request("GET", "/v2/apps")
        assert down.status == 503, down.body
        assert down.message.startswith("the database is unavailable")
        assert f"127.0.0.1:{own_postgres.port}" in down.message
        assert PASSWORD not in down.body.decode()
        assert "retry-after" in down.headers
        created = second.request("POST", "/v2/apps", {"name": "during"})
        assert created.status == 503, created.body

        own_postgres.start()
        for server in (first, second):
            wait_for(
                lambda s=server: s.request("GET", "/v2/apps").status == 200,  # type: ignore[misc]
                "the agent to read the store again",
                timeout_s=20,
            )
        assert second.request("POST", "/v2/apps", {"name": "after"}).status == 200
        answer = invoke(second, fn, {"name": "again"})
        assert (answer.status, answer.body) == (200, b"Hello, again!")
        for server in servers:  # the outage was logged as lines, not tracebacks
            assert "Traceback" not in server.log_path.read_text()
    finally:
        for server in servers:
            assert server.stop() == 0, server.log_path.read_text()[-3000:]


def test_a_detached_call_through_agents_sharing_postgres_runs_once_and_calls_back(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    postgres_url: str,
) -> None:
    require_image(docker_api, FN_TEST)
    env = {**cli_env, "FN_SECRETS_KEY_FILE": str(tmp_path / "secrets-key")}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = make_server(tmp_path / "a", env)
    second = make_server(tmp_path / "b", {**env, "FNAGENT_INSTANCE_ID": new_instance_id()})
    servers: list[Server] = []
    try:
        for server in (first, second):
            server.db_url = postgres_url
            servers.append(server.start())
        fn = deploy(first, timeout=30)  # a cold start on a loaded host may take seconds
        with receiver() as (url, got):
            answer = first.request(
                "POST",
                f"/invoke/{fn['id']}",
                # Output may trail the answer on the socket: a moment before answering.
                {"stdout": "ran", "sleep_ms": 300},
                headers={"Fn-Invoke-Type": "detached", "Fn-Callback-Url": url},
            )
            assert (answer.status, answer.body) == (202, b"")
            call_id = answer.headers["fn-call-id"]
            # Both agents lease from the one queue: whichever took it ran it.
            wait_for(lambda: got, "the callback", timeout_s=60)
        (callback,) = got
        assert callback["headers"]["fn-call-id"] == call_id, callback
        assert callback["headers"]["fn-call-status"] == "success", callback
        assert callback["headers"]["fn-http-status"] == "200"
        # fn-test's answer: what it got (the caller's request, not the callback URL).
        seen = json.loads(callback["body"])
        assert seen["method"] == "POST" and "fn-callback-url" not in {
            name.lower() for name in seen["headers"]
        }

        def record(server: Server) -> dict[str, Any]:
            """The call's record once it is final; {} until then."""
            answer = server.request("GET", f"/v2/fns/{fn['id']}/calls/{call_id}")
            document: dict[str, Any] = answer.json() if answer.status == 200 else {}
            return document if document.get("status") == "success" else {}

        for server in servers:  # the records are shared too (written behind: poll)
            done = wait_for(functools.partial(record, server), "the call's record", timeout_s=20)
            assert (done["detached"], done["attempts"], done["http_status"]) == (True, 1, 200)
            log = server.request("GET", f"/v2/fns/{fn['id']}/calls/{call_id}/log")
            assert (log.status, log.body) == (200, b"ran\n")
    finally:
        for server in servers:
            assert server.stop() == 0, server.log_path.read_text()[-3000:]


def test_a_bad_or_unreachable_db_url_ends_serve_with_one_line(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    import subprocess
    import sys

    port = free_port()
    for url, expected in [
        ("postgresql://fn:secret@127.0.0.1:notaport/fn", "the port must be a number"),
        (f"postgresql://fn:secret@127.0.0.1:{port}/fn", "the database is unavailable"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "fnagent", "serve", "--port", str(free_port()), "--db-url", url],
            env={**cli_env, "FN_DB_CONNECT_TIMEOUT_MSECS": "2000"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fnagent serve: "), done.stderr
        assert expected in lines[0] and "secret" not in lines[0]


def test_a_postgres_store_without_a_secrets_key_file_ends_serve_with_one_line(
    tmp_path: Path, cli_env: dict[str, str], own_postgres: PostgresServer
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "fnagent", "serve", "--port", str(free_port())]
        + ["--db-url", own_postgres.url()],
        env={k: v for k, v in cli_env.items() if k != "FN_SECRETS_KEY_FILE"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "needs FN_SECRETS_KEY_FILE" in done.stderr
