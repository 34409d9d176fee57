"""A container's stdout and stderr written straight to the agent, through two FIFOs.

Attached, every byte a container prints travels process -> pipe -> containerd-shim -> FIFO ->
dockerd -> attach connection -> agent: three processes copy it, and on a hot container the
FDK's two log frames per call cost more CPU there than the call itself. Here the container
writes into FIFOs the driver reads (``OutputPipes``):

- The task's ``output_dir`` (a host dir of its own, that no other container mounts) holds
  two FIFOs, ``stdout`` and ``stderr``, made by ``OutputPipes.make`` (mode 0622: any uid the
  image runs as may write, none but root may read), bind-mounted read-only at ``PIPES_MOUNT``.
- The container's command is wrapped (``wrap_command``): a static shell bind-mounted
  read-only at ``SHELL_MOUNT`` opens the two FIFOs as its stdout and stderr and ``exec``s the
  image's own entrypoint and command, so the function (PID 1's child under ``--init``) writes
  into the FIFOs itself. What the wrapper prints before that (it cannot open a FIFO, the
  command is not found) still goes to the attached streams, which stay attached.
- The driver opens each FIFO read-write (``O_RDWR``) before the container starts: opening
  never blocks, the function's open finds a reader, and a read never sees an end of file
  while the container lives (the driver holds a write end). Once the container has stopped
  (Docker's wait returned: its processes, the FIFOs' writers, are all gone) ``drain`` reads
  what is left and the driver stops reading.

The FIFOs are read from the event loop's reader callbacks, one read per readiness, written to
the task's sinks there and then. A sink that pushes back (its ``write`` returns an awaitable)
stops reading that FIFO until it is done, so a container that spews into a slow reader
blocks on its write, as it does attached.

Should the agent die, the FIFOs lose their reader: the function's next write fails (EPIPE,
or SIGPIPE where the function does not ignore it), where attached output is discarded by
dockerd and the function carries on. Such orphans are removed at the next start anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
from collections import deque
from collections.abc import Awaitable, Sequence

from drivers.base import LogSink, TaskLogger, deliver
from drivers.errors import InvalidInputError

PIPES_MOUNT = "/run/fnagent/out"
"""Where a task's ``output_dir`` appears in its container (read-only)."""
SHELL_MOUNT = "/run/fnagent/sh"
"""Where the static shell appears in the container (read-only). Named ``sh``: busybox picks
its applet from the name it is run as."""
STDOUT_NAME = "stdout"
STDERR_NAME = "stderr"
FIFO_MODE = 0o622
CHUNK_BYTES = 64 * 1024
WRAPPER_NAME = "fnagent-output"
"""The wrapper shell's ``$0``: it names the wrapper in what it prints."""

# The command is looked up on PATH here, not by ``exec``: Debian's static busybox runs its
# own applet for a bare name it knows (``sh``, ``env``, ``cat``...) instead of the image's
# program. A name with a slash is run as it is, as runc would. The lookup follows runc's (Go's
# exec.LookPath): an empty PATH entry is the working directory; a match is an executable that
# is not a directory; none found fails as runc does, with 127.
_SCRIPT = """set -f
c=$1; shift
case $c in
*/*) ;;
*)  f=; IFS=:
    for d in $PATH; do
        [ -n "$d" ] || d=.
        if [ -x "$d/$c" ] && [ ! -d "$d/$c" ]; then f=$d/$c; break; fi
    done
    unset IFS
    if [ -z "$f" ]; then
        echo "exec: \\"$c\\": executable file not found in \\$PATH" >&2; exit 127
    fi
    c=$f;;
esac
exec "$c" "$@" >>{stdout} 2>>{stderr}
"""


def wrapper_script(mount: str = PIPES_MOUNT) -> str:
    """The shell script that runs ``"$@"`` with its output in the FIFOs under ``mount``."""
    return _SCRIPT.format(
        stdout=shlex.quote(f"{mount}/{STDOUT_NAME}"), stderr=shlex.quote(f"{mount}/{STDERR_NAME}")
    )


def wrap_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The (Entrypoint, Cmd) that runs ``argv`` (the image's entrypoint and command, as Docker
    would join them) with its output in the FIFOs."""
    return [SHELL_MOUNT, "-c", wrapper_script(), WRAPPER_NAME], list(argv)


def command_of(options: dict[str, object], image_config: dict[str, object]) -> list[str]:
    """The argv Docker would run for create ``options`` on an image whose config is
    ``image_config``: an Entrypoint given replaces the image's, and then the image's Cmd is not
    used either; a Cmd given replaces the image's."""
    entrypoint = options.get("Entrypoint")
    cmd = options.get("Cmd")
    if entrypoint is None:
        entrypoint = image_config.get("Entrypoint")
        if cmd is None:
            cmd = image_config.get("Cmd")
    return [*_words(entrypoint), *_words(cmd)]


def _words(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]  # Docker takes a string as a one-word list
    if isinstance(value, list | tuple):
        return [str(word) for word in value]
    return []


_PT_INTERP = 3


def check_static_shell(path: str) -> None:
    """InvalidInputError unless ``path`` is a statically linked ELF executable: the shell
    runs in images that may hold no C library at all (or another one)."""
    advice = (
        "FN_LOG_PIPE=direct wraps each hot container's command in a static shell (Debian's "
        "busybox-static: /bin/busybox); install it, name another with FN_LOG_PIPE_SHELL, or "
        "set FN_LOG_PIPE=docker"
    )
    try:
        with open(path, "rb") as file:
            header = file.read(64)
            interpreted = _has_interpreter(file, header)
        executable = os.access(path, os.X_OK) and os.path.isfile(path)
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file; {advice}") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror}; {advice}") from None
    if interpreted is not False or not executable:
        raise InvalidInputError(f"{path} is not a static executable; {advice}")


def _has_interpreter(file: io.BufferedReader, header: bytes) -> bool | None:
    """Whether the ELF file has a PT_INTERP program header (is dynamically linked); None when
    it is no ELF file."""
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2):
        return None
    wide, order = header[4] == 2, "little" if header[5] == 1 else "big"

    def number(at: int, size: int) -> int:
        return int.from_bytes(header[at : at + size], order)  # type: ignore[arg-type]

    if wide:
        offset, entry_size, count = number(32, 8), number(54, 2), number(56, 2)
    else:
        offset, entry_size, count = number(28, 4), number(42, 2), number(44, 2)
    for index in range(min(count, 256)):
        file.seek(offset + index * entry_size)
        if int.from_bytes(file.read(4), order) == _PT_INTERP:  # type: ignore[arg-type]
            return True
    return False


class OutputPipes:
    """The two FIFOs of one container, in ``directory`` (see the module docstring).

    ``make`` creates and opens them, ``copy`` reads them into a ``TaskLogger`` until
    cancelled, ``drain`` reads what is left once the container ended, ``close`` closes them
    (idempotent)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fds: list[int] = []
        self._pending: deque[tuple[int, LogSink, Awaitable[object]]] = deque()
        self._wake: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<OutputPipes {self.directory} open={bool(self._fds)}>"

    def make(self) -> None:
        """Create the FIFOs and open them read-write (never blocks). Raises OSError."""
        if self._fds:
            return
        try:
            for name in (STDOUT_NAME, STDERR_NAME):
                path = os.path.join(self.directory, name)
                os.mkfifo(path, 0o600)
                os.chmod(path, FIFO_MODE)  # not through mkfifo: the umask would take bits off
                self._fds.append(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            self.close()
            raise

    def _sinks(self, logger: TaskLogger) -> list[tuple[int, LogSink]]:
        return list(zip(self._fds, (logger.stdout, logger.stderr), strict=True))

    async def copy(self, logger: TaskLogger) -> None:
        """Read both FIFOs into ``logger`` until cancelled."""
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        sinks = self._sinks(logger)
        for fd, sink in sinks:
            loop.add_reader(fd, self._readable, loop, fd, sink)
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._pending:
                    fd, sink, written = self._pending.popleft()
                    await written
                    loop.add_reader(fd, self._readable, loop, fd, sink)
        finally:
            self._wake = None
            for fd, _ in sinks:
                loop.remove_reader(fd)

    def _readable(self, loop: asyncio.AbstractEventLoop, fd: int, sink: LogSink) -> None:
        try:
            data = os.read(fd, CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            loop.remove_reader(fd)
            return
        written = sink.write(data)
        if isinstance(written, Awaitable):
            loop.remove_reader(fd)
            self._pending.append((fd, sink, written))
            if self._wake is not None:
                self._wake.set()

    async def drain(self, logger: TaskLogger) -> None:
        """Once the container ended (``copy`` no longer running): write what is left in the
        FIFOs to ``logger``. Bounded: with every writer gone, a FIFO holds at most its
        buffer."""
        while self._pending:
            _, _, written = self._pending.popleft()
            await written
        for fd, sink in self._sinks(logger):
            while True:
                try:
                    data = os.read(fd, CHUNK_BYTES)
                except OSError:
                    break  # BlockingIOError: empty
                if not data:
                    break
                await deliver(sink, data)

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
