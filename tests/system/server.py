"""A live `fnagent serve` process on 127.0.0.1 for system tests, and a tiny HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import wait_for
from tests.system.helpers import free_port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return str(self.json()["message"])


@dataclass
class Server:
    """One `fnagent serve` process; ``stop`` sends SIGTERM and returns its exit code."""

    port: int
    db_path: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    token: str | None = None
    extra_args: list[str] = field(default_factory=list)
    db_url: str | None = None
    """--db-url; None: the SQLite file at ``db_path``."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fnagent",
                    "serve",
                    "--port",
                    str(self.port),
                    "--db-url",
                    self.db_url or f"sqlite3://{self.db_path}",
                    *self.extra_args,
                ],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        wait_for(
            self._ready, f"fnagent serve on port {self.port} (log: {self.log_path})", timeout_s=30
        )
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"fnagent serve exited: {self.log_path.read_text()[-2000:]}")
        try:
            return self.request("GET", "/").status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 60,
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent_headers = dict(headers or {})
        if self.token and "Authorization" not in sent_headers:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=payload, headers=sent_headers)
            response = connection.getresponse()
            return Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            connection.close()


def make_server(
    tmp_path: Path, env: dict[str, str], *extra_args: str, token: str | None = None
) -> Server:
    return Server(
        port=free_port(),
        db_path=tmp_path / "fnagent.db",
        env={**os.environ, **env, "FN_IOFS_PATH": str(tmp_path / "iofs")},
        log_path=tmp_path / "serve.log",
        token=token,
        extra_args=list(extra_args),
    )
