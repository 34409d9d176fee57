"""The agent's and the server's configuration, read once from Fn's environment variables.

Only ``AgentConfig.from_env`` and ``ServerConfig.from_env`` read the environment (with the
parsers of ``fnagent.env``: one rule per kind of value), and only the command line calls them;
its flags then override fields with ``dataclasses.replace``, the same way for ``run`` and
``serve`` (``AgentConfig.with_prefork`` for ``--prefork``).

The prefork pool (docs/design.md) reads Fn's variables plus a few of its own for elasticity.
``fnagent serve`` keeps an elastic pool (min 2, max 16) unless one of the first three says
otherwise (``AgentConfig.with_serve_pool``); ``fnagent run`` has none unless they ask for one:

- ``FN_EXPERIMENTAL_PREFORK_POOL_SIZE``: N slots (0 = no pool); a fixed pool (min = max = N)
  unless the next two say otherwise.
- ``FN_EXPERIMENTAL_PREFORK_POOL_MIN`` / ``FN_EXPERIMENTAL_PREFORK_POOL_MAX``: an elastic pool;
  min defaults to the size, max to the larger of the size and min. Max 0 = no pool.
- ``FN_EXPERIMENTAL_PREFORK_IMAGE`` (fnagent/busybox), ``FN_EXPERIMENTAL_PREFORK_CMD`` (tail -f
  /dev/null), ``FN_EXPERIMENTAL_PREFORK_USE_ONCE``, ``FN_EXPERIMENTAL_PREFORK_NETWORKS`` (space
  separated, assigned round-robin).
- ``FN_EXPERIMENTAL_PREFORK_RATE`` (slot creations per second, 10) and
  ``FN_EXPERIMENTAL_PREFORK_BURST`` (20).
- ``FN_EXPERIMENTAL_PREFORK_IDLE_SHRINK_MSECS`` (30000): a free slot idle this long is removed
  while the pool is above its minimum.
- ``FN_EXPERIMENTAL_PREFORK_CLOSE_TIMEOUT_MSECS`` (10000): shutdown removes every slot within it.

Networking (``docker_config(function_network=True)``, which ``fnagent serve`` asks for): function
containers and pool slots go on fnagent's function network (drivers/docker/network.py) unless
``FN_DOCKER_NETWORKS`` / ``FN_EXPERIMENTAL_PREFORK_NETWORKS`` name others. ``FN_ALLOW_HOST_ACCESS``
(off) picks the function network whose functions may reach services on the host's addresses.

Keep-alive (``KeepAliveConfig.from_env``, the policy of fnagent.keepalive, as
``AgentConfig.keepalive``): ``FN_KEEPALIVE_POLICY`` (``adaptive`` or ``fixed``),
``FN_KEEPALIVE_RANGE_MSECS``, ``FN_KEEPALIVE_HEAD_PERCENTILE``, ``FN_KEEPALIVE_TAIL_PERCENTILE``,
``FN_KEEPALIVE_MARGIN_PERCENT``, ``FN_KEEPALIVE_CV_THRESHOLD``, ``FN_KEEPALIVE_MIN_SAMPLES``,
``FN_KEEPALIVE_COLD_START_WEIGHT`` (GB-s, or ``inf``) and ``FN_KEEPALIVE_WEIGH_PER_START``
(a boolean).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from drivers.docker.config import (
    DEFAULT_OPEN_FILES,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_PREFORK_BURST,
    DEFAULT_PREFORK_CLOSE_TIMEOUT_S,
    DEFAULT_PREFORK_CMD,
    DEFAULT_PREFORK_IDLE_SHRINK_S,
    DEFAULT_PREFORK_IMAGE,
    DEFAULT_PREFORK_RATE_PER_S,
    DEFAULT_PULL_TIMEOUT_S,
    DockerConfig,
    PoolConfig,
    PullPolicy,
    default_iofs_dir,
)
from drivers.docker.freezer import FreezerMode
from drivers.docker.network import function_network as fn_network
from fnagent.env import (
    env_base_url,
    env_bool,
    env_cpus,
    env_float,
    env_int,
    env_msecs,
    env_optional_int,
    env_real,
    env_size,
    env_words,
)
from fnagent.errors import InvalidInputError

DEFAULT_FREEZE_IDLE_MS = 50
DEFAULT_HOT_START_TIMEOUT_MS = 5000
DEFAULT_HOT_LAUNCH_PATIENCE_MS = 10
DEFAULT_HOT_PULL_TIMEOUT_MS = int(DEFAULT_PULL_TIMEOUT_S * 1000)
DEFAULT_MAX_LOG_SIZE_BYTES = 1024 * 1024
DEFAULT_MAX_MIN_HOT = 64
DEFAULT_MAX_IDLE_LOG_BYTES_PER_S = 64 * 1024
DEFAULT_MAX_RESPONSE_SIZE_BYTES = 6 * 1024 * 1024
# A listener socket and a symlink need no room at all: a small bound, so that a function cannot
# use its socket dir as storage, leaves room for what FDKs might put there.
DEFAULT_IOFS_SIZE_BYTES = 1024 * 1024
DEFAULT_PORT = 8080
DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_API_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_HEADER_TIMEOUT_S = 10.0
# A PostgreSQL store (FN_DB_URL=postgresql://...): its pool and timeouts.
DEFAULT_DB_MAX_CONNECTIONS = 10
DEFAULT_DB_CONNECT_TIMEOUT_S = 5.0
DEFAULT_DB_RESYNC_S = 10.0
DEFAULT_DB_STATEMENT_TIMEOUT_S = 5.0
# A SQLite store's commits (FN_DB_SYNC): "normal" is durable through a killed process (the
# WAL is written before a commit returns), "full" also through a power cut (it waits for the
# disk at every commit).
DB_SYNC_MODES = ("normal", "full")
DEFAULT_DB_SYNC = "normal"
KEEPALIVE_POLICIES = ("adaptive", "fixed")
LOG_PIPE_DIRECT = "direct"
LOG_PIPE_DOCKER = "docker"
LOG_PIPES = (LOG_PIPE_DIRECT, LOG_PIPE_DOCKER)
DEFAULT_LOG_PIPE = LOG_PIPE_DIRECT
DEFAULT_LOG_PIPE_SHELL = "/bin/busybox"
MIN_KEEPALIVE_RANGE_MS = 60_000


@dataclass(frozen=True, kw_only=True)
class KeepAliveConfig:
    """How long an idle container is kept, and when one is started before a predicted call
    (fnagent.keepalive). The histogram, percentiles and coefficient of variation are those of
    Shahrad et al., "Serverless in the Wild" (USENIX ATC'20): a 4-hour histogram, the 5th and
    99th percentiles, a coefficient of variation of 2; the default plan is ours, cost-aware
    (``cold_start_weight`` 300 GB-s, a 2% margin: the keep-alive benchmark's fewer-cold-starts
    point); ``cold_start_weight=inf`` with ``margin_percent=10`` is the paper's policy.
    ``min_samples`` is ours."""

    policy: str = "adaptive"
    """``adaptive`` (the hybrid histogram policy) or ``fixed`` (every fn keeps an idle
    container for its idle_timeout, as Fn does)."""
    range_s: float = 4 * 3600.0
    """Idle times the histogram holds; longer ones are counted as out of range."""
    head_percentile: float = 5.0
    """Its lower edge, less the margin, is when a pre-warmed container is started."""
    tail_percentile: float = 99.0
    """Its upper edge, plus the margin, is when an idle container is removed."""
    margin_percent: float = 2.0
    """Taken off a warm run's start and added to its end (the paper's: 10)."""
    cv_threshold: float = 2.0
    """Below this coefficient of variation of the bin counts the idle times are too spread
    out to predict, and the fixed keep-alive applies."""
    min_samples: int = 5
    """Fewer idle times than this: the fixed keep-alive applies."""
    cold_start_weight: float = 300.0
    """Ours: the memory-time, in GB x seconds, that saving one second of cold start is worth.
    An idle container is kept (or pre-warmed) through a stretch of idle time only where the
    chance of a call there, times the fn's cold-start seconds times this weight, outweighs the
    memory-time the container costs there (see fnagent.keepalive). Default 300. ``inf``: every
    stretch between the head and the tail is worth it, which is the paper's policy (with its
    10% margin)."""
    weigh_per_start: bool = False
    """Ours: ``cold_start_weight`` is the memory-time one cold start is worth, whatever its
    length, instead of one second of it (a slow call counts once, short cold start or long)."""

    def __post_init__(self) -> None:
        if self.policy not in KEEPALIVE_POLICIES:
            raise InvalidInputError(f"keep-alive policy {self.policy!r}: use adaptive or fixed")
        if not 0 <= self.head_percentile <= self.tail_percentile <= 100:
            raise InvalidInputError(
                "keep-alive percentiles: need 0 <= head <= tail <= 100, got"
                f" {self.head_percentile} and {self.tail_percentile}"
            )
        if not 0 <= self.margin_percent < 100:
            raise InvalidInputError(f"keep-alive margin {self.margin_percent}%: need 0 to 99")
        if self.range_s < 60:
            raise InvalidInputError(f"keep-alive histogram range {self.range_s} s: need >= 60 s")
        if not self.cold_start_weight > 0:
            raise InvalidInputError(
                f"keep-alive cold-start weight {self.cold_start_weight}: need > 0"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> KeepAliveConfig:
        """The FN_KEEPALIVE_* variables; unset ones keep their defaults. Each is checked on its
        own (InvalidInputError naming it), then together (head <= tail)."""
        defaults = cls()
        policy = environ.get("FN_KEEPALIVE_POLICY", "").strip().lower() or defaults.policy
        if policy not in KEEPALIVE_POLICIES:
            raise InvalidInputError(
                f"FN_KEEPALIVE_POLICY={policy!r}: use {' or '.join(KEEPALIVE_POLICIES)}"
            )
        head = env_real(
            environ, "FN_KEEPALIVE_HEAD_PERCENTILE", defaults.head_percentile, maximum=100
        )
        tail = env_real(
            environ, "FN_KEEPALIVE_TAIL_PERCENTILE", defaults.tail_percentile, maximum=100
        )
        if head > tail:
            raise InvalidInputError(
                f"FN_KEEPALIVE_HEAD_PERCENTILE ({head:g}) must not exceed"
                f" FN_KEEPALIVE_TAIL_PERCENTILE ({tail:g})"
            )
        return cls(
            policy=policy,
            range_s=env_msecs(
                environ,
                "FN_KEEPALIVE_RANGE_MSECS",
                round(defaults.range_s * 1000),
                minimum=MIN_KEEPALIVE_RANGE_MS,
            )
            / 1000,
            head_percentile=head,
            tail_percentile=tail,
            margin_percent=env_real(
                environ, "FN_KEEPALIVE_MARGIN_PERCENT", defaults.margin_percent, maximum=99
            ),
            cv_threshold=env_real(environ, "FN_KEEPALIVE_CV_THRESHOLD", defaults.cv_threshold),
            min_samples=env_int(
                environ, "FN_KEEPALIVE_MIN_SAMPLES", defaults.min_samples, minimum=1
            ),
            cold_start_weight=env_real(
                environ,
                "FN_KEEPALIVE_COLD_START_WEIGHT",
                defaults.cold_start_weight,
                above_minimum=True,
            ),
            weigh_per_start=env_bool(
                environ, "FN_KEEPALIVE_WEIGH_PER_START", defaults.weigh_per_start
            ),
        )


SERVE_POOL_MIN = 2
SERVE_POOL_MAX = 16
POOL_SIZE_SETTINGS = (
    "FN_EXPERIMENTAL_PREFORK_POOL_SIZE",
    "FN_EXPERIMENTAL_PREFORK_POOL_MIN",
    "FN_EXPERIMENTAL_PREFORK_POOL_MAX",
)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Settings with Fn's names and defaults; units in the field names."""

    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Labels this agent's containers (FNAGENT_INSTANCE_ID); random unless set."""
    freeze_idle_ms: int = DEFAULT_FREEZE_IDLE_MS
    hot_start_timeout_ms: int = DEFAULT_HOT_START_TIMEOUT_MS
    hot_launch_patience_ms: int = DEFAULT_HOT_LAUNCH_PATIENCE_MS
    """Ours: how long a short call waits for a busy container of its function to free up
    before one more is launched (FN_HOT_LAUNCH_PATIENCE_MSECS; 0 = launch at once, as Fn
    does). See Agent._launch_patience."""
    hot_pull_timeout_ms: int = DEFAULT_HOT_PULL_TIMEOUT_MS
    max_response_size_bytes: int = DEFAULT_MAX_RESPONSE_SIZE_BYTES
    """FN_MAX_RESPONSE_SIZE: a response body is held in memory, so it is always bounded (a
    positive number of bytes; Fn's 0 = unlimited is refused)."""
    max_log_size_bytes: int = DEFAULT_MAX_LOG_SIZE_BYTES
    max_idle_log_bytes_per_s: int = DEFAULT_MAX_IDLE_LOG_BYTES_PER_S
    """Ours: what a container's output between calls may put in the agent's log, per second
    (FN_MAX_IDLE_LOG_BYTES_PER_SEC; bursts of 4 s worth); the rest is dropped and counted."""
    max_min_hot: int = DEFAULT_MAX_MIN_HOT
    """Ours: the largest minimum hot count a fn may ask for (FN_MAX_MIN_HOT); admission's
    memory and CPU budget may bound it lower (Agent.min_hot_bound)."""
    max_total_cpu_mcpus: int = 0
    max_total_memory_bytes: int = 0
    default_cpu_mcpus: int = 0
    """Ours: the CPU limit of each function container, in milli-CPUs (FN_DEFAULT_CPUS, in
    ``--cpus`` syntax: ``0.5`` or ``500m``; 0 = none). Fn's API has no per-fn CPUs, so
    this is how an operator gives functions a CPU share; launches reserve it from the CPU
    budget (FN_MAX_TOTAL_CPU_MCPUS)."""
    max_pids: int = DEFAULT_PIDS_LIMIT
    max_open_files: int = DEFAULT_OPEN_FILES
    prefork_pool_size: int = 0
    prefork_pool_min: int | None = None
    """None: the pool size."""
    prefork_pool_max: int | None = None
    """None: the larger of the pool size and min."""
    prefork_image: str = DEFAULT_PREFORK_IMAGE
    prefork_cmd: tuple[str, ...] = DEFAULT_PREFORK_CMD
    prefork_use_once: bool = False
    prefork_networks: tuple[str, ...] = ()
    prefork_rate_per_s: float = DEFAULT_PREFORK_RATE_PER_S
    prefork_burst: int = DEFAULT_PREFORK_BURST
    prefork_idle_shrink_ms: int = int(DEFAULT_PREFORK_IDLE_SHRINK_S * 1000)
    prefork_close_timeout_ms: int = int(DEFAULT_PREFORK_CLOSE_TIMEOUT_S * 1000)
    docker_networks: tuple[str, ...] = ()
    allow_host_access: bool = False
    """Ours: functions on the function network may reach services on the host's addresses
    (FN_ALLOW_HOST_ACCESS); off, the host's addresses refuse them."""
    iofs_path: str = field(default_factory=default_iofs_dir)
    iofs_size_bytes: int = DEFAULT_IOFS_SIZE_BYTES
    """Ours: the size of each container's socket dir tmpfs (FN_IOFS_SIZE_BYTES; 0 = a plain
    directory without a limit). See fnagent.agent.sockdir."""
    disable_readonly_rootfs: bool = False
    docker_auth: str | None = None
    docker_cgroup_parent: str | None = None
    """Ours: the cgroup function containers run under (FN_DOCKER_CGROUP_PARENT, Docker's
    ``--cgroup-parent``; unset: the daemon's default), so that one CPU or memory limit set
    on it bounds all of this agent's functions together."""
    pull_policy: PullPolicy = PullPolicy.MISSING
    freezer: FreezerMode = FreezerMode.CGROUP
    """Ours (FN_FREEZER): ``cgroup`` freezes idle containers through their cgroup freezer (the
    Engine API where it cannot be used); ``api`` only through the Engine API (docker pause)."""
    keepalive: KeepAliveConfig = field(default_factory=KeepAliveConfig)
    """How long idle containers are kept and when one is pre-warmed (FN_KEEPALIVE_*)."""
    log_pipe: str = DEFAULT_LOG_PIPE
    """Ours (FN_LOG_PIPE): how a hot container's stdout and stderr reach the agent:
    ``direct``, through FIFOs in its socket dir that the function writes itself (its command
    wrapped by ``log_pipe_shell``: drivers/docker/pipes.py); ``docker``, attached, through
    containerd-shim and dockerd. One-off runs are always attached."""
    log_pipe_shell: str = DEFAULT_LOG_PIPE_SHELL
    """Ours (FN_LOG_PIPE_SHELL): the static shell that wraps a hot container's command with
    ``log_pipe=direct`` (Debian's busybox-static), bind-mounted read-only into it."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentConfig:
        """Read Fn's FN_* variables; unset ones keep their defaults. FN_HOT_POLL_MSECS is not
        read: the agent learns a container is ready from inotify, it never polls."""
        defaults = cls()
        return cls(
            instance_id=environ.get("FNAGENT_INSTANCE_ID") or defaults.instance_id,
            freeze_idle_ms=env_msecs(environ, "FN_FREEZE_IDLE_MSECS", DEFAULT_FREEZE_IDLE_MS),
            hot_start_timeout_ms=env_msecs(
                environ, "FN_HOT_START_TIMEOUT_MSECS", DEFAULT_HOT_START_TIMEOUT_MS
            ),
            hot_launch_patience_ms=env_msecs(
                environ, "FN_HOT_LAUNCH_PATIENCE_MSECS", DEFAULT_HOT_LAUNCH_PATIENCE_MS
            ),
            hot_pull_timeout_ms=env_msecs(
                environ, "FN_HOT_PULL_TIMEOUT_MSECS", DEFAULT_HOT_PULL_TIMEOUT_MS
            ),
            max_response_size_bytes=env_size(
                environ, "FN_MAX_RESPONSE_SIZE", DEFAULT_MAX_RESPONSE_SIZE_BYTES, minimum=1
            ),
            max_log_size_bytes=env_size(
                environ, "FN_MAX_LOG_SIZE_BYTES", DEFAULT_MAX_LOG_SIZE_BYTES
            ),
            max_idle_log_bytes_per_s=env_size(
                environ, "FN_MAX_IDLE_LOG_BYTES_PER_SEC", DEFAULT_MAX_IDLE_LOG_BYTES_PER_S
            ),
            max_min_hot=env_int(environ, "FN_MAX_MIN_HOT", DEFAULT_MAX_MIN_HOT),
            max_total_cpu_mcpus=env_int(environ, "FN_MAX_TOTAL_CPU_MCPUS", 0),
            max_total_memory_bytes=env_size(environ, "FN_MAX_TOTAL_MEMORY_BYTES", 0),
            default_cpu_mcpus=env_cpus(environ, "FN_DEFAULT_CPUS"),
            max_pids=env_int(environ, "FN_MAX_PIDS", DEFAULT_PIDS_LIMIT),
            max_open_files=env_int(environ, "FN_MAX_OPEN_FILES", DEFAULT_OPEN_FILES),
            prefork_pool_size=env_int(environ, "FN_EXPERIMENTAL_PREFORK_POOL_SIZE", 0),
            prefork_pool_min=env_optional_int(environ, "FN_EXPERIMENTAL_PREFORK_POOL_MIN"),
            prefork_pool_max=env_optional_int(environ, "FN_EXPERIMENTAL_PREFORK_POOL_MAX"),
            prefork_image=environ.get("FN_EXPERIMENTAL_PREFORK_IMAGE") or defaults.prefork_image,
            prefork_cmd=env_words(environ, "FN_EXPERIMENTAL_PREFORK_CMD") or defaults.prefork_cmd,
            prefork_use_once=env_bool(environ, "FN_EXPERIMENTAL_PREFORK_USE_ONCE"),
            prefork_networks=env_words(environ, "FN_EXPERIMENTAL_PREFORK_NETWORKS"),
            prefork_rate_per_s=env_float(
                environ, "FN_EXPERIMENTAL_PREFORK_RATE", DEFAULT_PREFORK_RATE_PER_S
            ),
            prefork_burst=env_int(environ, "FN_EXPERIMENTAL_PREFORK_BURST", DEFAULT_PREFORK_BURST),
            prefork_idle_shrink_ms=env_msecs(
                environ,
                "FN_EXPERIMENTAL_PREFORK_IDLE_SHRINK_MSECS",
                defaults.prefork_idle_shrink_ms,
            ),
            prefork_close_timeout_ms=env_msecs(
                environ,
                "FN_EXPERIMENTAL_PREFORK_CLOSE_TIMEOUT_MSECS",
                defaults.prefork_close_timeout_ms,
            ),
            docker_networks=env_words(environ, "FN_DOCKER_NETWORKS"),
            allow_host_access=env_bool(environ, "FN_ALLOW_HOST_ACCESS"),
            iofs_path=environ.get("FN_IOFS_PATH") or defaults.iofs_path,
            iofs_size_bytes=env_size(environ, "FN_IOFS_SIZE_BYTES", DEFAULT_IOFS_SIZE_BYTES),
            disable_readonly_rootfs=env_bool(environ, "FN_DISABLE_READONLY_ROOTFS"),
            docker_auth=environ.get("FN_DOCKER_AUTH") or None,
            docker_cgroup_parent=environ.get("FN_DOCKER_CGROUP_PARENT", "").strip() or None,
            freezer=_freezer_mode(environ),
            keepalive=KeepAliveConfig.from_env(environ),
            log_pipe=_choice(environ, "FN_LOG_PIPE", LOG_PIPES, DEFAULT_LOG_PIPE),
            log_pipe_shell=environ.get("FN_LOG_PIPE_SHELL", "").strip() or DEFAULT_LOG_PIPE_SHELL,
        )

    def with_prefork(self, size: int | None) -> AgentConfig:
        """``--prefork N`` of ``run`` and ``serve``: a fixed pool of N slots (0 = no pool) in
        place of every FN_EXPERIMENTAL_PREFORK_POOL_* setting; None keeps them."""
        if size is None:
            return self
        return replace(self, prefork_pool_size=size, prefork_pool_min=None, prefork_pool_max=None)

    def with_serve_pool(self, environ: Mapping[str, str]) -> AgentConfig:
        """``fnagent serve``'s default pool: elastic, ``SERVE_POOL_MIN`` to ``SERVE_POOL_MAX``
        slots, unless ``environ`` sets a pool size (FN_EXPERIMENTAL_PREFORK_POOL_SIZE=0: no
        pool); apply before ``with_prefork``, whose flag wins."""
        if any((environ.get(name) or "").strip() for name in POOL_SIZE_SETTINGS):
            return self
        return replace(
            self,
            prefork_pool_size=0,
            prefork_pool_min=SERVE_POOL_MIN,
            prefork_pool_max=SERVE_POOL_MAX,
        )

    def pool_config(self) -> PoolConfig | None:
        """The prefork pool these settings describe, or None for no pool. Raises
        InvalidInputError when min exceeds max or a rate is nonsense."""
        size, low, high = self.prefork_pool_size, self.prefork_pool_min, self.prefork_pool_max
        min_size = size if low is None else low
        max_size = max(size, min_size) if high is None else high
        if max_size == 0 and min_size == 0:
            return None
        return PoolConfig(
            min_size=min_size,
            max_size=max_size,
            image=self.prefork_image,
            cmd=self.prefork_cmd,
            use_once=self.prefork_use_once,
            networks=self.prefork_networks,
            rate_per_s=self.prefork_rate_per_s,
            burst=self.prefork_burst,
            idle_shrink_s=self.prefork_idle_shrink_ms / 1000,
            close_timeout_s=self.prefork_close_timeout_ms / 1000,
        )

    def docker_config(self, *, function_network: bool = False) -> DockerConfig:
        """The Docker driver's share of these settings. ``function_network``: containers and
        pool slots whose networks the settings leave open go on the function network (made on
        entering the driver); otherwise they go on the default bridge, as ``docker run``'s do."""
        pool = self.pool_config()
        networks = self.docker_networks
        network = fn_network(host_access=self.allow_host_access) if function_network else None
        if network is not None:
            networks = networks or (network.name,)
            if pool is not None and not pool.networks:
                pool = replace(pool, networks=(network.name,))
            if network.name not in (*networks, *(pool.networks if pool else ())):
                network = None  # the user chose every network: none of ours to make
        return DockerConfig(
            instance_id=self.instance_id,
            networks=networks,
            function_network=network,
            pids_limit=self.max_pids,
            open_files=self.max_open_files,
            readonly_rootfs=not self.disable_readonly_rootfs,
            pull_policy=self.pull_policy,
            pull_timeout_s=self.hot_pull_timeout_ms / 1000,
            docker_auth=self.docker_auth,
            freezer=self.freezer,
            pool=pool,
            cgroup_parent=self.docker_cgroup_parent,
            output_shell=self.log_pipe_shell if self.log_pipe == LOG_PIPE_DIRECT else None,
        )


def _freezer_mode(environ: Mapping[str, str]) -> FreezerMode:
    text = environ.get("FN_FREEZER", "").strip().lower()
    if not text:
        return FreezerMode.CGROUP
    try:
        return FreezerMode(text)
    except ValueError:
        choices = " or ".join(mode.value for mode in FreezerMode)
        raise InvalidInputError(f"FN_FREEZER must be {choices}, got {text!r}") from None


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """The setting ``name``, one of ``choices`` (case-insensitive); ``default`` when unset or
    blank; anything else is refused by name."""
    text = environ.get(name, "").strip().lower()
    if not text:
        return default
    if text not in choices:
        raise InvalidInputError(f"{name} must be {' or '.join(choices)}, got {text!r}")
    return text


DEFAULT_DETACHED_CONCURRENCY = 8
DEFAULT_DETACHED_MAX_ATTEMPTS = 5
DEFAULT_DETACHED_BACKOFF_MS = 1000
DEFAULT_DETACHED_MAX_BACKOFF_MS = 60_000
DEFAULT_DETACHED_LEASE_MS = 30_000
DEFAULT_DETACHED_POLL_MS = 1000
DEFAULT_DETACHED_DRAIN_MS = 30_000
DEFAULT_DETACHED_PREFER_HOT_MS = 250
DEFAULT_CALLBACK_TIMEOUT_MS = 10_000
DEFAULT_CALLBACK_ATTEMPTS = 3
DEFAULT_CALLBACK_CONCURRENCY = 16


@dataclass(frozen=True, kw_only=True)
class DetachedConfig:
    """How ``fnagent serve`` runs detached calls (``Fn-Invoke-Type: detached``) from the queue
    in its store, and posts their callbacks."""

    concurrency: int = DEFAULT_DETACHED_CONCURRENCY
    """Detached calls this server runs at a time (FN_DETACHED_CONCURRENCY)."""
    max_attempts: int = DEFAULT_DETACHED_MAX_ATTEMPTS
    """Runs of one call when the host is too busy or the function answers 429/503
    (FN_DETACHED_MAX_ATTEMPTS); then the call fails with the last reason."""
    backoff_ms: int = DEFAULT_DETACHED_BACKOFF_MS
    """Wait before the first retry, doubled for each further one (FN_DETACHED_BACKOFF_MSECS)."""
    max_backoff_ms: int = DEFAULT_DETACHED_MAX_BACKOFF_MS
    """The longest wait between retries (FN_DETACHED_MAX_BACKOFF_MSECS)."""
    lease_ms: int = DEFAULT_DETACHED_LEASE_MS
    """How long a running call stays this server's without renewal (FN_DETACHED_LEASE_MSECS);
    renewed every third of it. A server that dies holding it frees the call after it (a
    restart on the same store takes it back at once)."""
    poll_ms: int = DEFAULT_DETACHED_POLL_MS
    """How often the queue is read when nothing was enqueued here (FN_DETACHED_POLL_MSECS):
    retries coming due, expired leases, calls another server enqueued."""
    drain_ms: int = DEFAULT_DETACHED_DRAIN_MS
    """On SIGTERM, how long running detached calls may take to finish
    (FN_DETACHED_DRAIN_MSECS); what is still running then runs again on the next start."""
    prefer_hot_ms: int = DEFAULT_DETACHED_PREFER_HOT_MS
    """On a shared (PostgreSQL) store, how long a queued call waits for an agent that has an
    idle container of its fn before an agent without one leases it
    (FN_DETACHED_PREFER_HOT_MSECS; 0: no preference). A SQLite store has one agent: none."""
    callback_timeout_ms: int = DEFAULT_CALLBACK_TIMEOUT_MS
    """One callback POST, connecting to answered (FN_CALLBACK_TIMEOUT_MSECS)."""
    callback_attempts: int = DEFAULT_CALLBACK_ATTEMPTS
    """POSTs of one callback at most (FN_CALLBACK_ATTEMPTS)."""
    callback_concurrency: int = DEFAULT_CALLBACK_CONCURRENCY
    """Callbacks posted at a time (FN_CALLBACK_CONCURRENCY)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DetachedConfig:
        """The FN_DETACHED_* and FN_CALLBACK_* variables; unset ones keep their defaults."""
        return cls(
            concurrency=env_int(
                environ, "FN_DETACHED_CONCURRENCY", DEFAULT_DETACHED_CONCURRENCY, minimum=1
            ),
            max_attempts=env_int(
                environ, "FN_DETACHED_MAX_ATTEMPTS", DEFAULT_DETACHED_MAX_ATTEMPTS, minimum=1
            ),
            backoff_ms=env_msecs(environ, "FN_DETACHED_BACKOFF_MSECS", DEFAULT_DETACHED_BACKOFF_MS),
            max_backoff_ms=env_msecs(
                environ, "FN_DETACHED_MAX_BACKOFF_MSECS", DEFAULT_DETACHED_MAX_BACKOFF_MS
            ),
            lease_ms=env_msecs(
                environ, "FN_DETACHED_LEASE_MSECS", DEFAULT_DETACHED_LEASE_MS, minimum=300
            ),
            poll_ms=env_msecs(
                environ, "FN_DETACHED_POLL_MSECS", DEFAULT_DETACHED_POLL_MS, minimum=10
            ),
            drain_ms=env_msecs(environ, "FN_DETACHED_DRAIN_MSECS", DEFAULT_DETACHED_DRAIN_MS),
            prefer_hot_ms=env_msecs(
                environ, "FN_DETACHED_PREFER_HOT_MSECS", DEFAULT_DETACHED_PREFER_HOT_MS
            ),
            callback_timeout_ms=env_msecs(
                environ, "FN_CALLBACK_TIMEOUT_MSECS", DEFAULT_CALLBACK_TIMEOUT_MS, minimum=1
            ),
            callback_attempts=env_int(
                environ, "FN_CALLBACK_ATTEMPTS", DEFAULT_CALLBACK_ATTEMPTS, minimum=1
            ),
            callback_concurrency=env_int(
                environ, "FN_CALLBACK_CONCURRENCY", DEFAULT_CALLBACK_CONCURRENCY, minimum=1
            ),
        )

    def backoff_s(self, attempts: int) -> float:
        """The wait before the next run of a call that ran ``attempts`` times: backoff_ms,
        doubled per further attempt, at most max_backoff_ms."""
        exponent = min(max(attempts - 1, 0), 32)
        delay_ms: int = min(self.backoff_ms * (1 << exponent), self.max_backoff_ms)
        return delay_ms / 1000


DEFAULT_CALL_RETENTION_COUNT = 1000
DEFAULT_CALL_RETENTION_S = 7 * 24 * 3600
DEFAULT_CALL_PRUNE_INTERVAL_S = 60


@dataclass(frozen=True, kw_only=True)
class RecordsConfig:
    """Call records (FN_CALL_RECORDS, on by default) and their retention per fn: at most
    FN_CALL_RETENTION_COUNT calls (1000), none older than FN_CALL_RETENTION_S seconds (7
    days), enforced every FN_CALL_PRUNE_INTERVAL_S seconds (60)."""

    enabled: bool = True
    retention_count: int = DEFAULT_CALL_RETENTION_COUNT
    retention_s: int = DEFAULT_CALL_RETENTION_S
    prune_interval_s: int = DEFAULT_CALL_PRUNE_INTERVAL_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RecordsConfig:
        return cls(
            enabled=env_bool(environ, "FN_CALL_RECORDS", True),
            retention_count=env_int(
                environ, "FN_CALL_RETENTION_COUNT", DEFAULT_CALL_RETENTION_COUNT, minimum=1
            ),
            retention_s=env_int(
                environ, "FN_CALL_RETENTION_S", DEFAULT_CALL_RETENTION_S, minimum=1
            ),
            prune_interval_s=env_int(
                environ, "FN_CALL_PRUNE_INTERVAL_S", DEFAULT_CALL_PRUNE_INTERVAL_S, minimum=1
            ),
        )


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How the server listens and guards itself (FN_PORT, FN_MAX_REQUEST_SIZE, FN_TOKEN,
    FN_INVOKE_TOKEN and the bounds on what a client may send)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Bodies of /invoke and /t (0 = no limit)."""
    max_api_body_bytes: int = DEFAULT_MAX_API_BODY_BYTES
    """Bodies of every other route (the management API)."""
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """The request line and headers of one request, together."""
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    """From a connection's first byte (or its opening) until a request's headers are in."""
    token: str | None = None
    """Required on management routes and /metrics (FN_TOKEN, or read from FN_TOKEN_FILE)."""
    token_on_invoke: bool = False
    """Require the token on /invoke and /t too (management routes always require it when set)."""
    invoke_token: str | None = None
    """A token that may call /invoke and /t (and nothing else); setting it guards them."""

    db_url: str | None = None
    """FN_DB_URL; None: the caller's default (a SQLite file under ./data)."""
    db_max_connections: int = DEFAULT_DB_MAX_CONNECTIONS
    """FN_DB_MAX_CONNECTIONS: the PostgreSQL store's pool bound."""
    db_connect_timeout_s: float = DEFAULT_DB_CONNECT_TIMEOUT_S
    """FN_DB_CONNECT_TIMEOUT_MSECS: to connect, or to wait for a connection of the pool."""
    db_statement_timeout_s: float = DEFAULT_DB_STATEMENT_TIMEOUT_S
    """FN_DB_STATEMENT_TIMEOUT_MSECS: PostgreSQL cancels a statement running longer."""
    db_sync: str = DEFAULT_DB_SYNC
    """FN_DB_SYNC: a SQLite store's synchronous mode, one of DB_SYNC_MODES."""
    db_resync_s: float = DEFAULT_DB_RESYNC_S
    """FN_DB_RESYNC_MSECS: how often an agent on a shared (PostgreSQL) store reads again
    every fn it runs, the safety net for a change whose notification was lost."""
    log_level: str = "INFO"
    """FNAGENT_LOG_LEVEL."""
    detached: DetachedConfig = field(default_factory=DetachedConfig)
    """Detached calls and their callbacks (FN_DETACHED_*, FN_CALLBACK_*)."""
    records: RecordsConfig = field(default_factory=RecordsConfig)
    """Call records and their retention (FN_CALL_RECORDS, FN_CALL_RETENTION_*)."""
    secrets_key_file: str | None = None
    """FN_SECRETS_KEY_FILE; None: ``<store file>.secrets-key`` beside a SQLite store."""
    public_lb_url: str | None = None
    """FN_PUBLIC_LB_URL (Fn's): the base URL clients reach the agents through (a load
    balancer such as deploy/nginx.conf), named by the endpoint annotations of fns and
    triggers; None: the URL each request came to."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerConfig:
        """FN_PORT, FN_DB_URL (and FN_DB_MAX_CONNECTIONS, FN_DB_CONNECT_TIMEOUT_MSECS,
        FN_DB_STATEMENT_TIMEOUT_MSECS, FN_DB_RESYNC_MSECS; FN_DB_SYNC for SQLite),
        FN_MAX_REQUEST_SIZE, FN_TOKEN (or FN_TOKEN_FILE), FN_INVOKE_REQUIRES_TOKEN,
        FN_INVOKE_TOKEN, the input bounds FN_MAX_API_BODY_SIZE, FN_MAX_HEADER_SIZE,
        FN_MAX_HEADER_COUNT, FN_HEADER_TIMEOUT_MSECS, FN_SECRETS_KEY_FILE, FN_PUBLIC_LB_URL,
        FNAGENT_LOG_LEVEL, DetachedConfig's and the call records' (RecordsConfig); unset ones
        keep their defaults."""
        token = environ.get("FN_TOKEN") or None
        token_file = environ.get("FN_TOKEN_FILE")
        if token is None and token_file:
            token = read_token_file(token_file)
        return cls(
            port=env_int(environ, "FN_PORT", DEFAULT_PORT, minimum=1, maximum=65535),
            db_url=environ.get("FN_DB_URL") or None,
            db_max_connections=env_int(
                environ, "FN_DB_MAX_CONNECTIONS", DEFAULT_DB_MAX_CONNECTIONS, minimum=1
            ),
            db_connect_timeout_s=env_msecs(
                environ,
                "FN_DB_CONNECT_TIMEOUT_MSECS",
                int(DEFAULT_DB_CONNECT_TIMEOUT_S * 1000),
                minimum=1,
            )
            / 1000,
            db_statement_timeout_s=env_msecs(
                environ,
                "FN_DB_STATEMENT_TIMEOUT_MSECS",
                int(DEFAULT_DB_STATEMENT_TIMEOUT_S * 1000),
                minimum=1,
            )
            / 1000,
            db_sync=_choice(environ, "FN_DB_SYNC", DB_SYNC_MODES, DEFAULT_DB_SYNC),
            db_resync_s=env_msecs(
                environ, "FN_DB_RESYNC_MSECS", int(DEFAULT_DB_RESYNC_S * 1000), minimum=100
            )
            / 1000,
            max_request_bytes=env_size(environ, "FN_MAX_REQUEST_SIZE", DEFAULT_MAX_REQUEST_BYTES),
            max_api_body_bytes=env_size(
                environ, "FN_MAX_API_BODY_SIZE", DEFAULT_MAX_API_BODY_BYTES, minimum=1
            ),
            max_header_bytes=env_size(
                environ, "FN_MAX_HEADER_SIZE", DEFAULT_MAX_HEADER_BYTES, minimum=1024
            ),
            max_headers=env_int(environ, "FN_MAX_HEADER_COUNT", DEFAULT_MAX_HEADERS, minimum=1),
            header_timeout_s=env_msecs(
                environ,
                "FN_HEADER_TIMEOUT_MSECS",
                int(DEFAULT_HEADER_TIMEOUT_S * 1000),
                minimum=1,
            )
            / 1000,
            token=check_token_text("FN_TOKEN", token),
            token_on_invoke=env_bool(environ, "FN_INVOKE_REQUIRES_TOKEN"),
            invoke_token=check_token_text(
                "FN_INVOKE_TOKEN", environ.get("FN_INVOKE_TOKEN") or None
            ),
            log_level=environ.get("FNAGENT_LOG_LEVEL", "").strip() or "INFO",
            detached=DetachedConfig.from_env(environ),
            records=RecordsConfig.from_env(environ),
            secrets_key_file=environ.get("FN_SECRETS_KEY_FILE") or None,
            public_lb_url=env_base_url(environ, "FN_PUBLIC_LB_URL"),
        )

    def invoke_tokens(self) -> tuple[bytes, ...]:
        """The tokens /invoke and /t accept, as bytes; empty when they are not guarded."""
        tokens: list[str] = []
        if self.invoke_token:
            tokens.append(self.invoke_token)
        if self.token and (self.token_on_invoke or self.invoke_token):
            tokens.append(self.token)
        return tuple(token.encode() for token in tokens)


def check_token_text(name: str, token: str | None) -> str | None:
    """A token must be sendable as ``Authorization: Bearer <token>``: no spaces or control
    characters (a non-ASCII token is compared as UTF-8 bytes)."""
    if token is not None and any(
        char.isspace() or ord(char) < 32 or ord(char) == 127 for char in token
    ):
        raise InvalidInputError(
            f"{name} holds a space or control character: no client could send it in a header"
        )
    return token


def read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise InvalidInputError(f"the token file {path} is empty")
    return token
