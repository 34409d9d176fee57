"""HostCpu: the idle share between two /proc/stat readings."""

from __future__ import annotations

from pathlib import Path

from fnagent.agent.hostcpu import HostCpu


def write_stat(path: Path, user: int, idle: int, iowait: int) -> None:
    path.write_text(f"cpu  {user} 0 0 {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5\n")


def test_idle_share_between_readings(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, user=100, idle=100, iowait=0)
    cpu = HostCpu(str(stat), interval_s=0)
    assert cpu.idle_share() is None, "one reading says nothing yet"
    write_stat(stat, user=190, idle=105, iowait=5)
    assert cpu.idle_share() == 0.1


def test_readings_are_cached_for_the_interval(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    write_stat(stat, user=0, idle=0, iowait=0)
    cpu = HostCpu(str(stat), interval_s=3600)
    assert cpu.idle_share() is None
    write_stat(stat, user=0, idle=50, iowait=0)
    assert cpu.idle_share() is None, "not read again within the interval"


def test_unreadable_stat_is_unknown(tmp_path: Path) -> None:
    assert HostCpu(str(tmp_path / "missing"), interval_s=0).idle_share() is None
