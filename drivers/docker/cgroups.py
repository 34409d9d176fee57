"""A container's cgroup directory for one controller, found from its init process.

``/proc/<pid>/cgroup`` names the container's cgroups, so Docker's cgroup driver (cgroupfs or
systemd) and cgroup parent do not matter; a path that does not name the container's id (the
pid was reused) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cgroup:
    """A cgroup directory; ``v2`` when it is on the unified hierarchy."""

    path: Path
    v2: bool


def find_cgroup(
    pid: int,
    container_id: str,
    *,
    controller: str,
    v1_file: str,
    v2_file: str,
    cgroup_root: Path,
    proc_root: Path,
) -> Cgroup | None:
    """The cgroup of the container whose init process is ``pid`` that holds ``controller``:
    on cgroup v1 its directory in that controller's hierarchy, when it has ``v1_file``; else
    its unified (v2) directory, when it has ``v2_file``. None when there is none to use (no
    such process, no such file, a path that does not name ``container_id``)."""
    if pid <= 0:
        return None
    try:
        lines = (proc_root / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    unified: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3 or container_id not in parts[2]:
            continue
        hierarchy, controllers, path = parts
        if controller in controllers.split(","):
            # Mounted under its own name, or under the joined names ("cpu,cpuacct").
            for mount in dict.fromkeys((controller, controllers)):
                found = cgroup_root / mount / path.lstrip("/")
                if (found / v1_file).is_file():
                    return Cgroup(found, v2=False)
        elif hierarchy == "0":
            unified = path
    if unified is not None:
        found = cgroup_root / unified.lstrip("/")
        if (found / v2_file).is_file():
            return Cgroup(found, v2=True)
    return None
