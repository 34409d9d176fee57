"""Admission: a memory and CPU budget that container launches reserve from.

The budget comes from the host (/proc/meminfo, CPU count) or the agent's own cgroup limits
(v1 and v2) when those are smaller, minus headroom for the agent and the daemon, and capped by
FN_MAX_TOTAL_MEMORY_BYTES / FN_MAX_TOTAL_CPU_MCPUS. Bookkeeping only: no I/O after start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import anyio

from fnagent.errors import MemoryNeverFitsError

MEMORY_HEADROOM_FRACTION = 0.1
MIN_MEMORY_HEADROOM_BYTES = 256 * 1024 * 1024
_UNLIMITED = 1 << 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        return None


def host_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``); None when unlimited."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        value = _read_int(path)
        if value is not None and value < _UNLIMITED:
            return value
    return None


def cgroup_cpu_limit_mcpus(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPU quota of this process's cgroup in milli-CPUs; None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        if quota != "max":
            return int(quota) * 1000 // int(period)
    except (OSError, ValueError):
        pass
    quota_v1 = _read_int(root / "cpu" / "cpu.cfs_quota_us")
    period_v1 = _read_int(root / "cpu" / "cpu.cfs_period_us")
    if quota_v1 and quota_v1 > 0 and period_v1:
        return quota_v1 * 1000 // period_v1
    return None


@dataclass(frozen=True)
class Budget:
    memory_bytes: int
    cpu_mcpus: int


def detect_budget(max_memory_bytes: int = 0, max_cpu_mcpus: int = 0) -> Budget:
    """The budget for this host: the smaller of host and cgroup, minus headroom, capped."""
    memory = host_memory_bytes()
    limit = cgroup_memory_limit()
    if limit is not None:
        memory = min(memory, limit)
    memory -= max(int(memory * MEMORY_HEADROOM_FRACTION), MIN_MEMORY_HEADROOM_BYTES)
    if max_memory_bytes:
        memory = min(memory, max_memory_bytes)
    cpus = (os.cpu_count() or 1) * 1000
    cpu_limit = cgroup_cpu_limit_mcpus()
    if cpu_limit is not None:
        cpus = min(cpus, cpu_limit)
    if max_cpu_mcpus:
        cpus = min(cpus, max_cpu_mcpus)
    return Budget(max(memory, 0), cpus)


class Admission:
    """Reservations against a Budget. A fn without a CPU limit reserves no CPU."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.used_memory = 0
        self.used_cpu = 0
        self._released = anyio.Event()

    def __repr__(self) -> str:
        return (
            f"<Admission memory={self.used_memory}/{self.budget.memory_bytes} "
            f"cpu={self.used_cpu}/{self.budget.cpu_mcpus}>"
        )

    def check_fits_ever(self, memory_bytes: int, cpu_mcpus: int) -> None:
        if memory_bytes > self.budget.memory_bytes:
            raise MemoryNeverFitsError(
                f"the function needs {memory_bytes // 2**20} MiB of memory but this host can "
                f"give functions at most {self.budget.memory_bytes // 2**20} MiB"
            )
        if cpu_mcpus > self.budget.cpu_mcpus:
            raise MemoryNeverFitsError(
                f"the function needs {cpu_mcpus} milli-CPUs but this host can give functions "
                f"at most {self.budget.cpu_mcpus}"
            )

    def try_reserve(self, memory_bytes: int, cpu_mcpus: int) -> bool:
        if (
            self.used_memory + memory_bytes > self.budget.memory_bytes
            or self.used_cpu + cpu_mcpus > self.budget.cpu_mcpus
        ):
            return False
        self.used_memory += memory_bytes
        self.used_cpu += cpu_mcpus
        return True

    def release(self, memory_bytes: int, cpu_mcpus: int) -> None:
        self.used_memory -= memory_bytes
        self.used_cpu -= cpu_mcpus
        self._released.set()
        self._released = anyio.Event()

    @property
    def released(self) -> anyio.Event:
        """Set at the next release (a fresh event after each)."""
        return self._released
