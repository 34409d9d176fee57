#!/usr/bin/env python3
"""fn-test: a function that does what each request asks (fnagent's fn-test-utils).

Stdlib only, so that it controls its raw responses. The format comes from env FN_FORMAT:

http-stream (FN_FORMAT=http-stream)
    Fn's contract: FN_LISTENER is ``unix:<dir>/lsnr.sock``. Listen on
    ``<dir>/phonylsnr-<random>.sock``, chmod it 0666, then atomically (symlink under a
    temporary name, rename) make ``<dir>/lsnr.sock`` a relative symlink to that basename.
    Serve HTTP/1.1 with keep-alive on it, any number of connections, one call at a time;
    every method and path is a call (Fn sends ``POST /call``). Request bodies may come with
    Content-Length or chunked.
cold (any other FN_FORMAT)
    The request is all of stdin, the response body goes to stdout, exit status 0.

Request: a JSON object (body or stdin); every key is optional and null means absent;
input that is empty, not JSON or not an object counts as ``{}``. Handled in this order:

    stderr        string  write it and a newline to stderr
    stdout        string  http-stream: write it and a newline to stdout (cold: ignored)
    alloc_mb      int     allocate and touch that many MiB, held until the answer is sent
    sleep_ms      int     sleep that long
    fork          int     fork up to that many children that wait; "forked" in the answer
                          counts those made, "fork_error" says why the next one failed
                          (null: none did); all are killed and reaped before the answer
    write_mb      int     with write_path: write that many MiB to write_path, then remove
    write_path    string  the file; "written_mb" (whole MiB written) and "write_error"
                          (null: none) go into the answer
    list_dir      string  "listing" in the answer: the sorted names in that directory
    read_file     string  "file" in the answer: that file's text, at most 64 KiB
    connect       string  "host:port": open a TCP connection (2 s timeout) and close it;
                          "connect" in the answer is "connected" or the error
    exit          int     exit the process with that status; no answer
    signal        int     send the process that signal with its default action (the
                          answer follows only when that action lets the process live);
                          see "PID 1" below
    status        int     HTTP status of the answer (http-stream; default 200)
    header_bytes  int     add header X-Big: "h" * header_bytes (http-stream)
    headers       object  extra response headers (a list value repeats the header); they
                          replace defaults of the same name, except Content-Length, which
                          is always the body's (http-stream)
    body_bytes    int     the body is that many "b" bytes (application/octet-stream)
    echo          string  copied into the answer as "echo"

Hostile keys (http-stream only; for the confinement tests):

    relink        string  after the answer is built, atomically replace the listener
                          (FN_LISTENER's path) with a symlink to this target, e.g. an
                          absolute host path; "relinked" in the answer is the target or
                          the error
    header_count  int     add that many headers X-Flood-<i>: <i>
    body_stream_mb int    the body is that many MiB of "s", sent chunked as it is made
                          (never held whole: a huge value is a body without end); the
                          function stops quietly when the peer goes away
    spew_after_mb int     once the answer is sent, a background thread writes that many
                          MiB of 1 KiB lines to stdout (between calls)
    raw           string  the whole response is exactly these characters (each below
                          U+0100, written as one byte: Latin-1), the connection is kept

A key of the wrong type (or write_mb without write_path, or connect not host:port) is
answered 400 with {"ok": false, "error": ...} (cold: the error on stderr, exit status 2).

Default answer (application/json): {"ok": true, "format": ..., "pid": ..., "uid": ...,
"gid": ..., "calls": <calls this process served, 1-based>, "input_bytes": <request body
length>, "env": {...}, "method": ..., "path": ..., "headers": {request headers;
http-stream only}, "echo": ...}, plus the keys of the probes asked for (fork, write_mb,
list_dir, read_file, connect); method and path are null in cold format. A probe that
fails puts "<exception class>: <message>" in its key (fork_error, write_error for those
two), e.g. "listing": "FileNotFoundError: [Errno 2] No such file or directory: '/nope'".

Start-up, in both formats before anything else (cold: before stdin is read):
TEST_EXIT_BEFORE_LISTEN=<code> writes "exiting before listen" to stderr and exits with
that status; TEST_DELAY_LISTEN_MS=<ms> sleeps that long before listening.

PID 1: run without ``--init``, this process is its PID namespace's init, and the kernel
drops every signal it sends itself, and every signal from outside for which it has no
handler except SIGKILL and SIGSTOP. So that it behaves the same either way, fn-test
handles SIGTERM by exiting with status 143 (TEST_IGNORE_SIGTERM=1: ignores SIGTERM, for
testing a stop that has to escalate to SIGKILL), and when a "signal" request whose
default action terminates leaves it alive it exits with 128 + signal, the status Docker
reports for a process killed by that signal. Stop signals do nothing to a PID 1.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MIB = 1 << 20
PAGE = 4096
INT_KEYS = ("sleep_ms", "exit", "signal", "alloc_mb", "status", "header_bytes", "body_bytes",
            "fork", "write_mb", "header_count", "body_stream_mb", "spew_after_mb")
STR_KEYS = ("stderr", "stdout", "echo", "write_path", "list_dir", "read_file", "connect",
            "relink", "raw")
FRAMING_HEADERS = {"content-length", "transfer-encoding"}


class BadRequest(Exception):
    """A request key of the wrong type or out of range."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    held: bytearray | None = field(default=None, repr=False)


def parse_request(body: bytes) -> dict[str, Any]:
    try:
        req = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return {}
    if not isinstance(req, dict):
        return {}
    req = {k: v for k, v in req.items() if v is not None}
    for key in INT_KEYS:
        if key in req and (type(req[key]) is not int):
            raise BadRequest(f"{key} must be an integer")
    for key in STR_KEYS:
        if key in req and not isinstance(req[key], str):
            raise BadRequest(f"{key} must be a string")
    if "headers" in req and not isinstance(req["headers"], dict):
        raise BadRequest("headers must be an object")
    if not 100 <= req.get("status", 200) <= 999:
        raise BadRequest("status must be within 100..999")
    for key in ("alloc_mb", "sleep_ms", "header_bytes", "body_bytes", "fork", "write_mb",
                "header_count", "body_stream_mb", "spew_after_mb"):
        if req.get(key, 0) < 0:
            raise BadRequest(f"{key} must not be negative")
    if ("write_mb" in req) != ("write_path" in req):
        raise BadRequest("write_mb and write_path go together")
    if "connect" in req and not req["connect"].rpartition(":")[2].isdigit():
        raise BadRequest("connect must be host:port")
    if "raw" in req and any(ord(c) > 0xFF for c in req["raw"]):
        raise BadRequest("raw must hold characters below U+0100 only")
    return req


def relink(target: str) -> str:
    """Atomically make the listener path a symlink to ``target``; returns what was done."""
    path = os.path.normpath(os.environ.get("FN_LISTENER", "")[len("unix:"):])
    temporary = f"{path}.{secrets.token_hex(4)}.relink"
    try:
        os.symlink(target, temporary)
        os.replace(temporary, path)
    except OSError as exc:
        return failure(exc)
    return target


def spew(mib: int) -> None:
    """Write ``mib`` MiB of 1 KiB lines to stdout, from a background thread."""
    line = ("x" * 1023 + "\n").encode()

    def run() -> None:
        try:
            for _ in range(mib * 1024):
                sys.stdout.buffer.write(line)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass

    threading.Thread(target=run, name="spew", daemon=True).start()


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def fork_children(count: int) -> dict[str, Any]:
    """Fork up to ``count`` waiting children; kill and reap them all before returning."""
    children: list[int] = []
    error = None
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    while True:
                        signal.pause()
                finally:
                    os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = failure(exc)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "fork_error": error}


def write_file(path: str, mib: int) -> dict[str, Any]:
    """Write ``mib`` MiB to ``path``, then remove it (so the container stays usable)."""
    written, error = 0, None
    chunk = b"w" * MIB
    try:
        with open(path, "wb") as out:
            for _ in range(mib):
                out.write(chunk)
                out.flush()
                written += 1
    except OSError as exc:
        error = failure(exc)
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
    return {"written_mb": written, "write_error": error}


def probe(req: dict[str, Any]) -> dict[str, Any]:
    """The answers to fork, write_mb, list_dir, read_file and connect."""
    found: dict[str, Any] = {}
    if "fork" in req:
        found.update(fork_children(req["fork"]))
    if "write_mb" in req:
        found.update(write_file(req["write_path"], req["write_mb"]))
    if "list_dir" in req:
        try:
            found["listing"] = sorted(os.listdir(req["list_dir"]))
        except OSError as exc:
            found["listing"] = failure(exc)
    if "read_file" in req:
        try:
            with open(req["read_file"], encoding="utf-8", errors="replace") as source:
                found["file"] = source.read(64 * 1024)
        except OSError as exc:
            found["file"] = failure(exc)
    if "connect" in req:
        host, _, port = req["connect"].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            found["connect"] = "connected"
        except OSError as exc:
            found["connect"] = failure(exc)
    return found


def allocate(mib: int) -> bytearray | None:
    if mib <= 0:
        return None
    buf = bytearray(mib * MIB)
    # bytearray comes zeroed from calloc/mmap, untouched: write a byte into every page.
    buf[::PAGE] = b"\x01" * len(range(0, len(buf), PAGE))
    return buf


def call(req: dict[str, Any], *, fmt: str, calls: int, body: bytes,
         http: dict[str, Any] | None, kill: Any) -> Answer:
    """Carry out one request; returns the answer, or does not return (exit, signal)."""
    if "stderr" in req:
        sys.stderr.write(req["stderr"] + "\n")
        sys.stderr.flush()
    if "stdout" in req and http is not None:
        sys.stdout.write(req["stdout"] + "\n")
        sys.stdout.flush()
    held = allocate(req.get("alloc_mb", 0))
    if req.get("sleep_ms", 0) > 0:
        time.sleep(req["sleep_ms"] / 1000)
    probes = probe(req)
    if "exit" in req:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(req["exit"])
    if "signal" in req:
        kill(req["signal"])

    if "relink" in req:
        probes["relinked"] = relink(req["relink"])
    if "body_bytes" in req:
        content_type, payload = "application/octet-stream", b"b" * req["body_bytes"]
    else:
        answer: dict[str, Any] = {
            "ok": True, "format": fmt, "pid": os.getpid(), "uid": os.getuid(),
            "gid": os.getgid(), "calls": calls, "input_bytes": len(body),
            "env": dict(os.environ),
            "method": http["method"] if http else None,
            "path": http["path"] if http else None,
        }
        if http is not None:
            answer["headers"] = http["headers"]
        answer["echo"] = req.get("echo")
        answer.update(probes)
        content_type, payload = "application/json", json.dumps(answer).encode() + b"\n"

    headers = [("Content-Type", content_type)]
    if req.get("header_bytes", 0) > 0:
        headers.append(("X-Big", "h" * req["header_bytes"]))
    headers.extend((f"X-Flood-{i}", str(i)) for i in range(req.get("header_count", 0)))
    for name, value in req.get("headers", {}).items():
        if name.lower() in FRAMING_HEADERS:
            continue
        headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        for v in value if isinstance(value, list) else [value]:
            headers.append((name, v if isinstance(v, str) else json.dumps(v)))
    return Answer(req.get("status", 200), headers, payload, held)


# Signals whose default action does not end the process.
SURVIVABLE = {signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT,
              signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}


def kill_self(signum: int) -> None:
    """Send this process signum with its default action (main thread only)."""
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError, RuntimeError):
        pass  # SIGKILL, SIGSTOP: no handler to reset
    try:
        os.kill(os.getpid(), signum)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"signal {signum}: {exc}") from exc
    # A signal sent to oneself is delivered before kill() returns; still here means PID 1.
    if signum not in SURVIVABLE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)


def on_sigterm(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def startup_controls() -> None:
    code = os.environ.get("TEST_EXIT_BEFORE_LISTEN", "")
    if code:
        sys.stderr.write("exiting before listen\n")
        sys.stderr.flush()
        os._exit(int(code))
    delay_ms = int(os.environ.get("TEST_DELAY_LISTEN_MS", "") or 0)
    if delay_ms > 0:
        time.sleep(delay_ms / 1000)


# --- cold ------------------------------------------------------------------------------

def serve_cold() -> None:
    body = sys.stdin.buffer.read()
    try:
        req = parse_request(body)
        answer = call(req, fmt="cold", calls=1, body=body, http=None, kill=kill_self)
    except BadRequest as exc:
        sys.stderr.write(f"fn-test: bad request: {exc}\n")
        sys.exit(2)
    sys.stdout.buffer.write(answer.body)
    sys.stdout.flush()


# --- http-stream -----------------------------------------------------------------------

@dataclass
class KillOrder:
    signum: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BadRequest | None = None


class Service:
    """What the connection threads share: the call counter, the one-call-at-a-time lock
    and the queue of signals for the main thread (only it may reset a signal's handler)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.kills: queue.Queue[KillOrder] = queue.Queue()

    def kill(self, signum: int) -> None:
        order = KillOrder(signum)
        self.kills.put(order)
        order.done.wait()
        if order.error is not None:
            raise order.error


SERVICE = Service()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fn-test"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stderr belongs to the requests' "stderr"

    def address_string(self) -> str:
        return "unix"

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(1 << 16).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1 << 16) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1 << 16)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_call(self) -> None:
        try:
            body = self.read_body()
        except ValueError:
            self.send_error(400, "unreadable request body")
            self.close_connection = True
            return
        with SERVICE.lock:
            SERVICE.calls += 1
            http = {"method": self.command, "path": self.path, "headers": dict(self.headers)}
            try:
                req = parse_request(body)
                answer = call(req, fmt="http-stream", calls=SERVICE.calls, body=body,
                              http=http, kill=SERVICE.kill)
            except BadRequest as exc:
                error = json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n"
                answer = Answer(400, [("Content-Type", "application/json")], error)
                req = {}
            if "raw" in req:
                self.wfile.write(req["raw"].encode("latin-1"))
                self.wfile.flush()
                return
            if req.get("body_stream_mb"):
                self.stream(answer, req["body_stream_mb"])
            else:
                self.send_answer(answer)
            del answer
            if req.get("spew_after_mb"):
                spew(req["spew_after_mb"])

    def send_answer(self, answer: Answer) -> None:
        self.send_response_only(answer.status)
        names = {name.lower() for name, _ in answer.headers}
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()

    def stream(self, answer: Answer, mib: int) -> None:
        """Send ``mib`` MiB of "s" chunked, as it is made; stop when the peer goes away."""
        self.send_response_only(answer.status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"%x\r\n%s\r\n" % (MIB, b"s" * MIB)
        try:
            for _ in range(mib):
                self.wfile.write(chunk)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = handle_call


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        sys.stderr.write(f"fn-test: connection ended: {exc!r}\n")


def serve_http_stream() -> None:
    listener = os.environ.get("FN_LISTENER", "")
    if not listener.startswith("unix:") or not listener[len("unix:"):].strip("/"):
        sys.exit(f"fn-test: FN_LISTENER must be unix:<path>, not {listener!r}")
    path = os.path.normpath(listener[len("unix:"):])
    directory, name = os.path.split(path)
    stem, dot, ext = name.partition(".")
    token = secrets.token_hex(6)
    phony = f"phony{stem}-{token}{dot}{ext}"

    server = Server(os.path.join(directory, phony), Handler)  # binds and listens
    os.chmod(os.path.join(directory, phony), 0o666)
    temporary = os.path.join(directory, f".{name}.{token}.tmp")
    os.symlink(phony, temporary)
    os.replace(temporary, path)

    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            order = SERVICE.kills.get(timeout=1)
        except queue.Empty:
            continue
        try:
            kill_self(order.signum)
        except BadRequest as exc:
            order.error = exc
        order.done.set()
    sys.exit("fn-test: the server stopped")


def main() -> None:
    if os.environ.get("TEST_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    startup_controls()
    if os.environ.get("FN_FORMAT") == "http-stream":
        serve_http_stream()
    else:
        serve_cold()


if __name__ == "__main__":
    main()
