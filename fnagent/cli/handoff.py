"""``fnagent run`` handed to a running agent: ``POST /v2/run`` on FN_API_URL.

The agent runs the container on its own driver (prefork pool, image cache, admission), so this
process imports no docker-py: a socket, a thread copying stdin into request frames, and the
response frames copied to stdout and stderr (``fnagent.client.runframes`` is the format).
Standard library only, like the client. Ctrl-C sends a cancel frame: the agent removes the
container and answers 130; a second Ctrl-C leaves at once (the agent still removes it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from fnagent.client import DEFAULT_API_URL, runframes
from fnagent.errors import EXIT_AGENT_FAILURE

CONNECT_TIMEOUT_S = 1.0
HEAD_TIMEOUT_S = 30.0
"""How long the agent may take to accept the run (it may evict to make room)."""
READ_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024


class AgentGone(Exception):
    """The agent broke the connection or the protocol."""


def run_on_agent(spec: dict[str, Any], *, as_json: bool, environ: Mapping[str, str]) -> int | None:
    """Run ``spec`` (the fields of ``POST /v2/run``'s run frame) on the agent at FN_API_URL
    and return the exit code; None when no agent takes it (nothing listens there, it is not
    plain http, or the server has no run route), so the caller runs it itself."""
    url = urlsplit(environ.get("FN_API_URL") or DEFAULT_API_URL)
    if url.scheme != "http" or not url.hostname:
        return None
    try:
        address = (_host(url.hostname), url.port or 80)
        # getaddrinfo, which create_connection calls, takes bytes too (typeshed says str).
        sock = socket.create_connection(address, CONNECT_TIMEOUT_S)  # type: ignore[arg-type]
    except OSError:
        return None
    with sock:
        sock.settimeout(HEAD_TIMEOUT_S)
        # Frames are small writes the agent waits for: none may sit in Nagle's buffer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sender = _Sender(sock)
        token = environ.get("FN_TOKEN")
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {url.path.rstrip('/')}/v2/run HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
            f"{auth}\r\n"
        ).encode("latin-1")
        # The head and the run in one write: the agent starts on the run at once.
        sender.send_raw(head + _chunk(runframes.json_frame(runframes.REQUEST, spec)))
        response = _Response(sock)
        try:
            status, headers = response.head()
        except (OSError, AgentGone):
            return None  # not an agent that speaks HTTP: run here
        if status == 404:
            return None
        if status != 200:
            return _refused(response, headers, as_json)
        sock.settimeout(None)
        return _stream(sender, response, headers, as_json)


def _host(name: str) -> str | bytes:
    """An ASCII host name as bytes: the resolver then skips the IDNA codec, whose import
    (unicodedata, stringprep) costs a few ms of every run."""
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name


def _refused(response: _Response, headers: dict[str, str], as_json: bool) -> int:
    """The agent refused the run before it started (401, 400, 503...): its message, 125."""
    try:
        message = json.loads(response.body(headers))["message"]
    except (OSError, AgentGone, ValueError, KeyError, TypeError):
        message = "the agent refused the run"
    _fail(f"the agent at FN_API_URL: {message}", as_json)
    return EXIT_AGENT_FAILURE


def _fail(message: str, as_json: bool) -> None:
    print(f"fnagent: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps(runframes.failure_document(message), indent=2))


def _stream(sender: _Sender, response: _Response, headers: dict[str, str], as_json: bool) -> int:
    """Copy stdin up and the output frames down until the result frame."""
    threading.Thread(target=sender.copy_stdin, daemon=True, name="stdin").start()
    interrupts = 0

    def interrupted(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        sender.cancel()

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    captured = bytearray()
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    try:
        reader = runframes.FrameReader()
        for data in response.body_chunks(headers):
            for kind, payload in reader.feed(data):
                if kind == runframes.STDOUT:
                    if as_json:
                        captured += payload
                    else:
                        stdout.write(payload)
                        stdout.flush()
                elif kind == runframes.STDERR:
                    stderr.write(payload)
                    stderr.flush()
                elif kind == runframes.RESULT:
                    return _finish(json.loads(payload), bytes(captured), as_json)
    except (OSError, AgentGone, runframes.FrameError, ValueError) as exc:
        _fail(f"lost the agent during the run: {exc}", as_json)
        return EXIT_AGENT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _fail("the agent ended the run without a result", as_json)
    return EXIT_AGENT_FAILURE


def _finish(result: dict[str, Any], captured: bytes, as_json: bool) -> int:
    if as_json:
        print(json.dumps(runframes.with_stdout(result["document"], captured), indent=2))
    elif result.get("message"):
        print(f"fnagent: {result['message']}", file=sys.stderr)
    code = result["exit"]
    return code if isinstance(code, int) else EXIT_AGENT_FAILURE


def _chunk(frame: bytes) -> bytes:
    """``frame`` as one chunk of the chunked request body."""
    return b"%x\r\n%s\r\n" % (len(frame), frame)


class _Sender:
    """The request body: chunks of frames, from the stdin thread and from a signal handler."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._closed = False

    def send_raw(self, data: bytes) -> None:
        self._sock.sendall(data)

    def send_frame(self, frame: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._sock.sendall(_chunk(frame))

    def copy_stdin(self) -> None:
        """Stdin as STDIN frames, then STDIN_END (the body stays open for a cancel)."""
        try:
            while chunk := os.read(0, READ_BYTES):
                self.send_frame(runframes.frame(runframes.STDIN, chunk))
            self.send_frame(runframes.frame(runframes.STDIN_END))
        except OSError:
            return  # the agent is gone or stopped reading: the result says why

    def cancel(self) -> None:
        try:
            self.send_frame(runframes.frame(runframes.CANCEL))
        except OSError:
            pass
        with self._lock:
            self._closed = True


class _Response:
    """An HTTP/1.1 response read from a socket: the head, then a chunked or sized body."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _more(self) -> bytes:
        data = self._sock.recv(READ_BYTES)
        if not data:
            raise AgentGone("the connection closed")
        return data

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise AgentGone("response head too large")
            self._buffer += self._more()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise AgentGone(f"not an HTTP response: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def body(self, headers: dict[str, str]) -> bytes:
        return b"".join(self.body_chunks(headers))

    def body_chunks(self, headers: dict[str, str]) -> Iterator[bytes]:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            yield from self._chunked()
        elif headers.get("content-length", "").isdigit():
            yield from self._sized(int(headers["content-length"]))
        else:
            yield from self._until_close()

    def _sized(self, size: int) -> Iterator[bytes]:
        while size > 0:
            if not self._buffer:
                self._buffer = self._more()
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            size -= len(data)
            yield data

    def _until_close(self) -> Iterator[bytes]:
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        while data := self._sock.recv(READ_BYTES):
            yield data

    def _chunked(self) -> Iterator[bytes]:
        while True:
            while b"\r\n" not in self._buffer:
                self._buffer += self._more()
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise AgentGone(f"bad chunk size {line[:20]!r}") from None
            if size == 0:
                return
            yield from self._sized(size)
            while len(self._buffer) < 2:
                self._buffer += self._more()
            self._buffer = self._buffer[2:]
