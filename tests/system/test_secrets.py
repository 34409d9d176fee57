"""Secrets end to end on a real dockerd: a live `fnagent serve`, fn-test reading
/run/secrets/<name> from inside its container. A secret is a read-only file of its fn's
containers (uid 1000 reads it), on a host tmpfs that goes with the container, absent from
other apps' fns, from `docker inspect`, from every route's answer and from the server's log;
the store holds it sealed; a fn naming a missing secret is 400."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker.config import DockerConfig, secrets_root
from tests.helpers import wait_for
from tests.system.helpers import FN_TEST, deploy, fn_container, probe, require_image
from tests.system.server import Server, make_server

VALUE = "s3cr3t-db-password-\u2713"
OTHER = "0ther-apps-s3cr3t"
ANNOTATION = "fnagent.io/secrets"


@pytest.fixture
def server(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> Iterator[Server]:
    require_image(docker_api, FN_TEST)
    made = make_server(tmp_path, cli_env).start()
    yield made
    if made.process is not None:
        assert made.stop() == 0


def app_id(server: Server, name: str) -> str:
    created = server.request("POST", "/v2/apps", {"name": name})
    assert created.status in (200, 409), created.body
    return str(server.request("GET", f"/v2/apps?name={name}").json()["items"][0]["id"])


def put_secret(server: Server, app: str, name: str, value: str) -> dict[str, Any]:
    answer = server.request("PUT", f"/v2/apps/{app}/secrets/{name}", {"value": value})
    assert answer.status == 200, answer.body
    document: dict[str, Any] = answer.json()
    return document


def mounted_under(root: str) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(root + "/")]


def test_a_secret_is_a_read_only_file_of_its_fns_only(
    server: Server, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    app, other = app_id(server, "app"), app_id(server, "other")
    written = put_secret(server, app, "db.password", VALUE)
    assert set(written) == {"name", "created_at", "updated_at"}
    put_secret(server, other, "db.password", OTHER)

    fn = deploy(server, "app", "fn", timeout=60, annotations={ANNOTATION: ["db.password"]})
    seen = probe(server, fn, read_file="/run/secrets/db.password", list_dir="/run/secrets")
    assert seen["file"] == VALUE
    assert seen["listing"] == ["db.password"]
    assert (seen["uid"], seen["gid"]) == (1000, 1000)
    assert VALUE not in json.dumps(seen["env"])
    refused = probe(server, fn, write_mb=1, write_path="/run/secrets/db.password")
    assert "Read-only file system" in refused["write_error"], refused
    mountinfo = probe(server, fn, read_file="/proc/self/mountinfo")["file"].splitlines()
    (mount,) = [line.split() for line in mountinfo if line.split()[4] == "/run/secrets"]
    assert "ro" in mount[5].split(","), mount
    assert mount[mount.index("-") + 1] == "tmpfs", mount

    # Not in `docker inspect` (env, labels, anything), and the host side is a tmpfs.
    container = fn_container(docker_api, instance, fn["id"])
    assert VALUE not in json.dumps(container) and OTHER not in json.dumps(container)
    root = secrets_root(DockerConfig(instance_id=instance))
    assert len(mounted_under(root)) == 1

    # A fn of another app names nothing, and sees nothing of this app's secrets.
    stranger = deploy(server, "other", "stranger")
    looked = probe(server, stranger, read_file="/run/secrets/db.password", list_dir="/run/secrets")
    assert looked["file"].startswith("FileNotFoundError"), looked
    assert looked["listing"].startswith("FileNotFoundError"), looked
    # Its own app's secret of the same name is its own value.
    theirs = deploy(server, "other", "theirs", annotations={ANNOTATION: ["db.password"]})
    assert probe(server, theirs, read_file="/run/secrets/db.password")["file"] == OTHER

    # A new value reaches the next call (a new container; the old one drains).
    put_secret(server, app, "db.password", "rotated")
    wait_for(
        lambda: probe(server, fn, read_file="/run/secrets/db.password")["file"] == "rotated",
        "the rotated secret",
        timeout_s=30,
    )

    # No route answers a value.
    answers = [
        server.request("GET", path).body
        for path in (
            f"/v2/apps/{app}/secrets",
            f"/v2/apps/{app}",
            f"/v2/fns?app_id={app}",
            f"/v2/fns/{fn['id']}",
            "/openapi.json",
            "/metrics",
        )
    ]
    answers.append(server.request("GET", f"/v2/apps/{app}/secrets/db.password").body)
    for body in answers:
        assert b"s3cr3t" not in body and b"rotated" not in body

    # At rest the store holds sealed values only; the key file beside it is 0600.
    with sqlite3.connect(server.db_path) as conn:
        stored = b"".join(row[0] for row in conn.execute("SELECT sealed FROM secrets"))
    assert b"s3cr3t" not in stored and b"rotated" not in stored
    key_file = f"{server.db_path}.secrets-key"
    assert os.stat(key_file).st_mode & 0o777 == 0o600

    assert server.stop() == 0
    assert b"s3cr3t" not in server.log_path.read_bytes()
    assert mounted_under(root) == [] and not os.path.exists(root)


def test_named_secrets_must_exist_and_cannot_go_while_named(server: Server) -> None:
    app = app_id(server, "app")
    body = {
        "app_id": app,
        "name": "fn",
        "image": FN_TEST,
        "annotations": {ANNOTATION: ["missing"]},
    }
    answer = server.request("POST", "/v2/fns", body)
    assert answer.status == 400 and '"missing"' in answer.message, answer.body
    malformed = {**body, "annotations": {ANNOTATION: "missing"}}
    answer = server.request("POST", "/v2/fns", malformed)
    assert answer.status == 400 and ANNOTATION in answer.message, answer.body

    put_secret(server, app, "missing", VALUE)
    assert server.request("POST", "/v2/fns", body).status == 200
    answer = server.request("DELETE", f"/v2/apps/{app}/secrets/missing")
    assert answer.status == 409 and '"fn"' in answer.message, answer.body


def test_a_missing_key_stops_the_start(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    first = make_server(tmp_path, cli_env).start()
    put_secret(first, app_id(first, "app"), "token", VALUE)
    assert first.stop() == 0
    key_file = Path(f"{first.db_path}.secrets-key")
    key_file.rename(tmp_path / "saved-key")
    again = make_server(tmp_path, cli_env)
    with pytest.raises(AssertionError, match="is missing, and the store holds secrets"):
        again.start()
    assert again.process is not None and again.process.wait(10) == 1
    again.process = None
    assert not key_file.exists()


def test_a_killed_servers_secret_files_go_at_its_next_start(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    root = secrets_root(DockerConfig(instance_id=cli_env["FNAGENT_INSTANCE_ID"]))
    first = make_server(tmp_path, cli_env).start()
    put_secret(first, app_id(first, "app"), "token", VALUE)
    fn = deploy(first, "app", "fn", timeout=60, annotations={ANNOTATION: ["token"]})
    assert probe(first, fn, read_file="/run/secrets/token")["file"] == VALUE
    assert len(mounted_under(root)) == 1
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(mounted_under(root)) == 1  # nothing ran to remove it

    again = make_server(tmp_path, cli_env).start()
    try:
        assert mounted_under(root) == []
    finally:
        assert again.stop() == 0
    assert not os.path.exists(root)
