"""The per-container socket dir on a real dockerd: the agent never follows a link out of it, it
is a small tmpfs a function cannot fill the host's disk through, and it comes and goes with its
container (and the whole socket root with the server). A live `fnagent serve` with fn-test, and
`fnagent run --format http-stream`."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.system.helpers import FN_TEST, deploy, fn_container, require_image, run_cli
from tests.system.server import Server, make_server

MIB = 1024 * 1024


@pytest.fixture
def server(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> Iterator[Server]:
    require_image(docker_api, FN_TEST)
    made = make_server(tmp_path, cli_env).start()
    yield made
    if made.process is not None:
        assert made.stop() == 0


class SocketTrap:
    """A unix-socket server at ``path`` that records whether anything connected to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connected = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connected.set()
            connection.close()

    def __enter__(self) -> SocketTrap:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def socket_source(
    docker_api: docker.APIClient, cli_env: dict[str, str], fn: dict[str, Any]
) -> Path:
    """The host directory mounted at /tmp/iofs in ``fn``'s one container."""
    container = fn_container(docker_api, cli_env["FNAGENT_INSTANCE_ID"], fn["id"])
    (mount,) = [m for m in container["Mounts"] if m["Destination"] == "/tmp/iofs"]
    return Path(mount["Source"])


def relink_then_call(server: Server, fn: dict[str, Any], target: str) -> list[int]:
    """Re-point ``fn``'s listener at ``target`` (closing the agent's kept-alive connection, so
    the next call connects anew), then call it a few times; the statuses of those calls."""
    relinked = server.request(
        "POST", f"/invoke/{fn['id']}", {"relink": target, "headers": {"Connection": "close"}}
    )
    assert relinked.status == 200, relinked.body
    assert relinked.json()["relinked"] == target
    statuses = []
    for _ in range(3):
        answer = server.request("POST", f"/invoke/{fn['id']}", {})
        assert answer.status in (200, 502), (answer.status, answer.body)
        if answer.status == 200:
            assert answer.json()["env"]["FN_FN_ID"] == fn["id"], "the call reached another fn"
        statuses.append(answer.status)
    return statuses


def test_a_relinked_listener_never_reaches_a_host_socket(server: Server, tmp_path: Path) -> None:
    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    with SocketTrap(tmp_path / "host.sock") as trap:
        relink_then_call(server, fn, str(trap.path))
        assert not trap.connected.is_set(), "the agent relayed a call to a host socket"
    # Whatever happened to that container, the fn keeps answering.
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


def test_a_relinked_listener_never_reaches_another_fns_socket(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    victim = deploy(server, app="victim", fn="victim", config={"SECRET": "victim-secret"})
    attacker = deploy(server, app="attacker", fn="attacker")
    first = server.request("POST", f"/invoke/{victim['id']}", {})
    assert first.status == 200 and first.json()["calls"] == 1
    assert server.request("POST", f"/invoke/{attacker['id']}", {}).status == 200
    target = str(socket_source(docker_api, cli_env, victim) / "lsnr.sock")
    relink_then_call(server, attacker, target)
    after = server.request("POST", f"/invoke/{victim['id']}", {})
    assert after.status == 200 and after.json()["calls"] == 2, "the victim served the attacker"


def test_the_socket_dir_is_a_small_tmpfs(
    server: Server, docker_api: docker.APIClient, cli_env: dict[str, str]
) -> None:
    fn = deploy(server)
    filled = server.request(
        "POST", f"/invoke/{fn['id']}", {"write_mb": 8, "write_path": "/tmp/iofs/fill"}
    ).json()
    assert filled["written_mb"] < 8
    assert "No space left" in str(filled["write_error"]), filled
    source = socket_source(docker_api, cli_env, fn)
    assert mount_of(source)[0] == "tmpfs", "the socket dir is not on a tmpfs of its own"
    # The listener still serves after the failed write: the function's file was removed.
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200


def mount_of(path: Path) -> tuple[str, str]:
    """(fs type, mount point) of the mount that holds ``path``."""
    best = ("", "")
    for fields in (line.split() for line in Path("/proc/self/mounts").read_text().splitlines()):
        point = fields[1].replace("\\040", " ")
        if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best[1]):
            best = (fields[2], point)
    return best


def our_mounts(root: Path) -> list[str]:
    return [
        line
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(root))
    ]


def test_the_socket_root_removed_while_serving(server: Server, tmp_path: Path) -> None:
    warm = deploy(server, fn="warm")
    assert server.request("POST", f"/invoke/{warm['id']}", {}).status == 200
    shutil.rmtree(tmp_path / "iofs", ignore_errors=True)
    cold = deploy(server, fn="cold")
    answer = server.request("POST", f"/invoke/{cold['id']}", {})
    assert answer.status in (200, 503), (answer.status, answer.body)
    (tmp_path / "iofs").mkdir(exist_ok=True)
    for fn in (cold, warm, cold):
        answer = server.request("POST", f"/invoke/{fn['id']}", {})
        assert answer.status == 200, (fn["name"], answer.status, answer.body)


def test_a_clean_stop_leaves_no_socket_root_and_no_mount(server: Server, tmp_path: Path) -> None:
    fn = deploy(server)
    assert server.request("POST", f"/invoke/{fn['id']}", {}).status == 200
    assert server.stop(signal.SIGTERM) == 0
    root = tmp_path / "iofs"
    assert not root.exists() or not list(root.iterdir()), list(root.iterdir())
    assert not our_mounts(root)


def test_run_http_stream_socket_dir_is_a_small_tmpfs(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    request = {"write_mb": 8, "write_path": "/tmp/iofs/fill", "list_dir": "/tmp/iofs"}
    done = run_cli(
        ["run", "--format", "http-stream", FN_TEST], cli_env, input=json.dumps(request).encode()
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["written_mb"] < 8 and "No space left" in str(answer["write_error"]), answer
