"""The agent's configuration, read once from Fn's environment variables (DESIGN.md §5).

Only ``AgentConfig.from_env`` reads the environment, and only the CLI calls it; flags override
fields with ``dataclasses.replace``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.docker.config import (
    DEFAULT_OPEN_FILES,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_PULL_TIMEOUT_S,
    DockerConfig,
    PullPolicy,
    default_iofs_dir,
)
from drivers.errors import InvalidInputError

DEFAULT_FREEZE_IDLE_MS = 50
DEFAULT_HOT_POLL_MS = 200
DEFAULT_HOT_START_TIMEOUT_MS = 5000
DEFAULT_HOT_PULL_TIMEOUT_MS = int(DEFAULT_PULL_TIMEOUT_S * 1000)
DEFAULT_MAX_LOG_SIZE_BYTES = 1024 * 1024
DEFAULT_MEMORY_MB = 128
MAX_MEMORY_MB = 8192
DEFAULT_TIMEOUT_S = 30
MAX_TIMEOUT_S = 300
DEFAULT_IDLE_TIMEOUT_S = 30
MAX_IDLE_TIMEOUT_S = 3600


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidInputError(f"{name}={text!r} is not an integer") from None
    if value < 0:
        raise InvalidInputError(f"{name}={text!r} must not be negative")
    return value


def _bool(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _words(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(environ.get(name, "").split())


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Settings with Fn's names and defaults; units in the field names."""

    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Labels this agent's containers (FNAGENT_INSTANCE_ID); random unless set."""
    freeze_idle_ms: int = DEFAULT_FREEZE_IDLE_MS
    hot_poll_ms: int = DEFAULT_HOT_POLL_MS
    hot_start_timeout_ms: int = DEFAULT_HOT_START_TIMEOUT_MS
    hot_pull_timeout_ms: int = DEFAULT_HOT_PULL_TIMEOUT_MS
    max_response_size_bytes: int = 0
    max_log_size_bytes: int = DEFAULT_MAX_LOG_SIZE_BYTES
    max_total_cpu_mcpus: int = 0
    max_total_memory_bytes: int = 0
    max_pids: int = DEFAULT_PIDS_LIMIT
    max_open_files: int = DEFAULT_OPEN_FILES
    prefork_pool_size: int = 0
    prefork_image: str = "fnagent/busybox"
    prefork_cmd: tuple[str, ...] = ("tail", "-f", "/dev/null")
    prefork_use_once: bool = False
    prefork_networks: tuple[str, ...] = ()
    docker_networks: tuple[str, ...] = ()
    iofs_path: str = field(default_factory=default_iofs_dir)
    disable_readonly_rootfs: bool = False
    docker_auth: str | None = None
    pull_policy: PullPolicy = PullPolicy.MISSING

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentConfig:
        """Read Fn's FN_* variables; unset ones keep their defaults."""
        defaults = cls()
        return cls(
            instance_id=environ.get("FNAGENT_INSTANCE_ID") or defaults.instance_id,
            freeze_idle_ms=_int(environ, "FN_FREEZE_IDLE_MSECS", DEFAULT_FREEZE_IDLE_MS),
            hot_poll_ms=_int(environ, "FN_HOT_POLL_MSECS", DEFAULT_HOT_POLL_MS),
            hot_start_timeout_ms=_int(
                environ, "FN_HOT_START_TIMEOUT_MSECS", DEFAULT_HOT_START_TIMEOUT_MS
            ),
            hot_pull_timeout_ms=_int(
                environ, "FN_HOT_PULL_TIMEOUT_MSECS", DEFAULT_HOT_PULL_TIMEOUT_MS
            ),
            max_response_size_bytes=_int(environ, "FN_MAX_RESPONSE_SIZE", 0),
            max_log_size_bytes=_int(environ, "FN_MAX_LOG_SIZE_BYTES", DEFAULT_MAX_LOG_SIZE_BYTES),
            max_total_cpu_mcpus=_int(environ, "FN_MAX_TOTAL_CPU_MCPUS", 0),
            max_total_memory_bytes=_int(environ, "FN_MAX_TOTAL_MEMORY_BYTES", 0),
            max_pids=_int(environ, "FN_MAX_PIDS", DEFAULT_PIDS_LIMIT),
            max_open_files=_int(environ, "FN_MAX_OPEN_FILES", DEFAULT_OPEN_FILES),
            prefork_pool_size=_int(environ, "FN_EXPERIMENTAL_PREFORK_POOL_SIZE", 0),
            prefork_image=environ.get("FN_EXPERIMENTAL_PREFORK_IMAGE") or defaults.prefork_image,
            prefork_cmd=_words(environ, "FN_EXPERIMENTAL_PREFORK_CMD") or defaults.prefork_cmd,
            prefork_use_once=_bool(environ, "FN_EXPERIMENTAL_PREFORK_USE_ONCE"),
            prefork_networks=_words(environ, "FN_EXPERIMENTAL_PREFORK_NETWORKS"),
            docker_networks=_words(environ, "FN_DOCKER_NETWORKS"),
            iofs_path=environ.get("FN_IOFS_PATH") or defaults.iofs_path,
            disable_readonly_rootfs=_bool(environ, "FN_DISABLE_READONLY_ROOTFS"),
            docker_auth=environ.get("FN_DOCKER_AUTH") or None,
        )

    def docker_config(self) -> DockerConfig:
        """The Docker driver's share of these settings."""
        return DockerConfig(
            instance_id=self.instance_id,
            networks=self.docker_networks,
            pids_limit=self.max_pids,
            open_files=self.max_open_files,
            readonly_rootfs=not self.disable_readonly_rootfs,
            pull_policy=self.pull_policy,
            pull_timeout_s=self.hot_pull_timeout_ms / 1000,
            docker_auth=self.docker_auth,
        )
