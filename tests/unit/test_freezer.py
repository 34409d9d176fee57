"""The cgroup freezer on a fake cgroup tree: finding a container's freezer from its init pid,
the bounded wait for FROZEN, and the v2 layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.docker.freezer import CgroupFreezer, find_freezer
from drivers.errors import DockerAPIError

pytestmark = pytest.mark.anyio

CID = "f1a18156d0b261d6c2e2af7d7c1e83205803e15300076327342d0de4f9dad561"


def fake_proc(tmp_path: Path, pid: int, lines: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text("\n".join(lines) + "\n")
    return proc


def v1_freezer(tmp_path: Path, path: str) -> Path:
    found = tmp_path / "cgroup" / "freezer" / path.lstrip("/")
    found.mkdir(parents=True)
    (found / "freezer.state").write_text("THAWED\n")
    return found


def test_finds_the_v1_freezer_of_the_containers_init(tmp_path: Path) -> None:
    path = f"/docker/{CID}"
    proc = fake_proc(tmp_path, 42, [f"6:freezer:{path}", f"4:memory:{path}", f"0::{path}"])
    made = v1_freezer(tmp_path, path)
    found = find_freezer(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found == CgroupFreezer(made, v2=False)


def test_finds_the_v2_freezer(tmp_path: Path) -> None:
    path = f"/system.slice/docker-{CID}.scope"
    proc = fake_proc(tmp_path, 42, [f"0::{path}"])
    made = tmp_path / "cgroup" / path.lstrip("/")
    made.mkdir(parents=True)
    (made / "cgroup.freeze").write_text("0\n")
    found = find_freezer(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc)
    assert found == CgroupFreezer(made, v2=True)


@pytest.mark.parametrize(
    "lines",
    [
        ["6:freezer:/docker/someone-else"],  # the pid was reused by another container
        ["6:freezer:/"],
        [],
    ],
)
def test_a_cgroup_that_is_not_the_containers_is_never_used(
    tmp_path: Path, lines: list[str]
) -> None:
    proc = fake_proc(tmp_path, 42, lines)
    v1_freezer(tmp_path, "/docker/someone-else")
    assert find_freezer(42, CID, cgroup_root=tmp_path / "cgroup", proc_root=proc) is None


def test_no_process_or_no_pid_finds_nothing(tmp_path: Path) -> None:
    assert find_freezer(0, CID) is None
    assert find_freezer(42, CID, proc_root=tmp_path) is None


async def test_v1_freeze_and_thaw_write_the_state(tmp_path: Path) -> None:
    made = v1_freezer(tmp_path, "/docker/x")
    freezer = CgroupFreezer(made, v2=False)
    await freezer.freeze()  # a plain file reads back what was written: FROZEN at once
    assert (made / "freezer.state").read_text() == "FROZEN"
    await freezer.thaw()
    assert (made / "freezer.state").read_text() == "THAWED"


class StuckFreezing(CgroupFreezer):
    """A v1 freezer whose tasks never all freeze: it reads FREEZING until thawed."""

    def state(self) -> str:
        written = super().state()
        return "FREEZING" if written == "FROZEN" else written


async def test_a_freeze_that_does_not_finish_is_undone_and_fails(tmp_path: Path) -> None:
    made = v1_freezer(tmp_path, "/docker/x")
    freezer = StuckFreezing(made, v2=False)
    with pytest.raises(DockerAPIError, match="did not freeze within 0.05 s"):
        await freezer.freeze(timeout_s=0.05)
    assert (made / "freezer.state").read_text() == "THAWED"


async def test_v2_reads_frozen_from_its_events(tmp_path: Path) -> None:
    made = tmp_path / "cg"
    made.mkdir()
    (made / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    freezer = CgroupFreezer(made, v2=True)
    assert freezer.state() == "FROZEN"
    freezer.request(False)
    assert (made / "cgroup.freeze").read_text() == "0"
    (made / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert freezer.state() == "THAWED"


def test_a_write_to_a_cgroup_that_is_gone_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CgroupFreezer(tmp_path / "gone", v2=False).request(True)
