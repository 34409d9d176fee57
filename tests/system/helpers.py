"""Helpers the system tests share: the images, instance labels, the CLI as a subprocess,
and the calls most tests make on a live `fnagent serve` (``tests/system/server.py``).
Fixtures stay in ``conftest.py``; polling is ``tests.helpers``'s ``wait_for`` and ``poll``."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import docker
import pytest

if TYPE_CHECKING:
    from tests.system.server import Answer, Server

# Every container a test session makes carries an instance label starting with this.
SESSION_PREFIX = f"test-{uuid.uuid4().hex[:8]}"

BUSYBOX = "fnagent/busybox"
FN_SHELL = "fnagent/fn-shell"
FN_HELLO = "fnagent/fn-hello"
FN_TEST = "fnagent/fn-test"

# The local registry the pull tests start (conftest.py's ``registry`` fixture) lets this user in.
REGISTRY_USER, REGISTRY_PASSWORD = "fnagent", "s3cret-pass"


def new_instance_id(name: str = "") -> str:
    return f"{SESSION_PREFIX}-{name or uuid.uuid4().hex[:6]}"


def require_image(api: docker.APIClient, image: str) -> None:
    try:
        api.inspect_image(image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {image} is missing; run `make images` first")


def run_cli(
    args: list[str], env: dict[str, str], *, input: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fnagent", *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy(server: Server, app: str = "app", fn: str = "fn", **fields: Any) -> dict[str, Any]:
    created = server.request("POST", "/v2/apps", {"name": app})
    assert created.status in (200, 409), created.body
    app_id = server.request("GET", f"/v2/apps?name={app}").json()["items"][0]["id"]
    body = {"app_id": app_id, "name": fn, "image": FN_TEST, "memory": 64, "timeout": 5, **fields}
    answer = server.request("POST", "/v2/fns", body)
    assert answer.status == 200, answer.body
    document: dict[str, Any] = answer.json()
    return document


def instance_containers(api: docker.APIClient, instance: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": f"fnagent.instance={instance}"}
    )
    return listed


def function_containers(api: docker.APIClient, instance: str) -> list[dict[str, Any]]:
    """The instance's containers less its prefork pool's slots (the pool is on by default)."""
    listed = instance_containers(api, instance)
    return [c for c in listed if c["Labels"].get("fnagent.role") != "prefork"]


def invoke(server: Server, fn: dict[str, Any], body: dict[str, Any], timeout: float = 60) -> Answer:
    return server.request("POST", f"/invoke/{fn['id']}", body, timeout=timeout)


PROBE_KEYS = {
    "fork": "forked",
    "write_mb": "written_mb",
    "list_dir": "listing",
    "read_file": "file",
    "connect": "connect",
}


def probe(server: Server, fn: dict[str, Any], **request: Any) -> dict[str, Any]:
    answer = server.request("POST", f"/invoke/{fn['id']}", request)
    assert answer.status == 200, answer.body
    document: dict[str, Any] = answer.json()
    missing = [PROBE_KEYS[k] for k in request if k in PROBE_KEYS and PROBE_KEYS[k] not in document]
    if missing:
        pytest.fail(
            f"{FN_TEST} answers no {missing}: it predates its probes; run "
            "`python3 images/build.py fn-test`"
        )
    return document


def fn_container(api: docker.APIClient, instance: str, fn_id: str) -> dict[str, Any]:
    (container,) = api.containers(
        all=True, filters={"label": [f"fnagent.instance={instance}", f"fnagent.fn_id={fn_id}"]}
    )
    inspected: dict[str, Any] = api.inspect_container(container["Id"])
    return inspected


def bridge_gateway(api: docker.APIClient) -> str:
    """The host's address on the default bridge (Docker's default: the subnet's first)."""
    (config,) = api.inspect_network("bridge")["IPAM"]["Config"]
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A callback receiver on 127.0.0.1: its URL and what it got (headers lowercased, body)."""
    got: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                got.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/done", got
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
