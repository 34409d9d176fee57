"""Settings of the Docker driver, and the container create options they imply."""

from __future__ import annotations

import enum
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.base import IOFS_MOUNT, SECRETS_MOUNT, ContainerTask
from drivers.docker.freezer import FreezerMode
from drivers.docker.pipes import PIPES_MOUNT, SHELL_MOUNT
from drivers.errors import InvalidInputError

if TYPE_CHECKING:
    from drivers.docker.network import FunctionNetwork

MANAGED_LABEL = "fnagent.managed"
INSTANCE_LABEL = "fnagent.instance"
TASK_LABEL = "fnagent.task"
ROLE_LABEL = "fnagent.role"

DEFAULT_USER = "1000:1000"
DEFAULT_PIDS_LIMIT = 50
DEFAULT_OPEN_FILES = 350
DEFAULT_MEMLOCK_BYTES = 64 * 1024
DEFAULT_SIGPENDING = 5000
DEFAULT_MSGQUEUE_BYTES = 819200
DEFAULT_IOFS_MOUNT = IOFS_MOUNT
DEFAULT_PULL_TIMEOUT_S = 600.0
DEFAULT_STATS_INTERVAL_S = 1.0
CPU_PERIOD_US = 100_000

DEFAULT_PREFORK_IMAGE = "fnagent/busybox"
DEFAULT_PREFORK_CMD = ("tail", "-f", "/dev/null")
DEFAULT_PREFORK_RATE_PER_S = 10.0
DEFAULT_PREFORK_BURST = 20
DEFAULT_PREFORK_IDLE_SHRINK_S = 30.0
DEFAULT_PREFORK_CLOSE_TIMEOUT_S = 10.0


class PullPolicy(enum.StrEnum):
    MISSING = "missing"
    ALWAYS = "always"
    NEVER = "never"


def default_iofs_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "fnagent-iofs")


def default_secrets_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "fnagent-secrets")


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """The prefork pool (docs/design.md): between ``min_size`` and ``max_size`` busybox slots whose
    network namespaces function containers join. ``min_size == max_size`` is Fn's fixed pool."""

    min_size: int
    max_size: int
    image: str = DEFAULT_PREFORK_IMAGE
    """Must be present locally: the pool never pulls it (``make images`` builds it)."""
    cmd: tuple[str, ...] = DEFAULT_PREFORK_CMD
    """Must run until killed; a slot that exits is replaced."""
    use_once: bool = False
    """A freed slot is killed and replaced: no namespace serves two function containers."""
    networks: tuple[str, ...] = ()
    """Networks the slots are spread over, round-robin; () = the default bridge."""
    rate_per_s: float = DEFAULT_PREFORK_RATE_PER_S
    """Slot creations per second, sustained (aiolimiter's leaky bucket)."""
    burst: int = DEFAULT_PREFORK_BURST
    """Slot creations allowed at once before ``rate_per_s`` applies."""
    idle_shrink_s: float = DEFAULT_PREFORK_IDLE_SHRINK_S
    """A free slot unused this long is removed, while the pool is above ``min_size``."""
    close_timeout_s: float = DEFAULT_PREFORK_CLOSE_TIMEOUT_S
    """``aclose`` returns within this, even when Docker is slow."""

    def __post_init__(self) -> None:
        if self.min_size < 0 or self.max_size < 1 or self.min_size > self.max_size:
            raise InvalidInputError(
                f"prefork pool size: need 0 <= min ({self.min_size}) <= max ({self.max_size})"
                " and max >= 1"
            )
        if not self.cmd:
            raise InvalidInputError("prefork pool: the slot command is empty")
        if self.rate_per_s <= 0 or self.burst < 1:
            raise InvalidInputError(
                f"prefork pool rate: need rate > 0 and burst >= 1, got {self.rate_per_s:g}/s"
                f" burst {self.burst}"
            )
        if self.idle_shrink_s <= 0 or self.close_timeout_s <= 0:
            raise InvalidInputError("prefork pool: idle shrink and close timeouts must be > 0")


@dataclass(frozen=True, kw_only=True)
class DockerConfig:
    """Everything the Docker driver needs to know; read by the CLI, never from the environment
    here. ``instance_id`` labels every container so two agents on one daemon stay apart."""

    instance_id: str
    docker_host: str | None = None
    """None: docker-py's default (DOCKER_HOST or the local socket)."""
    networks: tuple[str, ...] = ()
    """Networks to spread containers over when no pool slot is free; () = the default bridge."""
    pids_limit: int = DEFAULT_PIDS_LIMIT
    open_files: int = DEFAULT_OPEN_FILES
    memlock_bytes: int = DEFAULT_MEMLOCK_BYTES
    sigpending: int = DEFAULT_SIGPENDING
    msgqueue_bytes: int = DEFAULT_MSGQUEUE_BYTES
    readonly_rootfs: bool = True
    init: bool = True
    iofs_mount: str = DEFAULT_IOFS_MOUNT
    pull_policy: PullPolicy = PullPolicy.MISSING
    pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S
    docker_auth: str | None = None
    """FN_DOCKER_AUTH: a docker config.json document ({"auths": {...}}) or its legacy map."""
    stats_interval_s: float = DEFAULT_STATS_INTERVAL_S
    extra_labels: dict[str, str] = field(default_factory=dict)
    pool: PoolConfig | None = None
    """The prefork pool; None = none (every container sets up its own network)."""
    freezer: FreezerMode = FreezerMode.CGROUP
    """How idle containers are frozen: their cgroup freezer (Engine API where it cannot be
    used), or the Engine API only."""
    secrets_path: str = field(default_factory=default_secrets_dir)
    """Host directory under which each instance keeps its containers' secret files (one
    tmpfs per container: drivers/docker/secretfiles.py)."""
    cgroup_parent: str | None = None
    """Docker's ``--cgroup-parent`` for function containers (FN_DOCKER_CGROUP_PARENT); None:
    the daemon's default. A CPU or memory limit set on that cgroup bounds all of them."""
    output_shell: str | None = None
    """A static shell (busybox) on the host: a task with an ``output_dir`` then writes its
    output into pipes there, its command wrapped by this shell, bind-mounted read-only
    (drivers/docker/pipes.py). None: every container's output is attached."""
    function_network: FunctionNetwork | None = None
    """Made (unless it exists) and checked on entering the driver, before the pool starts; the
    host rule it implies is added then too (drivers/docker/network.py). Naming it in
    ``networks`` and the pool's networks is the caller's job."""


def secrets_root(config: DockerConfig) -> str:
    """This instance's share of ``secrets_path``: a restart of the same instance clears what
    a killed run left there, and touches no other instance's files."""
    digest = hashlib.sha256(config.instance_id.encode()).hexdigest()[:8]
    return os.path.join(config.secrets_path, digest)


def base_labels(config: DockerConfig) -> dict[str, str]:
    return {MANAGED_LABEL: "1", INSTANCE_LABEL: config.instance_id, **config.extra_labels}


def ulimits(config: DockerConfig) -> list[dict[str, Any]]:
    limits = {
        "nofile": config.open_files,
        "memlock": config.memlock_bytes,
        "sigpending": config.sigpending,
        "msgqueue": config.msgqueue_bytes,
    }
    return [{"Name": name, "Soft": value, "Hard": value} for name, value in limits.items()]


def direct_output(task: ContainerTask, config: DockerConfig) -> bool:
    """Whether ``task``'s output goes through pipes of its own (drivers/docker/pipes.py)
    rather than the attached streams."""
    return task.output_dir is not None and config.output_shell is not None


def container_options(
    task: ContainerTask, config: DockerConfig, network_mode: str, secrets_dir: str | None = None
) -> dict[str, Any]:
    """The Engine API create body for ``task`` (POST /containers/create), with every default of
    docs/design.md (Container defaults). Returned as plain data so a custom driver can edit it
    before creation. ``secrets_dir`` is the host dir of the task's secret files, bound
    read-only at /run/secrets (the values are never in the body)."""
    host: dict[str, Any] = {
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "ReadonlyRootfs": config.readonly_rootfs,
        "Tmpfs": {"/tmp": f"size={task.tmpfs_size_mb}m" if task.tmpfs_size_mb else ""},
        "PidsLimit": config.pids_limit,
        "Ulimits": ulimits(config),
        "Init": config.init,
        "NetworkMode": "none" if task.network_disabled else network_mode,
        "LogConfig": task.logger_config or {"Type": "none", "Config": {}},
        "Binds": [f"{src}:{dst}" for src, dst in task.volumes],
    }
    if task.memory_bytes:
        # Memory == MemorySwap: no swap, so the limit is the limit.
        host["Memory"] = task.memory_bytes
        host["MemorySwap"] = task.memory_bytes
    if task.cpus_mcpus:
        host["CpuQuota"] = task.cpus_mcpus * CPU_PERIOD_US // 1000
        host["CpuPeriod"] = CPU_PERIOD_US
    if config.cgroup_parent:
        host["CgroupParent"] = config.cgroup_parent
    if task.fs_size_mb:
        host["StorageOpt"] = {"size": f"{task.fs_size_mb}M"}
    if task.uds_path:
        host["Binds"].append(f"{task.uds_path}:{config.iofs_mount}")
    if secrets_dir:
        host["Binds"].append(f"{secrets_dir}:{SECRETS_MOUNT}:ro")
    if direct_output(task, config):
        assert task.output_dir is not None and config.output_shell is not None
        host["Binds"].append(f"{config.output_shell}:{SHELL_MOUNT}:ro")
        host["Binds"].append(f"{task.output_dir}:{PIPES_MOUNT}:ro")
    interactive = task.input is not None
    options: dict[str, Any] = {
        "Image": task.image,
        "Env": [f"{name}={value}" for name, value in task.env_vars.items()],
        "Labels": {**base_labels(config), TASK_LABEL: task.id, **task.labels},
        "AttachStdin": interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": interactive,
        "StdinOnce": interactive,
        "Tty": False,
        "HostConfig": host,
    }
    if task.command is not None:
        options["Cmd"] = list(task.command)
    if task.user is not None:
        options["User"] = task.user
    if task.workdir:
        options["WorkingDir"] = task.workdir
    return options
