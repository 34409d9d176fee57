"""The FDK hello function started with the plain docker CLI, the way a user would without
fnagent: the baseline several benchmarks compare against."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import time
import uuid

FN_HELLO = "fnagent/fn-hello"
LISTEN_DEADLINE_S = 10.0


def docker_run_hello(labels: dict[str, str]) -> tuple[str, str]:
    """``docker run -d`` fn-hello with a socket dir, wait until it listens; returns the
    container id and the socket dir. The caller removes the container."""
    socket_dir = tempfile.mkdtemp(prefix="fnagent-bench-docker-")
    os.chmod(socket_dir, 0o777)
    label_args = [arg for name, value in labels.items() for arg in ("--label", f"{name}={value}")]
    name = f"fnagent-bench-{uuid.uuid4().hex[:12]}"
    started = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            *label_args,
            "--user",
            "1000:1000",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{socket_dir}:/tmp/iofs",
            "-e",
            "FN_FORMAT=http-stream",
            "-e",
            "FN_LISTENER=unix:/tmp/iofs/lsnr.sock",
            FN_HELLO,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        # A start that fails leaves the created container behind.
        docker_rm(name)
        raise RuntimeError(f"docker run fn-hello failed: {started.stderr.strip()}")
    container = started.stdout.strip()
    deadline = time.monotonic() + LISTEN_DEADLINE_S
    while not _listening(os.path.join(socket_dir, "lsnr.sock")):
        if time.monotonic() > deadline:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
            raise RuntimeError("fn-hello did not listen in time")
        time.sleep(0.002)
    return container, socket_dir


def _listening(path: str) -> bool:
    # The baseline trusts its function: it follows the FDK's symlink, as plain clients do.
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def docker_rm(container: str) -> None:
    subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
