"""An in-memory ``Driver`` for the agent's unit tests: containers are async Python programs.

No I/O: a container is a record in ``FakeDriver.containers`` and its process is an async callable
(a ``Program``) run in the driver's task group. A program is looked up by the basename of the
command's first word (``/bin/cat`` -> ``cat``), or by image when the command is None. Built-ins
mirror busybox so the same task also runs on the Docker driver with the ``fnagent/busybox``
image: ``cat [FILE...]``, ``true``, ``false``, ``sleep N``, ``echo ARGS``, ``env``,
``printenv [NAME]``. The only files a program sees are the task's secrets, at
``/run/secrets/<name>`` (``ProgramContext.files``).

Semantics follow the Docker driver (and the Docker Engine behind it):

- ``create_cookie`` builds ``container_options``: a subset of the Engine API create body the
  Docker driver uses (``Image``, ``Cmd``, ``Env`` as ``NAME=value`` strings, ``Labels``, ``User``,
  ``WorkingDir``, ``HostConfig``). They stay editable until ``prepare_cookie``, which copies them
  into the container: the program then sees whatever ``Image``, ``Cmd`` and ``Env`` say.
- ``prepare_cookie`` "creates" the container (state ``created``). An image named in
  ``missing_images`` raises ``ImageNotFoundError``; a malformed reference ``InvalidInputError``.
- ``run`` starts the program (state ``running``) and returns a ``WaitResult``; the program runs
  whether or not anyone waits. A command with no program raises ``InvalidInputError``, as
  Docker's start does for an executable not found.
- ``WaitResult.wait`` (the outcome is cached: a second call returns it again): exit 0 ->
  ``SUCCESS``; another code -> ``ERROR`` with ``exit_code`` and an error naming the code;
  ``task.timeout_s`` passed (counted from the start of ``wait``, as the Docker driver does) ->
  program cancelled, ``TIMEOUT`` with ``FunctionTimeoutError``; the waiting task cancelled ->
  program cancelled, ``CANCELLED`` recorded (``result``), then the cancellation propagates; a
  program raising ``FakeOOM`` -> ``KILLED``, exit code 137, ``OutOfMemoryError`` naming the limit
  in MiB. Any other exception a program raises is a bug in the test, so ``wait`` re-raises it.
  A first ``wait`` after ``aclose`` raises ``ClosedError``.
- ``freeze`` / ``unfreeze`` move ``running`` <-> ``paused``; while paused a program makes no
  progress (every ``ProgramContext`` call parks), though its timeout keeps counting, as in Docker.
  Like the Engine's 409s, freezing a container that is not running, or thawing one that is not
  paused, raises ``DockerAPIError``.
- ``Cookie.aclose`` is idempotent: it kills a running program (a waiter gets ``ERROR`` with a
  ``ContainerGoneError``), marks the container ``removed``, calls ``task.close()`` once; every
  later call on the cookie raises ``ClosedError``. ``FakeDriver.aclose`` closes every cookie
  still open.

Use the driver as an async context manager: it owns the task group the programs run in.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.abc
import anyio.lowlevel

from drivers.base import (
    SECRETS_MOUNT,
    ContainerTask,
    Cookie,
    Driver,
    LogSink,
    RunResult,
    RunStatus,
    WaitResult,
    check_secret_names,
)
from drivers.errors import (
    ClosedError,
    ContainerGoneError,
    DockerAPIError,
    DockerUnavailableError,
    FnAgentError,
    ImageNotFoundError,
    InvalidInputError,
)
from drivers.images import ImageRef, parse_image
from drivers.results import cancelled, exit_result, out_of_memory, timed_out
from drivers.stats import Stat

logger = logging.getLogger(__name__)

ContainerState = Literal["created", "running", "paused", "exited", "removed"]

# What Docker reports for a process the kernel's OOM killer ended (SIGKILL).
OOM_EXIT_CODE = 137


class FakeOOM(Exception):
    """Raised by a program to be ended as if the kernel's OOM killer had killed it."""


Program = Callable[["ProgramContext"], Awaitable[int]]
"""A container's process: gets its context, returns the exit code."""


class _FreezeGate:
    """Open while the container runs; closed while it is paused."""

    def __init__(self) -> None:
        self.frozen = False
        self._thawed = anyio.Event()
        self._thawed.set()

    def freeze(self) -> None:
        if not self.frozen:
            self.frozen = True
            self._thawed = anyio.Event()

    def unfreeze(self) -> None:
        self.frozen = False
        self._thawed.set()

    async def checkpoint(self) -> None:
        # Always yield, so even a program that only writes can be cancelled or frozen.
        await anyio.lowlevel.checkpoint()
        while self.frozen:
            await self._thawed.wait()


class OutputStream:
    """A program's stdout or stderr: each write first parks while the container is paused."""

    def __init__(self, sink: LogSink, gate: _FreezeGate) -> None:
        self._sink = sink
        self._gate = gate

    async def write(self, data: bytes) -> None:
        await self._gate.checkpoint()
        self._sink.write(data)


class ProgramContext:
    """What a program sees: its task, argv, environment and output streams.

    A program must respect the freeze state: call ``checkpoint`` (or ``sleep``, or write to
    ``stdout`` / ``stderr``, which checkpoint) between steps, so it makes no progress while
    ``frozen``. Stdin is ``task.input`` (None: no stdin, like a container without one).
    """

    def __init__(
        self, *, task: ContainerTask, argv: list[str], env: dict[str, str], gate: _FreezeGate
    ) -> None:
        self.task = task
        self.argv = argv
        self.env = env
        self.files = {f"{SECRETS_MOUNT}/{name}": value for name, value in task.secrets.items()}
        """The container's files: path -> content (its secrets, read-only)."""
        self._gate = gate
        self.stdout = OutputStream(task.logger.stdout, gate)
        self.stderr = OutputStream(task.logger.stderr, gate)

    @property
    def args(self) -> list[str]:
        """The command's arguments (argv without the program name)."""
        return self.argv[1:]

    @property
    def frozen(self) -> bool:
        return self._gate.frozen

    async def checkpoint(self) -> None:
        """Yield to the event loop; park here while the container is paused."""
        await self._gate.checkpoint()

    async def sleep(self, seconds: float) -> None:
        """Sleep by the wall clock (a paused process's sleep keeps counting), then checkpoint."""
        await anyio.sleep(seconds)
        await self._gate.checkpoint()


async def _cat(ctx: ProgramContext) -> int:
    if ctx.args:
        code = 0
        for path in ctx.args:
            content = ctx.files.get(path)
            if content is None:
                await ctx.stderr.write(
                    f"cat: can't open '{path}': No such file or directory\n".encode()
                )
                code = 1
            else:
                await ctx.stdout.write(content)
        return code
    if ctx.task.input is not None:
        async for chunk in ctx.task.input:
            await ctx.stdout.write(chunk)
    return 0


async def _true(ctx: ProgramContext) -> int:
    await ctx.checkpoint()
    return 0


async def _false(ctx: ProgramContext) -> int:
    await ctx.checkpoint()
    return 1


async def _sleep(ctx: ProgramContext) -> int:
    try:
        seconds = float(ctx.args[0])
    except (IndexError, ValueError):
        await ctx.stderr.write(b"sleep: invalid number\n")
        return 1
    await ctx.sleep(seconds)
    return 0


async def _echo(ctx: ProgramContext) -> int:
    await ctx.stdout.write((" ".join(ctx.args) + "\n").encode())
    return 0


async def _printenv(ctx: ProgramContext) -> int:
    if not ctx.args:
        await ctx.stdout.write("".join(f"{k}={v}\n" for k, v in ctx.env.items()).encode())
        return 0
    found = [ctx.env[name] for name in ctx.args if name in ctx.env]
    await ctx.stdout.write("".join(f"{value}\n" for value in found).encode())
    # busybox: exit 1 when any name is unset.
    return 0 if len(found) == len(ctx.args) else 1


async def _env(ctx: ProgramContext) -> int:
    """``env`` with no arguments: the environment, one NAME=value a line (the Debian busybox
    build has no printenv applet, so cases shared with Docker use this)."""
    await ctx.stdout.write("".join(f"{k}={v}\n" for k, v in ctx.env.items()).encode())
    return 0


BUILTINS: Mapping[str, Program] = {
    "cat": _cat,
    "true": _true,
    "false": _false,
    "sleep": _sleep,
    "echo": _echo,
    "printenv": _printenv,
    "env": _env,
}


def _create_body(task: ContainerTask) -> dict[str, Any]:
    """The subset of the Docker driver's create body the fake reads or tests assert on."""
    options: dict[str, Any] = {
        "Image": task.image,
        "Env": [f"{name}={value}" for name, value in task.env_vars.items()],
        "Labels": dict(task.labels),
        "OpenStdin": task.input is not None,
        "HostConfig": {"NetworkMode": "none" if task.network_disabled else "default"},
    }
    if task.memory_bytes:
        options["HostConfig"]["Memory"] = task.memory_bytes
    if task.cpus_mcpus:  # per 100 ms period, as the Docker driver's
        options["HostConfig"]["CpuQuota"] = task.cpus_mcpus * 100
    if task.command is not None:
        options["Cmd"] = list(task.command)
    if task.user is not None:
        options["User"] = task.user
    if task.workdir:
        options["WorkingDir"] = task.workdir
    return options


def _environment(options: Mapping[str, Any]) -> dict[str, str]:
    pairs = (str(item).partition("=") for item in options.get("Env") or ())
    return {name: value for name, _, value in pairs}


@dataclass(kw_only=True)
class FakeContainer:
    """One container in the fake's registry, kept after removal for assertions."""

    id: str
    task_id: str
    options: dict[str, Any]
    """The create options as they were at ``prepare_cookie``."""
    background: bool = False
    """Its task's ``background`` (nobody waited for its start)."""
    state: ContainerState = "created"
    result: RunResult | None = None
    """How the run ended (set when the program ends or is killed, or its waiter gives up)."""
    done: anyio.Event = field(default_factory=anyio.Event, repr=False)

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.options.get("Labels") or {}
        return labels

    @property
    def image(self) -> str:
        return str(self.options["Image"])

    @property
    def command(self) -> list[str] | None:
        cmd = self.options.get("Cmd")
        return [str(word) for word in cmd] if cmd is not None else None


class FakeWaitResult(WaitResult):
    """Waits for the program; ``result`` is the outcome once known (cancelled runs included)."""

    def __init__(self, cookie: FakeCookie) -> None:
        self._cookie = cookie
        self.result: RunResult | None = None

    async def wait(self) -> RunResult:
        if self.result is not None:
            return self.result
        cookie = self._cookie
        container = cookie._require_container()
        timeout_s = cookie.task.timeout_s
        try:
            with anyio.move_on_after(timeout_s) as scope:
                await container.done.wait()
            if scope.cancelled_caught:
                cookie._kill(timed_out(timeout_s))
        except anyio.get_cancelled_exc_class():
            # As in the Docker driver: a cancelled wait kills the container, records it, re-raises.
            cookie._kill(cancelled())
            self.result = container.result
            raise
        if cookie._crash is not None:
            raise cookie._crash
        assert container.result is not None
        self.result = container.result
        return self.result


class FakeCookie(Cookie):
    """One fake container's life; see the module docstring for the contract."""

    def __init__(self, driver: FakeDriver, task: ContainerTask) -> None:
        self.task = task
        self.container_options = _create_body(task)
        self._driver = driver
        self._gate = _FreezeGate()
        self._container: FakeContainer | None = None
        self._scope: anyio.CancelScope | None = None
        self._crash: Exception | None = None
        self._closed = False
        self._started_at: float | None = None

    def __repr__(self) -> str:
        return f"<FakeCookie task={self.task.id!r} state={self.state}>"

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    @property
    def container(self) -> FakeContainer | None:
        """The container record once ``prepare_cookie`` made it."""
        return self._container

    @property
    def state(self) -> ContainerState | None:
        """The container's state: None until ``prepare_cookie`` creates it (``removed`` once
        the cookie is closed, created or not)."""
        if self._container is None:
            return "removed" if self._closed else None
        return self._container.state

    async def run(self) -> WaitResult:
        container = self._require_container()
        if container.state != "created":
            raise RuntimeError(f"container {container.id} was already started")
        if self._driver.start_delay_s > 0:
            await anyio.sleep(self._driver.start_delay_s)
            self._require_container()
        argv = container.command
        program = self._driver._lookup(container.image, argv)
        ctx = ProgramContext(
            task=self.task,
            argv=argv or [container.image],
            env=_environment(container.options),
            gate=self._gate,
        )
        self._scope = anyio.CancelScope()
        container.state = "running"
        self._started_at = anyio.current_time()
        self._driver._task_group().start_soon(self._supervise, program, ctx, self._scope)
        return FakeWaitResult(self)

    async def _supervise(
        self, program: Program, ctx: ProgramContext, scope: anyio.CancelScope
    ) -> None:
        # _kill records the outcome before cancelling ``scope``, so a cancelled program needs
        # no result here; the driver's task group being cancelled is recorded by ``finally``.
        result = RunResult(status=RunStatus.CANCELLED, error=FnAgentError("the driver shut down"))
        try:
            with scope:
                try:
                    code = await program(ctx)
                except FakeOOM:
                    result = out_of_memory(self.task.memory_bytes, OOM_EXIT_CODE)
                except Exception as exc:
                    logger.exception("fake program %r crashed", ctx.argv[0])
                    self._crash = exc
                    result = RunResult(
                        status=RunStatus.ERROR, error=FnAgentError(f"fake program crashed: {exc}")
                    )
                else:
                    result = exit_result(code)
        finally:
            self._finish(result)

    def _finish(self, result: RunResult) -> None:
        """Record how the run ended; the first outcome wins. Runs after aclose too."""
        container = self._container
        assert container is not None, "only a started container finishes"
        if container.result is None:
            container.result = result
        if container.state in ("running", "paused"):
            container.state = "exited"
        self._gate.unfreeze()
        container.done.set()

    def _kill(self, result: RunResult) -> None:
        """End a running program with ``result`` (synchronous: bookkeeping now, unwind later)."""
        container = self._container
        if container is None or container.state not in ("running", "paused"):
            return
        self._finish(result)
        if self._scope is not None:
            self._scope.cancel()

    async def freeze(self) -> None:
        container = self._require_container()
        if container.state == "paused":
            raise DockerAPIError(f"Container {container.id} is already paused")
        if container.state != "running":
            raise DockerAPIError(f"Container {container.id} is not running")
        container.state = "paused"
        self._gate.freeze()
        await anyio.lowlevel.checkpoint()

    async def unfreeze(self) -> None:
        container = self._require_container()
        if self._driver.unfreeze_delay_s > 0:
            await anyio.sleep(self._driver.unfreeze_delay_s)
        if container.state != "paused":
            raise DockerAPIError(f"Container {container.id} is not paused")
        container.state = "running"
        self._gate.unfreeze()
        await anyio.lowlevel.checkpoint()

    async def cpu_wait_s(self) -> float | None:
        """The driver's ``cpu_wait_share`` of the time since the start."""
        if self._started_at is None:
            return None
        return self._driver.cpu_wait_share * (anyio.current_time() - self._started_at)

    async def sample(self) -> Stat | None:
        """A synthetic sample: the memory limit as usage, so tests can tell it came through."""
        self._require_container()
        await anyio.lowlevel.checkpoint()
        return Stat(timestamp=datetime.now(UTC), metrics={"mem_usage": self.task.memory_bytes})

    async def aclose(self) -> None:
        # No await: the removal must complete even when the caller is being cancelled.
        if self._closed:
            return
        self._closed = True
        self._kill(
            RunResult(
                status=RunStatus.ERROR,
                error=ContainerGoneError("the container was removed while it ran"),
            )
        )
        if self._container is not None:
            self._container.state = "removed"
        self._driver._forget(self)
        self.task.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"container of task {self.task.id} was already closed")

    def _require_container(self) -> FakeContainer:
        self._check_open()
        if self._container is None:
            raise RuntimeError("no container yet: call prepare_cookie first")
        return self._container


class FakeDriver(Driver):
    """The in-memory driver. ``containers`` maps container id -> record, removed ones included.

    ``programs`` adds to (or replaces) the built-ins by command name; ``images`` gives the program
    of an image run without a command; ``missing_images`` are images a pull would not find.
    ``create_delay_s`` / ``start_delay_s`` / ``unfreeze_delay_s`` make ``prepare_cookie`` /
    ``run`` / ``unfreeze`` slow, for tests of cancellation during them. ``cpu_wait_share`` plays a
    busy host: the share of a started container's time its processes wait for a CPU
    (``Cookie.cpu_wait_s``).
    """

    def __init__(
        self,
        *,
        programs: Mapping[str, Program] | None = None,
        images: Mapping[str, Program] | None = None,
        missing_images: Iterable[str] = (),
        create_delay_s: float = 0.0,
        start_delay_s: float = 0.0,
        pull_delay_s: float = 0.0,
        unfreeze_delay_s: float = 0.0,
        cpu_wait_share: float = 0.0,
    ) -> None:
        self.programs: dict[str, Program] = {**BUILTINS, **(programs or {})}
        self._image_programs: dict[ImageRef, Program] = {
            parse_image(image): program for image, program in (images or {}).items()
        }
        self._missing: set[ImageRef] = {parse_image(image) for image in missing_images}
        self.create_delay_s = create_delay_s
        self.start_delay_s = start_delay_s
        self.pull_delay_s = pull_delay_s
        self.unfreeze_delay_s = unfreeze_delay_s
        self.cpu_wait_share = cpu_wait_share
        self.pulls: list[str] = []
        """Images pulled so far (each once), in order."""
        self.containers: dict[str, FakeContainer] = {}
        self.available = True
        """False plays a daemon that is down: ``ping`` and ``prepare_cookie`` raise
        DockerUnavailableError."""
        self.prepare_attempts = 0
        self._cookies: set[FakeCookie] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        live = len(self.live())
        return f"<FakeDriver live={live} removed={len(self.containers) - live}>"

    def live(self) -> list[FakeContainer]:
        """Containers not yet removed."""
        return [c for c in self.containers.values() if c.state != "removed"]

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("FakeDriver entered twice")
        self._check_open()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        if self._tg is not None:
            tg, self._tg = self._tg, None
            await tg.__aexit__(exc_type, exc, tb)

    async def create_cookie(self, task: ContainerTask) -> FakeCookie:
        self._check_open()
        check_secret_names(task.secrets)
        cookie = FakeCookie(self, task)
        self._cookies.add(cookie)
        return cookie

    async def ensure_image(self, image: str) -> None:
        """The first use of an image "pulls" it: waits ``pull_delay_s`` and records it in
        ``pulls``; ``missing_images`` raise ImageNotFoundError."""
        self._check_open()
        if image in self.pulls:
            return
        if self.pull_delay_s > 0:
            await anyio.sleep(self.pull_delay_s)
        if parse_image(image) in self._missing:
            raise ImageNotFoundError(
                f"Failed to pull image {image!r}: pull access denied, repository does not exist"
                " or may require 'docker login'"
            )
        self.pulls.append(image)

    async def prepare_cookie(self, cookie: Cookie) -> None:
        if not isinstance(cookie, FakeCookie) or cookie._driver is not self:
            raise TypeError(f"not a cookie of this driver: {cookie!r}")
        cookie._check_open()
        if cookie.container is not None:
            raise RuntimeError(f"container {cookie.container.id} already created")
        self.prepare_attempts += 1
        await self.ping()
        if self.create_delay_s > 0:
            await anyio.sleep(self.create_delay_s)
            cookie._check_open()
        # Copied one level down, so edits after prepare change nothing (as after a real create).
        options = {
            key: value.copy() if isinstance(value, dict | list) else value
            for key, value in cookie.container_options.items()
        }
        await self.ensure_image(str(options["Image"]))
        container = FakeContainer(
            id=uuid.uuid4().hex,
            task_id=cookie.task.id,
            options=options,
            background=cookie.task.background,
        )
        self.containers[container.id] = container
        cookie._container = container

    async def ping(self) -> None:
        if not self.available:
            raise DockerUnavailableError("cannot connect to the Docker daemon (fake: down)")

    async def aclose(self) -> None:
        """Remove every container still live (idempotent); the task group ends in __aexit__."""
        self._closed = True
        for cookie in list(self._cookies):
            await cookie.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the fake driver is closed")

    def _task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("use FakeDriver as an async context manager to run containers")
        return self._tg

    def _forget(self, cookie: FakeCookie) -> None:
        self._cookies.discard(cookie)

    def _lookup(self, image: str, argv: list[str] | None) -> Program:
        if argv:
            program = self.programs.get(argv[0].rsplit("/", 1)[-1])
            if program is None:
                raise InvalidInputError(
                    f'exec: "{argv[0]}": executable file not found in $PATH (fake driver)'
                )
            return program
        program = self._image_programs.get(parse_image(image))
        if program is None:
            raise InvalidInputError(f"image {image!r} has no fake program and no command was given")
        return program
