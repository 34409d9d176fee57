"""A container's CPU wait on a fake cgroup tree and /proc: its most delayed task's run-queue
wait, less its own quota's throttling, on cgroup v1 (the cpu hierarchy, joined or not) and v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.docker.cpuwait import CpuWait, find_cpu_wait

CID = "f1a18156d0b261d6c2e2af7d7c1e83205803e15300076327342d0de4f9dad561"
S = 1_000_000_000  # ns


def fake_proc(tmp_path: Path, pid: int, lines: list[str], waits_ns: dict[int, int]) -> Path:
    """/proc with ``pid``'s cgroup lines and a schedstat (run ns, wait ns, slices) per task."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text("\n".join(lines) + "\n")
    for tid, wait in waits_ns.items():
        (proc / str(tid)).mkdir(exist_ok=True)
        (proc / str(tid) / "schedstat").write_text(f"123456 {wait} 7\n")
    return proc


def cgroup_dir(tmp_path: Path, path: str, tasks: list[int], stat: str, v2: bool = False) -> Path:
    made = tmp_path / "cgroup" / path.lstrip("/")
    made.mkdir(parents=True)
    (made / ("cgroup.threads" if v2 else "tasks")).write_text("".join(f"{t}\n" for t in tasks))
    (made / "cpu.stat").write_text(stat)
    return made


def test_v1_the_most_delayed_task_less_the_throttled_time(tmp_path: Path) -> None:
    path = f"/docker/{CID}"
    proc = fake_proc(tmp_path, 42, [f"2:cpuacct:{path}", f"1:cpu:{path}"], {42: 3 * S, 43: 5 * S})
    stat = f"nr_periods 9\nnr_throttled 2\nthrottled_time {S}\n"
    made = cgroup_dir(tmp_path, f"cpu/{path}", [42, 43], stat)
    found = find_cpu_wait(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found == CpuWait(made, v2=False, proc_root=proc)
    assert found.seconds() == pytest.approx(4.0)


def test_v1_joined_cpu_and_cpuacct_hierarchy(tmp_path: Path) -> None:
    path = f"/docker/{CID}"
    proc = fake_proc(tmp_path, 42, [f"3:cpu,cpuacct:{path}"], {42: 2 * S})
    made = cgroup_dir(tmp_path, f"cpu,cpuacct/{path}", [42], "throttled_time 0\n")
    found = find_cpu_wait(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found is not None and found.path == made
    assert found.seconds() == pytest.approx(2.0)


def test_v2_threads_and_throttled_usec(tmp_path: Path) -> None:
    path = f"/system.slice/docker-{CID}.scope"
    proc = fake_proc(tmp_path, 42, [f"0::{path}"], {42: 2 * S, 44: S})
    made = cgroup_dir(tmp_path, path, [42, 44], "usage_usec 9\nthrottled_usec 500000\n", v2=True)
    found = find_cpu_wait(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found == CpuWait(made, v2=True, proc_root=proc)
    assert found.seconds() == pytest.approx(1.5)


def test_tasks_gone_meanwhile_are_skipped_and_throttling_never_makes_it_negative(
    tmp_path: Path,
) -> None:
    path = f"/docker/{CID}"
    proc = fake_proc(tmp_path, 42, [f"1:cpu:{path}"], {42: S})
    cgroup_dir(tmp_path, f"cpu/{path}", [42, 99], f"throttled_time {3 * S}\n")
    found = find_cpu_wait(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found is not None and found.seconds() == 0.0


def test_a_cgroup_gone_reads_none_and_another_containers_is_never_used(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 42, ["1:cpu:/docker/someone-else"], {42: S})
    cgroup_dir(tmp_path, "cpu/docker/someone-else", [42], "throttled_time 0\n")
    assert find_cpu_wait(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc) is None
    assert find_cpu_wait(0, CID) is None
    assert CpuWait(tmp_path / "gone", v2=False, proc_root=proc).seconds() is None
