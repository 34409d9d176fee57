"""Isolation, checked from inside function containers on a real dockerd: an unprivileged user
with no capabilities on a read-only root, no way to the agent's API or the Docker socket, only
its own socket directory, and only its own app's config. Hot containers of a live
`fnagent serve` (fn-test's probes) and cold ones of `fnagent run` (busybox)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.helpers import wait_for
from tests.system.helpers import (
    BUSYBOX,
    FN_TEST,
    bridge_gateway,
    deploy,
    fn_container,
    probe,
    require_image,
    run_cli,
)
from tests.system.server import Server, make_server

HOST_ONLY = "FNAGENT_TEST_HOST_ONLY"


@pytest.fixture
def server(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
) -> Iterator[Server]:
    require_image(docker_api, FN_TEST)
    made = make_server(tmp_path, {**cli_env, HOST_ONLY: "the agent's own environment"}).start()
    yield made
    if made.process is not None:
        assert made.stop() == 0


def status_fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


class Listener:
    """A tiny HTTP server on ``host`` (the bridge's gateway: reachable from containers) that
    proves a container's network works, so a refused connection means a closed door."""

    def __init__(self, host: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"control-ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# -- user, capabilities, root file system -------------------------------------------------------


def test_hot_function_is_uid_1000_without_capabilities_on_a_read_only_root(server: Server) -> None:
    fn = deploy(server)
    seen = probe(
        server, fn, read_file="/proc/self/status", write_mb=1, write_path="/function/probe"
    )
    assert (seen["uid"], seen["gid"]) == (1000, 1000)
    status = status_fields(seen["file"])
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, (capabilities, status[capabilities])
    assert status["NoNewPrivs"] == "1"
    assert seen["written_mb"] == 0
    assert "Read-only file system" in seen["write_error"]

    mounts = probe(server, fn, read_file="/proc/self/mountinfo")["file"].splitlines()
    root = next(line.split() for line in mounts if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root
    writable = probe(server, fn, write_mb=1, write_path="/tmp/probe")
    assert (writable["written_mb"], writable["write_error"]) == (1, None)


# -- the agent's API and the Docker socket -----------------------------------------------------


@pytest.fixture
def host_access_server(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> Iterator[Server]:
    """A server whose functions may reach services on the host's addresses
    (FN_ALLOW_HOST_ACCESS=1): the agent's API must stay out of reach even then."""
    require_image(docker_api, FN_TEST)
    made = make_server(tmp_path, {**cli_env, "FN_ALLOW_HOST_ACCESS": "1"}).start()
    yield made
    if made.process is not None:
        assert made.stop() == 0


def test_hot_function_cannot_reach_the_agent_api(
    host_access_server: Server, docker_api: docker.APIClient
) -> None:
    # With host access off every host address refuses functions (tests/system/test_netiso.py);
    # with it on, the control listener below is reachable and the API still is not.
    server = host_access_server
    fn = deploy(server)
    gateway = bridge_gateway(docker_api)
    assert server.request("GET", "/").status == 200  # the API answers on the host
    with Listener(gateway) as control:
        seen = probe(server, fn, connect=f"{gateway}:{control.port}")
        assert seen["connect"] == "connected", "the container's network does not work at all"
        for host in ("127.0.0.1", gateway):
            refused = probe(server, fn, connect=f"{host}:{server.port}")["connect"]
            assert refused != "connected", f"the agent's API is reachable at {host}"
            assert "refused" in refused or "timed out" in refused, refused


def test_hot_function_cannot_see_the_docker_socket(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    fn = deploy(server)
    for directory in ("/var/run", "/run", "/"):
        listing = probe(server, fn, list_dir=directory)["listing"]
        assert isinstance(listing, list) and "docker.sock" not in listing, (directory, listing)
    mountinfo = probe(server, fn, read_file="/proc/self/mountinfo")["file"]
    assert "docker.sock" not in mountinfo
    container = fn_container(docker_api, cli_env["FNAGENT_INSTANCE_ID"], fn["id"])
    binds = sorted((m["Type"], m["Destination"], m["RW"]) for m in container["Mounts"])
    # The socket dir, and (FN_LOG_PIPE=direct) the output FIFOs and the shell that opens them,
    # both read-only.
    assert binds == [
        ("bind", "/run/fnagent/out", False),
        ("bind", "/run/fnagent/sh", False),
        ("bind", "/tmp/iofs", True),
    ], container["Mounts"]
    # The output dir is root's, 0711: the function opens its FIFOs by name, lists nothing.
    assert "Permission denied" in probe(server, fn, list_dir="/run/fnagent/out")["listing"]


def test_hot_function_sees_only_its_own_socket_directory(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    one, two = deploy(server, fn="one"), deploy(server, fn="two")
    inside = {fn["name"]: probe(server, fn, list_dir="/tmp/iofs")["listing"] for fn in (one, two)}
    sources = {}
    for fn in (one, two):
        mounts = fn_container(docker_api, instance, fn["id"])["Mounts"]
        (mount,) = [m for m in mounts if m["Destination"] == "/tmp/iofs"]
        sources[fn["name"]] = Path(mount["Source"])
        # What the function sees in /tmp/iofs is its own host directory, nothing more.
        assert inside[fn["name"]] == sorted(p.name for p in sources[fn["name"]].iterdir())
        assert "lsnr.sock" in inside[fn["name"]]
    assert sources["one"] != sources["two"]
    assert set(inside["one"]) & set(inside["two"]) == {"lsnr.sock"}
    for fn in (one, two):
        assert probe(server, fn, list_dir="/tmp")["listing"] == ["iofs"]
        mountinfo = probe(server, fn, read_file="/proc/self/mountinfo")["file"]
        # The socket dir is a tmpfs of its own: no host path, neither its own nor another's,
        # shows in the container's mount table.
        for source in sources.values():
            assert source.parent.name not in mountinfo, mountinfo


# -- config ------------------------------------------------------------------------------------


def test_an_apps_config_is_not_visible_to_another_apps_functions(server: Server) -> None:
    one = deploy(server, app="one", fn="fn", config={"FN_ONE": "f1"})
    sibling = deploy(server, app="one", fn="sibling")
    two = deploy(server, app="two", fn="fn", config={"FN_TWO": "f2"})
    for app, config in (
        ("one", {"APP_ONE": "a1", "SHARED": "one"}),
        ("two", {"APP_TWO": "a2", "SHARED": "two"}),
    ):
        app_id = one["app_id"] if app == "one" else two["app_id"]
        assert server.request("PUT", f"/v2/apps/{app_id}", {"config": config}).status == 200

    env_one = probe(server, one)["env"]
    env_sibling = probe(server, sibling)["env"]
    env_two = probe(server, two)["env"]
    assert (env_one["APP_ONE"], env_one["SHARED"], env_one["FN_ONE"]) == ("a1", "one", "f1")
    assert (env_two["APP_TWO"], env_two["SHARED"], env_two["FN_TWO"]) == ("a2", "two", "f2")
    assert not {"APP_TWO", "FN_TWO"} & env_one.keys()
    assert not {"APP_ONE", "FN_ONE"} & env_two.keys()
    assert env_sibling["APP_ONE"] == "a1" and "FN_ONE" not in env_sibling
    for env in (env_one, env_sibling, env_two):
        assert HOST_ONLY not in env and "FNAGENT_INSTANCE_ID" not in env

    # A later change to one app reaches its functions only.
    assert (
        server.request(
            "PUT", f"/v2/apps/{one['app_id']}", {"config": {"APP_ONE_LATER": "yes"}}
        ).status
        == 200
    )
    wait_for(
        lambda: probe(server, one)["env"].get("APP_ONE_LATER") == "yes",
        "the app's new config to reach its function",
        timeout_s=20,
    )
    assert "APP_ONE_LATER" not in probe(server, two)["env"]


# -- the cold path: `fnagent run` ---------------------------------------------------------------


def test_cold_run_is_confined_the_same_way(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    require_image(docker_api, BUSYBOX)
    gateway = bridge_gateway(docker_api)
    with Listener(gateway) as control:
        # busybox 1.35's `wget -T` segfaults: `timeout` bounds each try instead.
        script = "; ".join(
            [
                "id -u; id -g",
                "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status",
                "touch /probe 2>&1",
                "ls /var/run/docker.sock /run/docker.sock 2>&1",
                f"timeout 5 wget -q -O- http://{gateway}:{control.port}/ 2>&1; echo",
                f"timeout 5 wget -q -O- http://127.0.0.1:{server.port}/ 2>&1; echo rc=$?",
                f"timeout 5 wget -q -O- http://{gateway}:{server.port}/ 2>&1; echo rc=$?",
                "true",
            ]
        )
        done = run_cli(["run", BUSYBOX, "sh", "-c", script], cli_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[:2] == ["1000", "1000"], lines
    status = status_fields("\n".join(lines[2:5]))
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert status["NoNewPrivs"] == "1"
    assert "Read-only file system" in lines[5]
    assert all("No such file or directory" in line for line in lines[6:8]), lines[6:8]
    assert lines[8] == "control-ok", "the container's network does not work at all"
    for host, (error, code) in zip(
        ("127.0.0.1", gateway), (lines[9:11], lines[11:13]), strict=True
    ):
        assert "Connection refused" in error and code == "rc=1", (host, lines)
