"""`scripts/serve-demo.sh` (behind `make serve`) the way a terminal runs it: its own process
group, Ctrl-C as SIGINT to the whole group. It must drain cleanly every time, and stop whatever
it started when anything fails."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.helpers import wait_for
from tests.system.helpers import FN_HELLO, free_port, require_image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "serve-demo.sh"


def _serve_processes(port: int) -> list[int]:
    """Pids of `fnagent serve --port PORT` processes (whoever started them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and str(port).encode() in argv and any(b"fnagent" in a for a in argv):
            found.append(int(entry.name))
    return found


def _start(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # a process group of its own, as a terminal's job
        )
    return process, out, err


@pytest.fixture
def demo_env(cli_env: dict[str, str], tmp_path: Path, docker_api: docker.APIClient) -> Any:
    require_image(docker_api, FN_HELLO)
    port = free_port()
    env = {
        **cli_env,
        "FN_PORT": str(port),
        "FN_DB_URL": f"sqlite3://{tmp_path / 'fnagent.db'}",
        "FN_IOFS_PATH": str(tmp_path / "iofs"),
    }
    yield env
    left = _serve_processes(port)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the demo left fnagent serve running"


def _invoke_trigger(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/t/demo/hello", body=json.dumps({"name": "t"}))
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("round_", range(6))
def test_one_ctrl_c_to_the_group_always_drains_cleanly(
    demo_env: dict[str, str], tmp_path: Path, docker_api: docker.APIClient, round_: int
) -> None:
    port = int(demo_env["FN_PORT"])
    process, out, err = _start(demo_env, tmp_path)
    try:
        wait_for(
            lambda: b"Ctrl-C stops" in out.read_bytes() or process.poll() is not None,
            "the demo to be ready",
            timeout_s=60,
        )
        assert process.poll() is None, err.read_text()
        assert _invoke_trigger(port) == 200
        instance = demo_env["FNAGENT_INSTANCE_ID"]
        assert docker_api.containers(filters={"label": f"fnagent.instance={instance}"})
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, err.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not _serve_processes(port)
    left = docker_api.containers(all=True, filters={"label": f"fnagent.instance={instance}"})
    assert not left


def test_a_second_ctrl_c_hurries_but_never_leaks(
    demo_env: dict[str, str], tmp_path: Path, docker_api: docker.APIClient
) -> None:
    port = int(demo_env["FN_PORT"])
    process, out, err = _start(demo_env, tmp_path)
    try:
        wait_for(lambda: b"Ctrl-C stops" in out.read_bytes(), "the demo to be ready", timeout_s=60)
        assert _invoke_trigger(port) == 200
        os.killpg(process.pid, signal.SIGINT)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, err.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    instance = demo_env["FNAGENT_INSTANCE_ID"]
    assert not docker_api.containers(all=True, filters={"label": f"fnagent.instance={instance}"})


class _Other(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = b"<html><body>someone else's server</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_program(demo_env: dict[str, str]) -> Iterator[HTTPServer]:
    httpd = HTTPServer(("127.0.0.1", int(demo_env["FN_PORT"])), _Other)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_port_taken_by_another_program_fails_and_stops_everything(
    demo_env: dict[str, str], other_program: HTTPServer, tmp_path: Path
) -> None:
    port = int(demo_env["FN_PORT"])
    process, out, err = _start(demo_env, tmp_path)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code != 0
    assert b"someone else" not in out.read_bytes() + err.read_bytes()
    assert b"fnagent is serving" not in out.read_bytes()
    assert b"already in use" in err.read_bytes()
    assert not _serve_processes(port), "no fnagent serve left in the background"
