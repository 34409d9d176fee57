"""A container's output through FIFOs (drivers/docker/pipes.py), without Docker: the command
Docker would run, the wrapper script run by the host's static busybox, reading, pushing back,
draining after the writers are gone."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from drivers.base import TaskLogger
from drivers.docker.pipes import (
    CHUNK_BYTES,
    SHELL_MOUNT,
    STDERR_NAME,
    STDOUT_NAME,
    WRAPPER_NAME,
    OutputPipes,
    command_of,
    wrap_command,
    wrapper_script,
)

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.mark.parametrize(
    ("options", "image", "argv"),
    [
        ({}, {"Entrypoint": ["/fdk", "f.py"], "Cmd": ["handler"]}, ["/fdk", "f.py", "handler"]),
        ({}, {"Entrypoint": None, "Cmd": ["python3", "fn.py"]}, ["python3", "fn.py"]),
        ({"Cmd": ["other"]}, {"Entrypoint": ["/fdk"], "Cmd": ["handler"]}, ["/fdk", "other"]),
        # An Entrypoint given replaces the image's, and the image's Cmd goes with it.
        ({"Entrypoint": ["/mine"]}, {"Entrypoint": ["/fdk"], "Cmd": ["handler"]}, ["/mine"]),
        ({"Entrypoint": "/mine", "Cmd": "x"}, {}, ["/mine", "x"]),
        ({}, {}, []),
    ],
)
def test_the_command_is_the_one_docker_would_run(
    options: dict[str, Any], image: dict[str, Any], argv: list[str]
) -> None:
    assert command_of(options, image) == argv


def test_the_wrapper_runs_the_command_as_its_arguments() -> None:
    entrypoint, cmd = wrap_command(["/fdk", "f.py", "handler"])
    assert entrypoint[0] == SHELL_MOUNT and entrypoint[1] == "-c"
    assert entrypoint[3] == WRAPPER_NAME
    assert cmd == ["/fdk", "f.py", "handler"]


def test_the_fifos_are_writable_by_any_user_and_readable_by_root_only(tmp_path: Path) -> None:
    pipes = OutputPipes(str(tmp_path))
    pipes.make()
    try:
        for name in (STDOUT_NAME, STDERR_NAME):
            mode = os.stat(tmp_path / name).st_mode
            assert stat.S_ISFIFO(mode) and stat.S_IMODE(mode) == 0o622
    finally:
        pipes.close()
        pipes.close()  # idempotent


def run_wrapped(
    tmp_path: Path, argv: list[str], path: str
) -> tuple[subprocess.CompletedProcess[bytes], bytes, bytes]:
    """Run ``argv`` through the wrapper (its FIFOs in ``tmp_path``) as a container would, with
    ``path`` as PATH; what the wrapper itself printed, and what reached each FIFO."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs Debian's busybox-static (/bin/busybox)")
    pipes = OutputPipes(str(tmp_path))
    pipes.make()
    out, err = io.BytesIO(), io.BytesIO()
    try:
        done = subprocess.run(
            [BUSYBOX, "sh", "-c", wrapper_script(str(tmp_path)), WRAPPER_NAME, *argv],
            env={"PATH": path},
            capture_output=True,
            check=False,
        )
        anyio.run(pipes.drain, TaskLogger(stdout=out, stderr=err))
    finally:
        pipes.close()
    return done, out.getvalue(), err.getvalue()


def program(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    made = directory / name
    made.write_text(f'#!/bin/sh\necho {text} "$@"\necho {text}-err >&2\n')
    made.chmod(0o755)


def test_a_bare_name_runs_the_image_s_program_not_a_busybox_applet(tmp_path: Path) -> None:
    # Debian's busybox runs its own applet for a bare name it knows (cat, env, sh...).
    program(tmp_path / "bin", "cat", "the-image-s-cat")
    (tmp_path / "empty").mkdir()
    path = f"{tmp_path / 'empty'}:{tmp_path / 'bin'}:/usr/bin:/bin"
    done, out, err = run_wrapped(tmp_path, ["cat", "a b"], path)
    assert done.returncode == 0 and done.stdout == done.stderr == b""
    assert out == b"the-image-s-cat a b\n"
    assert err == b"the-image-s-cat-err\n"


def test_a_name_with_a_slash_runs_as_it_is(tmp_path: Path) -> None:
    program(tmp_path / "bin", "hello", "hi")
    done, out, err = run_wrapped(tmp_path, [str(tmp_path / "bin" / "hello")], "/nowhere")
    assert done.returncode == 0 and (out, err) == (b"hi\n", b"hi-err\n")


def test_a_directory_or_a_plain_file_on_path_is_not_the_command(tmp_path: Path) -> None:
    (tmp_path / "a" / "tool").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tool").write_text("not executable")
    program(tmp_path / "c", "tool", "found")
    path = ":".join(str(tmp_path / d) for d in "abc")
    done, out, _ = run_wrapped(tmp_path, ["tool"], path)
    assert done.returncode == 0 and out == b"found\n"


def test_a_command_not_found_fails_with_127_on_the_attached_stderr(tmp_path: Path) -> None:
    done, out, err = run_wrapped(tmp_path, ["no-such-program", "x"], str(tmp_path))
    assert done.returncode == 127
    assert done.stderr == b'exec: "no-such-program": executable file not found in $PATH\n'
    assert out == err == b""


def test_arguments_pass_untouched(tmp_path: Path) -> None:
    program(tmp_path / "bin", "args", "got")
    weird = ["*", "$HOME", "a  b", "", "-c", "'q'"]
    done, out, _ = run_wrapped(tmp_path, ["args", *weird], str(tmp_path / "bin"))
    assert done.returncode == 0
    assert out == ("got " + " ".join(weird) + "\n").encode()


def writer(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_NONBLOCK)


@pytest.mark.anyio
async def test_output_is_copied_as_it_comes_and_the_rest_drained(tmp_path: Path) -> None:
    pipes = OutputPipes(str(tmp_path))
    pipes.make()
    out, err = io.BytesIO(), io.BytesIO()
    logger = TaskLogger(stdout=out, stderr=err)
    stdout, stderr = writer(tmp_path / STDOUT_NAME), writer(tmp_path / STDERR_NAME)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipes.copy, logger)
            os.write(stdout, b"out 1\n")
            os.write(stderr, b"err 1\n")
            with anyio.fail_after(10):
                while out.getvalue() != b"out 1\n" or err.getvalue() != b"err 1\n":
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        # Written after copy stopped, by writers that are then gone: drain takes it.
        os.write(stdout, b"out 2\n")
        os.close(stdout)
        os.close(stderr)
        await pipes.drain(logger)
        assert out.getvalue() == b"out 1\nout 2\n"
        assert err.getvalue() == b"err 1\n"
    finally:
        pipes.close()


class SlowSink:
    """A sink that pushes back: each write waits until ``release`` is set."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.release = anyio.Event()

    def write(self, data: bytes) -> object:
        self.got.append(data)
        return self.release.wait()


def fill(fd: int) -> int:
    """Write to ``fd`` until the pipe is full; how much went in."""
    total = 0
    while True:
        try:
            total += os.write(fd, b"x" * 4096)
        except BlockingIOError:
            return total


@pytest.mark.anyio
async def test_a_sink_that_pushes_back_stops_the_reading_so_the_writer_blocks(
    tmp_path: Path,
) -> None:
    pipes = OutputPipes(str(tmp_path))
    pipes.make()
    slow = SlowSink()
    logger = TaskLogger(stdout=slow)
    stdout = writer(tmp_path / STDOUT_NAME)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipes.copy, logger)
            first = fill(stdout)
            with anyio.fail_after(10):
                while not slow.got:
                    await anyio.sleep(0.001)
            for _ in range(20):
                await anyio.sleep(0.001)
            # One read was taken; the next waits for the sink, so the pipe fills up again.
            assert len(slow.got) == 1 and len(slow.got[0]) <= CHUNK_BYTES
            assert fill(stdout) == len(slow.got[0])
            slow.release.set()
            with anyio.fail_after(10):
                while sum(map(len, slow.got)) < first + len(slow.got[0]):
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        os.close(stdout)
        await pipes.drain(logger)
        assert sum(map(len, slow.got)) == first + len(slow.got[0])
    finally:
        pipes.close()
