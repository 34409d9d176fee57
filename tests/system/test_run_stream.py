"""`fnagent run --format http-stream` streams stdin to the function: memory stays flat."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import docker

from tests.system.helpers import FN_TEST, require_image

MIB = 1024 * 1024
INPUT_MIB = 300


def _vm_kib(pid: int, field: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def test_300_mib_of_stdin_flows_through_without_growing_the_cli(
    cli_env: dict[str, str], docker_api: docker.APIClient, tmp_path: Path
) -> None:
    require_image(docker_api, FN_TEST)
    args = ["run", "--format", "http-stream", "-m", "2g", "--timeout", "240s", FN_TEST]
    with (tmp_path / "stdout").open("wb") as output, (tmp_path / "stderr").open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "fnagent", *args],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=errors,
            env=cli_env,
        )
    assert process.stdin is not None
    written = 0
    peaks: list[int] = []
    lock = threading.Lock()

    def feed() -> None:
        nonlocal written
        assert process.stdin is not None
        block = b"\0" * MIB
        try:
            for _ in range(INPUT_MIB):
                process.stdin.write(block)
                with lock:
                    written += MIB
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    baseline: int | None = None
    # Sample the peak while the input flows: once past the start-up (8 MiB taken), the CLI
    # must not grow by more than a fraction of what it passes on.
    while feeder.is_alive():
        feeder.join(0.05)
        with lock:
            taken = written
        peak = _vm_kib(process.pid, "VmHWM")
        if peak is None:
            break
        if baseline is None and taken >= 8 * MIB:
            baseline = peak
        peaks.append(peak)
    returncode = process.wait(timeout=240)
    assert returncode == 0, (tmp_path / "stderr").read_bytes()
    assert json.loads((tmp_path / "stdout").read_bytes())["input_bytes"] == INPUT_MIB * MIB
    assert baseline is not None, "the CLI ended before taking 8 MiB"
    growth_mib = (max(peaks) - baseline) / 1024
    print(f"peak RSS growth while streaming: {growth_mib:.1f} MiB")
    assert growth_mib < 64, f"the CLI grew by {growth_mib:.0f} MiB while streaming"
