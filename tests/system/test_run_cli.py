"""`fnagent run` as a user runs it: a subprocess, real containers, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from drivers.docker import INSTANCE_LABEL, TASK_LABEL
from tests.helpers import wait_for
from tests.system.helpers import (
    BUSYBOX,
    FN_HELLO,
    FN_SHELL,
    FN_TEST,
    new_instance_id,
    require_image,
    run_cli,
)
from tests.system.server import Server, make_server

# Nothing listens on port 1: `fnagent run` finds no agent there and runs in its own process
# (conftest's cli_env sets it).
NO_AGENT = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `fnagent serve` that the module's runs are handed to (its own instance label)."""
    env = {**os.environ, "FNAGENT_INSTANCE_ID": new_instance_id()}
    made = make_server(tmp_path_factory.mktemp("agent"), env).start()
    yield made
    assert made.stop() == 0


@pytest.fixture(params=["standalone", "agent"])
def cli_env(
    request: pytest.FixtureRequest, cli_env: dict[str, str], docker_api: docker.APIClient
) -> Iterator[dict[str, str]]:
    """Every test below runs both ways: in the `fnagent run` process (no agent answers at
    FN_API_URL) and handed to a running agent; then the agent must hold no run container
    (it removes a run's container just after answering, so that is polled for)."""
    if request.param == "standalone":
        yield {**cli_env, "FN_API_URL": NO_AGENT}
        return
    server: Server = request.getfixturevalue("agent")
    yield {**cli_env, "FN_API_URL": server.url}
    _no_run_containers(docker_api, server)


def _no_run_containers(docker_api: docker.APIClient, server: Server) -> None:
    runs = {"label": [f"{INSTANCE_LABEL}={server.env['FNAGENT_INSTANCE_ID']}", TASK_LABEL]}
    try:
        wait_for(lambda: not docker_api.containers(all=True, filters=runs), "run containers gone")
    except AssertionError:
        left = docker_api.containers(all=True, filters=runs)
        names = [c["Names"] for c in left]
        raise AssertionError(f"the agent left run containers: {names}") from None


@pytest.fixture
def standalone_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "FN_API_URL": NO_AGENT}


def test_stdin_round_trip_of_one_mib_is_byte_exact(cli_env: dict[str, str]) -> None:
    data = bytes(range(256)) * 4096
    done = run_cli(["run", BUSYBOX, "cat"], cli_env, input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_shell_function_reads_stdin_and_writes_stdout(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_SHELL)
    done = run_cli(["run", FN_SHELL], cli_env, input=b"bob\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"Hello, bob!\n"


def test_exit_code_is_passed_through(cli_env: dict[str, str]) -> None:
    done = run_cli(["run", BUSYBOX, "sh", "-c", "echo oops >&2; exit 3"], cli_env)
    assert done.returncode == 3
    assert b"oops" in done.stderr


def test_timeout_exits_124_within_a_second_of_the_limit(cli_env: dict[str, str]) -> None:
    started = time.monotonic()
    done = run_cli(["run", "--timeout", "1s", BUSYBOX, "sleep", "60"], cli_env)
    elapsed = time.monotonic() - started
    assert done.returncode == 124
    assert b"Timed out" in done.stderr
    # The limit, one second of grace, and the interpreter's own start and the removal.
    assert elapsed < 1 + 1 + 1.5


def test_out_of_memory_is_reported_with_the_limit(cli_env: dict[str, str]) -> None:
    hog = "x=$(head -c 67108864 /dev/zero | tr '\\0' a)"
    done = run_cli(["run", "--memory", "16m", BUSYBOX, "sh", "-c", hog], cli_env)
    assert done.returncode == 137
    assert b"ran out of memory" in done.stderr and b"16 MiB" in done.stderr


def test_json_result_has_status_timings_and_output(cli_env: dict[str, str]) -> None:
    done = run_cli(["run", "--json", BUSYBOX, "sh", "-c", "echo hi; sleep 1.5"], cli_env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "success"
    assert document["exit_code"] == 0
    assert document["stdout"] == "hi\n"
    assert {"prepare", "start", "run", "remove", "total"} <= document["timings_ms"].keys()
    assert document["stats"], "a 1.5 s run gets at least one resource sample"
    assert document["stats"][0]["metrics"]["mem_limit"] == 128 * 1024 * 1024


def test_env_flags_reach_the_function(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "FROM_HOST": "passed"}
    done = run_cli(
        ["run", "-e", "A=1", "-e", "FROM_HOST", BUSYBOX, "sh", "-c", "echo $A $FROM_HOST"], env
    )
    assert done.stdout == b"1 passed\n"


def test_http_stream_one_off_with_the_fdk_hello(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_HELLO)
    done = run_cli(["run", "--format", "http-stream", FN_HELLO], cli_env, input=b'{"name":"fn"}')
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"Hello, fn!"


def test_http_stream_non_2xx_answer_exits_1(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    done = run_cli(["run", "--format", "http-stream", FN_TEST], cli_env, input=b'{"status": 418}')
    assert done.returncode == 1
    assert b"HTTP 418" in done.stderr


def test_http_stream_exit_before_listening_is_an_agent_failure(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    args = ["run", "--format", "http-stream", "-e", "TEST_EXIT_BEFORE_LISTEN=3", FN_TEST]
    done = run_cli(args, cli_env)
    assert done.returncode == 125
    assert b"exited before it listened" in done.stderr
    assert b"http-stream contract" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "Not An Image"], b"invalid image reference"),
        (["run", "UPPER/case"], b"must be lowercase"),
        (["run", "--memory", "lots", BUSYBOX], b"invalid memory"),
        (["run", "--cpus", "-1", BUSYBOX], b"invalid cpus"),
        (["run", "--timeout", "soon", BUSYBOX], b"invalid duration"),
        (["run", "-e", "1BAD=x", BUSYBOX], b"invalid environment variable"),
        (["run", "--format", "smoke", BUSYBOX], b"Invalid value for '--format'"),
        (["run", "--no-such-flag", BUSYBOX], b"No such option"),
        (["run", "--pull", "never", "fnagent/not-here:1"], b"not present locally"),
        (["run", "--pull", "always", "127.0.0.1:9/nothing:1"], b"cannot reach the registry"),
    ],
)
def test_bad_input_exits_125_with_one_line(
    cli_env: dict[str, str], args: list[str], message: bytes
) -> None:
    done = run_cli(args, cli_env)
    assert done.returncode == 125, done
    assert message in done.stderr
    assert b"Traceback" not in done.stderr


def test_daemon_unreachable_exits_125(standalone_env: dict[str, str]) -> None:
    env = {**standalone_env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = run_cli(["run", BUSYBOX, "true"], env)
    assert done.returncode == 125
    assert b"Docker daemon" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_bare_memory_number_is_mib(cli_env: dict[str, str]) -> None:
    read = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    done = run_cli(["run", "-m", "64", BUSYBOX, "sh", "-c", read], cli_env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 64 * 1024 * 1024


@pytest.mark.parametrize("value", ["512k", "0", "1k"])
def test_memory_below_dockers_floor_gets_our_message(cli_env: dict[str, str], value: str) -> None:
    done = run_cli(["run", "-m", value, BUSYBOX, "true"], cli_env)
    assert done.returncode == 125
    assert (
        done.stderr.decode().strip()
        == f"fnagent: invalid memory {value!r}: must be at least 6m (Docker's floor)"
    )


def test_http_stream_out_of_memory_exits_137_naming_the_limit(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    args = ["run", "--format", "http-stream", "-m", "32m", FN_TEST]
    done = run_cli(args, cli_env, input=b'{"alloc_mb": 256}')
    assert done.returncode == 137, done.stderr
    assert b"ran out of memory" in done.stderr and b"32 MiB" in done.stderr


def test_json_reports_agent_side_failures_too(cli_env: dict[str, str]) -> None:
    done = run_cli(["run", "--json", "--pull", "never", "fnagent/not-here:1"], cli_env)
    assert done.returncode == 125
    document = json.loads(done.stdout)
    assert document["status"] == "error"
    assert "not present locally" in document["error"]
    assert b"Traceback" not in done.stderr


def test_run_help_lists_every_exit_code(cli_env: dict[str, str]) -> None:
    done = run_cli(["run", "--help"], cli_env)
    for code in (b"124", b"125", b"137", b"130", b"1 "):
        assert code in done.stdout


def test_closed_stdin_is_an_empty_input(cli_env: dict[str, str]) -> None:
    script = 'exec "$0" -m fnagent run --timeout 20s fnagent/busybox sh -c "wc -c; echo done" <&-'
    done = subprocess.run(
        ["bash", "-c", script, sys.executable], capture_output=True, env=cli_env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"0", b"done"]


def test_ctrl_c_removes_the_container_and_exits_130(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fnagent", "run", BUSYBOX, "sleep", "60"],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: docker_api.containers(filters={"label": TASK_LABEL, "ancestor": BUSYBOX}),
            "the run's container",
            timeout_s=30,
        )
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert b"the container was removed" in err


def test_an_agent_with_a_token_refuses_a_run_without_it(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    server = make_server(tmp_path, {**cli_env, "FN_TOKEN": "s3cret"}, token="s3cret").start()
    try:
        env = {**cli_env, "FN_API_URL": server.url}
        refused = run_cli(["run", BUSYBOX, "true"], env)
        assert refused.returncode == 125
        assert b"Invalid authentication credentials" in refused.stderr
        done = run_cli(["run", BUSYBOX, "echo", "ok"], {**env, "FN_TOKEN": "s3cret"})
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"ok\n"
    finally:
        assert server.stop() == 0


def test_an_agent_stopped_just_after_answering_still_removes_the_run(
    tmp_path: Path, docker_api: docker.APIClient
) -> None:
    """The agent answers a run before removing its container; stopping the agent right after
    the answer must not leave the container behind."""
    env = {**os.environ, "FNAGENT_INSTANCE_ID": new_instance_id()}
    server = make_server(tmp_path, env).start()
    try:
        done = run_cli(["run", BUSYBOX, "echo", "ok"], {**env, "FN_API_URL": server.url})
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"ok\n"
    finally:
        assert server.stop() == 0
    left = docker_api.containers(
        all=True, filters={"label": f"{INSTANCE_LABEL}={env['FNAGENT_INSTANCE_ID']}"}
    )
    assert not left, f"the agent left containers: {[c['Names'] for c in left]}"
