"""A fake Fn API for the client command tests: an HTTP server on 127.0.0.1 that hands every
request (``Recorded``) to a handler and sends back its ``Reply``, and ``cli``, which runs a
command of ``fnagent`` against a URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from click.testing import CliRunner, Result

from fnagent.cli.main import main

# status, headers, body (FakeFn has a method named list, so the alias lives out here)
Reply = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def answer(status: int, document: Any) -> Reply:
    return status, [("Content-Type", "application/json")], json.dumps(document).encode()


def error(status: int, message: str) -> Reply:
    return answer(status, {"message": message})


def serve(handle: Callable[[Recorded], Reply]) -> Iterator[str]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def dispatch(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Recorded(
                method=self.command,
                path=split.path,
                query={k: v[-1] for k, v in parse_qs(split.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            with lock:
                status, headers, body = handle(request)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = dispatch

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-fn-api", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cli(
    api_url: str, *args: str, input: bytes | None = None, env: dict[str, str | None] | None = None
) -> Result:
    runner = CliRunner()
    result = runner.invoke(
        main,
        list(args),
        input=input,
        env={"FN_API_URL": api_url, "FN_TOKEN": None, **(env or {})},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
