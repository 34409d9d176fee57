"""What only the real HTTP server shows about a client's input: header size, count and read
time are bounded, a half-closed HTTP/1.0 request is answered, non-Latin-1 names and paths
work end to end, and the token the server checked never reaches the function."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import docker

from tests.system.helpers import FN_TEST, deploy, require_image
from tests.system.server import Server, make_server


def exchange(server: Server, head: bytes, *, then: bytes = b"", half_close: bool = False) -> bytes:
    """Send ``head`` then ``then`` on one connection (stopping when the server closes) and
    return everything the server answered."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        try:
            sock.sendall(head)
            view = memoryview(then)
            while view:
                sent = sock.send(view[: 1 << 20])
                view = view[sent:]
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is what counts
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_a_100_mb_header_is_refused(server: Server) -> None:
    answer = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", then=b"a" * (100 << 20))
    assert status_of(answer) == 431, answer[:200]
    assert server.request("GET", "/").status == 200


def test_a_flood_of_headers_is_refused(server: Server) -> None:
    flood = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(2000))
    answer = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    assert status_of(answer) == 431, answer[:200]
    fine = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(50))
    assert status_of(exchange(server, b"GET / HTTP/1.0\r\n" + fine + b"\r\n")) == 200


def test_slow_headers_are_timed_out(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    server = make_server(tmp_path, {**cli_env, "FN_HEADER_TIMEOUT_MSECS": "1000"}).start()
    try:
        for opening in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
                began = time.monotonic()
                sock.sendall(opening)
                received = b""
                while chunk := sock.recv(4096):  # the server closes: recv gives b""
                    received += chunk
                assert time.monotonic() - began < 10
                assert status_of(received) in (0, 408), received[:200]
        assert server.request("GET", "/").status == 200
    finally:
        assert server.stop() == 0


def test_a_half_closed_http10_invoke_is_answered(server: Server) -> None:
    fn = deploy(server)
    body = b'{"echo": "half"}'
    head = b"POST /invoke/%s HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % (
        fn["id"].encode(),
        len(body),
    )
    answer = exchange(server, head + body, half_close=True)
    assert status_of(answer) == 200, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["echo"] == "half"


def test_non_latin1_app_names_and_trigger_paths_work_end_to_end(server: Server) -> None:
    app = server.request("POST", "/v2/apps", {"name": "приложение"})
    assert app.status == 200, app.body
    listed = server.request("GET", "/v2/apps?name=" + quote("приложение")).json()
    assert [item["id"] for item in listed["items"]] == [app.json()["id"]]
    body = {"app_id": app.json()["id"], "name": "функция", "image": FN_TEST, "memory": 64}
    made = server.request("POST", "/v2/fns", body)
    assert made.status == 200, made.body
    fn = made.json()
    trigger = {
        "app_id": fn["app_id"],
        "fn_id": fn["id"],
        "name": "крюк",
        "type": "http",
        "source": "/путь/ü",
    }
    created = server.request("POST", "/v2/triggers", trigger)
    assert created.status == 200, created.body
    answer = server.request("POST", "/t/" + quote("приложение/путь/ü"), {"echo": "x"})
    assert answer.status == 200, answer.body
    got = answer.json()
    assert got["env"]["FN_APP_NAME"] == "приложение"
    assert quote("/путь/ü") in got["headers"]["Fn-Http-Request-Url"]


def test_the_checked_token_never_reaches_the_function(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    env = {**cli_env, "FN_INVOKE_TOKEN": "caller-token"}
    server = make_server(tmp_path, env, "--token", "admin-token", token="admin-token").start()
    try:
        fn = deploy(server)
        trigger = {"app_id": fn["app_id"], "fn_id": fn["id"], "name": "h", "type": "http"}
        created = server.request("POST", "/v2/triggers", {**trigger, "source": "/h"})
        assert created.status == 200, created.body
        seen: list[dict[str, Any]] = []
        for token in ("admin-token", "caller-token"):
            auth = {"Authorization": f"Bearer {token}"}
            for path in (f"/invoke/{fn['id']}", "/t/app/h"):
                answer = server.request("POST", path, {}, headers=auth)
                assert answer.status == 200, answer.body
                seen.append(answer.json()["headers"])
        assert seen
        for headers in seen:
            assert not any("authorization" in name.lower() for name in headers), headers
        no_token = server.request("POST", f"/invoke/{fn['id']}", {}, headers={"Authorization": ""})
        assert no_token.status == 401
        caller = {"Authorization": "Bearer caller-token"}
        assert server.request("GET", "/v2/apps", headers=caller).status == 401
    finally:
        assert server.stop() == 0
