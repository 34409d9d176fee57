"""``docker run --rm -i IMAGE`` in Python with the standard library only: the floor a Python
client can reach, for the foundation benchmark (not part of fnagent, which uses docker-py).

The docker CLI's own sequence on the Engine API: create, attach, wait (condition next-exit, asked
before the start so the exit cannot be missed), start, stdin then EOF, output until the stream
ends, the exit code, remove. ``FNAGENT_RAWRUN_IMPORT=docker`` imports docker-py first (unused),
which isolates what its import alone costs.

Usage: ``python -m tests.bench.rawrun IMAGE [LABEL=VALUE...]``; exits with the container's code.
"""

from __future__ import annotations

import json
import os
import socket
import sys

DOCKER_SOCKET = "/var/run/docker.sock"
API = "/v1.41"


def _connect() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(DOCKER_SOCKET)
    return sock


def _send(sock: socket.socket, method: str, path: str, body: object = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {API}{path} HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    )
    if "/attach?" in path:
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    sock.sendall(head.encode() + b"\r\n" + data)


def _receive(sock: socket.socket) -> tuple[int, bytes]:
    """One response: (status, body); for 101 the body is what followed the headers."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if status in (101, 204, 304):
        return status, rest
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            rest += sock.recv(65536)
        return status, rest[:size]
    body = b""  # chunked
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return status, body
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        body, rest = body + rest[:size], rest[size + 2 :]


def main(image: str, labels: dict[str, str]) -> int:
    create = {
        "Image": image,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "Labels": labels,
    }
    control = _connect()
    _send(control, "POST", "/containers/create", create)
    status, body = _receive(control)
    if status != 201:
        sys.exit(f"create: {status} {body!r}")
    cid = json.loads(body)["Id"]
    stream = _connect()
    _send(stream, "POST", f"/containers/{cid}/attach?stdin=1&stdout=1&stderr=1&stream=1")
    _, output = _receive(stream)
    waiter = _connect()
    _send(waiter, "POST", f"/containers/{cid}/wait?condition=next-exit")
    _send(control, "POST", f"/containers/{cid}/start")
    _receive(control)
    stream.sendall(sys.stdin.buffer.read())
    stream.shutdown(socket.SHUT_WR)
    while chunk := stream.recv(65536):
        output += chunk
    while len(output) >= 8:  # 8-byte frame headers: stream, 3 zeros, big-endian size
        size = int.from_bytes(output[4:8], "big")
        sink = sys.stdout if output[0] == 1 else sys.stderr
        sink.buffer.write(output[8 : 8 + size])
        output = output[8 + size :]
    code = int(json.loads(_receive(waiter)[1])["StatusCode"])
    _send(control, "DELETE", f"/containers/{cid}?force=1&v=1")
    _receive(control)
    return code


if __name__ == "__main__":
    for module in filter(None, os.environ.get("FNAGENT_RAWRUN_IMPORT", "").split(",")):
        __import__(module)
    pairs = (arg.partition("=") for arg in sys.argv[2:])
    code = main(sys.argv[1], {name: value for name, _, value in pairs})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
