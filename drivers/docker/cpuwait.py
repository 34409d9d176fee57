"""How long a container's processes waited for a CPU held by other work: the host's delay.

The kernel counts, per task, the time it was runnable but not running: the second field of
``/proc/<tid>/schedstat``, in nanoseconds. That count also holds the time the container's own
CPU quota throttled it, which its cgroup counts (``cpu.stat``: ``throttled_time`` in ns on v1,
``throttled_usec`` on v2) and which is taken off: a limit the container was given is its own.

The container's wait is its most delayed task's: tasks that wait at the same time (threads of
one process) would count that time again if added up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivers.docker.cgroups import find_cgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
NS = 1e-9
US = 1e-6


@dataclass(frozen=True)
class CpuWait:
    """One container's CPU cgroup; ``seconds()`` reads its wait now."""

    path: Path
    v2: bool
    proc_root: Path = PROC_ROOT

    def seconds(self) -> float | None:
        """The most any of the container's tasks has waited for a CPU since it started, less
        the time the container's own quota throttled it; None when the cgroup is gone."""
        try:
            tids = (self.path / ("cgroup.threads" if self.v2 else "tasks")).read_text().split()
            stat = (self.path / "cpu.stat").read_text().splitlines()
        except OSError:
            return None
        most = 0
        for tid in tids:
            try:
                fields = (self.proc_root / tid / "schedstat").read_text().split()
                most = max(most, int(fields[1]))
            except (OSError, IndexError, ValueError):
                continue  # the task ended meanwhile
        return max(0.0, most * NS - self._throttled_s(stat))

    def _throttled_s(self, stat: list[str]) -> float:
        key, unit = ("throttled_usec", US) if self.v2 else ("throttled_time", NS)
        for line in stat:
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value) * unit
        return 0.0


def find_cpu_wait(
    pid: int, container_id: str, *, cgroup_root: Path | None = None, proc_root: Path | None = None
) -> CpuWait | None:
    """The CPU wait of the container whose init process is ``pid``, or None when it cannot
    be read (no such process, no cpu controller, a path that does not name ``container_id``).
    The roots default to ``CGROUP_ROOT`` and ``PROC_ROOT``."""
    proc_root = proc_root or PROC_ROOT
    found = find_cgroup(
        pid,
        container_id,
        controller="cpu",
        v1_file="tasks",
        v2_file="cgroup.threads",
        cgroup_root=cgroup_root or CGROUP_ROOT,
        proc_root=proc_root,
    )
    return CpuWait(found.path, found.v2, proc_root) if found is not None else None
