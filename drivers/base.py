"""The driver interfaces (after Fn's ``api/agent/drivers/driver.go``).

The agent describes what to run as a ``ContainerTask``; a ``Driver`` turns it into a ``Cookie``,
one container's whole life: ``prepare_cookie`` (image ensured, container created), ``run`` (started;
returns a ``WaitResult``), ``freeze`` / ``unfreeze`` while idle, and ``aclose`` (always ends with
the container removed). Implementations live elsewhere: ``drivers.docker`` and ``drivers.fake``.
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from drivers.errors import FnAgentError, InvalidInputError
from drivers.stats import Stat

IOFS_MOUNT = "/tmp/iofs"
"""Where a task's ``uds_path`` appears inside its container (Fn's socket dir), by default."""
SECRETS_MOUNT = "/run/secrets"
"""Where a task's ``secrets`` appear inside its container, one read-only file each (Docker's
own place for them)."""
_SECRET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class LogSink(Protocol):
    """Where a container's output goes: anything with a bytes ``write`` (a file, BytesIO...)."""

    def write(self, data: bytes, /) -> object: ...


async def deliver(sink: LogSink, data: bytes) -> None:
    """Write ``data`` to ``sink``. A sink whose ``write`` returns an awaitable is awaited, so a
    slow reader (a client far away) slows the container instead of being buffered without
    bound."""
    written = sink.write(data)
    if isinstance(written, Awaitable):
        await written


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


DISCARD: LogSink = _Discard()


@dataclass(kw_only=True)
class TaskLogger:
    """The two writers a container's output is copied to, in the order it arrives."""

    stdout: LogSink = DISCARD
    stderr: LogSink = DISCARD


@dataclass(kw_only=True)
class ContainerTask:
    """What the agent asks a driver to run. Sizes carry their unit in the name; 0 = unset.

    ``input`` is the container's stdin (the cold format); None means no stdin at all.
    ``uds_path`` is a host directory bind-mounted at the driver's socket dir (http-stream).
    ``extensions`` are free-form options a custom driver may read (Fn's call extensions).
    """

    id: str
    image: str
    command: list[str] | None = None
    env_vars: dict[str, str] = field(default_factory=dict)
    input: AsyncIterable[bytes] | None = None
    timeout_s: float | None = None
    logger: TaskLogger = field(default_factory=TaskLogger)
    write_stat: Callable[[Stat], None] | None = None
    volumes: list[tuple[str, str]] = field(default_factory=list)
    memory_bytes: int = 0
    cpus_mcpus: int = 0
    fs_size_mb: int = 0
    tmpfs_size_mb: int = 0
    workdir: str | None = None
    user: str | None = "1000:1000"
    """Container user; None opts out and runs as the image's own user."""
    network_disabled: bool = False
    background: bool = False
    """No caller waits for this container to start: the driver may start it the way that
    costs the host least rather than the fastest (the Docker driver takes a free prefork slot
    but does not grow the pool for it)."""
    logger_config: dict[str, Any] | None = None
    """Docker log driver config ({"Type": ..., "Config": {...}}); None = the driver's default."""
    labels: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    uds_path: str | None = None
    output_dir: str | None = None
    """A host directory of this container's alone (no other container mounts it; the
    function cannot write in it) where the driver may make pipes that the container's stdout
    and stderr are written to directly, bypassing the container runtime (the Docker driver
    does when its ``output_shell`` is set: drivers/docker/pipes.py). None: the output goes
    through the runtime, attached."""
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    """name -> value: each is the read-only file ``/run/secrets/<name>`` in this container
    alone, readable by ``user``; never in the environment, labels or create options, and gone
    with the container. Names: ``[A-Za-z0-9._-]{1,64}``, not ``.`` or ``..``."""
    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        """Release what the task holds (called once by the cookie's aclose)."""
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()


def check_secret_names(secrets: dict[str, bytes]) -> None:
    """InvalidInputError unless every name can be a file name in ``SECRETS_MOUNT``."""
    for name in secrets:
        if not _SECRET_NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidInputError(f"invalid secret file name {name!r}")


class RunStatus(enum.StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    KILLED = "killed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """How a container's run ended. ``error`` explains every status but success."""

    status: RunStatus
    exit_code: int | None = None
    error: FnAgentError | None = None

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCESS


class WaitResult(ABC):
    """A started container; ``wait`` blocks until it ends (or its task's timeout passes)."""

    @abstractmethod
    async def wait(self) -> RunResult: ...


class Cookie(ABC):
    """One container's life. Use as an async context manager, or call ``aclose`` yourself.

    Contract of ``aclose``: idempotent; always ends with the container force-removed and any
    pool slot freed; every other method called after it raises ``ClosedError``.
    """

    task: ContainerTask
    container_options: dict[str, Any]
    """The create options; editable until ``prepare_cookie`` (custom drivers use this)."""

    @property
    @abstractmethod
    def container_id(self) -> str | None:
        """The container's id once created, else None."""

    @abstractmethod
    async def run(self) -> WaitResult:
        """Start the container (attaching stdin/stdout/stderr first) and return its waiter."""

    @abstractmethod
    async def freeze(self) -> None:
        """Suspend every process of the container (docker pause)."""

    @abstractmethod
    async def unfreeze(self) -> None:
        """Resume a frozen container (docker unpause)."""

    async def sample(self) -> Stat | None:
        """One resource sample of the running container now; None when the driver has none."""
        return None

    async def cpu_wait_s(self) -> float | None:
        """How long the started container's processes have waited for a CPU that other work
        held (the host's delay, not the container's own: time its CPU limit held it back does
        not count); None when the driver cannot tell."""
        return None

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Driver(ABC):
    """Makes cookies. Use as an async context manager: entering starts background work (the
    prefork pool), leaving stops it and removes what the driver made."""

    @property
    def iofs_mount(self) -> str:
        """Where a task's ``uds_path`` is mounted inside its container: the directory the
        function's ``FN_LISTENER`` names."""
        return IOFS_MOUNT

    @abstractmethod
    async def create_cookie(self, task: ContainerTask) -> Cookie:
        """Build the cookie and its create options; no I/O with the container runtime."""

    @abstractmethod
    async def prepare_cookie(self, cookie: Cookie) -> None:
        """Ensure the image (pulling by policy) and create the container."""

    @abstractmethod
    async def ensure_image(self, image: str) -> None:
        """Make ``image`` available (pulling by policy) without creating anything; the agent
        pre-pulls an updated function's image with it while the old version serves."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the container runtime answers; raise ``DockerUnavailableError`` when it
        does not (within a few seconds: a health check must not hang)."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
