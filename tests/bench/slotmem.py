"""Host memory held by one idle container (a prefork slot), read from /proc and its cgroup.

- its containerd shim (one per container on Docker 20.10): PSS from ``smaps_rollup``, plus its
  page tables (``VmPTE``) and one 16 KiB kernel stack per thread, which PSS does not count;
- the container's cgroup: ``memory.usage_in_bytes`` (v1) or ``memory.current`` (v2), its
  processes' private pages and the kernel memory charged to it;
- its processes' PSS, for reference (their private pages are in the cgroup's figure already).

Not counted: the network namespace and veth pair, and dockerd's and containerd's records of
the container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KERNEL_STACK_BYTES = 16 * 1024


@dataclass(frozen=True)
class SlotMemory:
    shim_bytes: int
    cgroup_bytes: int
    processes_pss_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.shim_bytes + self.cgroup_bytes


def _fields(path: str) -> dict[str, int]:
    """``Name: <n> kB`` lines as bytes."""
    found: dict[str, int] = {}
    with open(path) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                found[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return found


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except OSError:
        return []


def _cgroup_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/cgroup") as lines:
        entries = [line.strip().split(":", 2) for line in lines]
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            with open(f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes") as usage:
                return int(usage.read())
    for hierarchy, _, path in entries:
        if hierarchy == "0":
            with open(f"/sys/fs/cgroup{path}/memory.current") as current:
                return int(current.read())
    raise OSError(f"no memory cgroup for process {pid}")


def slot_memory(init_pid: int) -> SlotMemory:
    """The memory of the container whose first process is ``init_pid`` (``State.Pid``)."""
    shim = _parent(init_pid)
    status = _fields(f"/proc/{shim}/status")
    threads = len(os.listdir(f"/proc/{shim}/task"))
    shim_bytes = (
        _fields(f"/proc/{shim}/smaps_rollup")["Pss"]
        + status.get("VmPTE", 0)
        + threads * KERNEL_STACK_BYTES
    )
    processes = [init_pid]
    for pid in processes:  # grows as it goes: the whole tree
        processes.extend(_children(pid))
    pss = sum(_fields(f"/proc/{pid}/smaps_rollup")["Pss"] for pid in processes)
    return SlotMemory(shim_bytes, _cgroup_bytes(init_pid), pss)
