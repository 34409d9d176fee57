"""A private Docker daemon for tests that stop and start it: its own data root, exec root
(with its own containerd), socket and pid file, in a network namespace of its own (a dockerd
without a bridge deletes `docker0`, which would break the host daemon's bridge), no bridge and no
iptables rules. Needs root, `unshare` and the `dockerd` binary."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import docker

from tests.helpers import wait_for

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


class PrivateDockerd:
    """``start`` / ``stop`` may be called any number of times; ``destroy`` stops it for good
    and removes its directory."""

    def __init__(self) -> None:
        # Short: containerd's socket lives under the exec root and a socket path has 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="fnd-", dir="/tmp"))
        self.host = f"unix://{self.root}/docker.sock"
        self.log_path = self.root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """None when a private daemon can run here, else why not."""
        if os.geteuid() != 0:
            return "a private dockerd needs root"
        if shutil.which("dockerd") is None:
            return "dockerd is not installed (run `make docker`)"
        if shutil.which("unshare") is None:
            return "unshare (util-linux) is not installed"
        return None

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "dockerd",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'dockerd.pid'}",
                    f"--host={self.host}",
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for(
            self._answers, f"the private dockerd (log: {self.log_path})", timeout_s=START_TIMEOUT_S
        )

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the private dockerd exited: {self.log_path.read_text()[-2000:]}")
        # A raw _ping: docker-py's client leaks its socket when its version probe fails.
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            try:
                sock.connect(str(self.root / "docker.sock"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return sock.recv(64).split(b" ")[1:2] == [b"200"]
            except OSError:
                return False

    def stop(self) -> None:
        """Stop it as `systemctl stop docker` would: SIGTERM, its containers are stopped."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="auto", timeout=30)

    def load_images(self, *images: str) -> None:
        """Copy ``images`` from the host's daemon (nothing can be pulled here)."""
        with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as save:
            loaded = subprocess.run(
                ["docker", "--host", self.host, "load", "--quiet"],
                stdin=save.stdout,
                capture_output=True,
                check=False,
            )
        assert save.returncode == 0 and loaded.returncode == 0, loaded.stderr.decode()

    def destroy(self) -> None:
        if self.process is not None:
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
