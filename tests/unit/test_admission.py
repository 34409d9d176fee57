"""Admission: budgets from cgroup v1 and v2 files, headroom, caps, reservations."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.errors import MemoryNeverFitsError
from fnagent.agent.admission import (
    Admission,
    Budget,
    cgroup_cpu_limit_mcpus,
    cgroup_memory_limit,
    detect_budget,
)

MIB = 1024 * 1024


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("536870912\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_memory_limit(tmp_path) == 512 * MIB
    assert cgroup_cpu_limit_mcpus(tmp_path) == 1500


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_memory_limit(tmp_path) is None
    assert cgroup_cpu_limit_mcpus(tmp_path) is None


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(1024 * MIB))
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_memory_limit(tmp_path) == 1024 * MIB
    assert cgroup_cpu_limit_mcpus(tmp_path) == 500


def test_cgroup_v1_unlimited_is_none(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_memory_limit(tmp_path) is None
    assert cgroup_cpu_limit_mcpus(tmp_path) is None


def test_detected_budget_is_capped_and_keeps_headroom() -> None:
    budget = detect_budget(max_memory_bytes=300 * MIB, max_cpu_mcpus=700)
    assert budget == Budget(300 * MIB, 700)
    uncapped = detect_budget()
    assert 0 < uncapped.memory_bytes and uncapped.cpu_mcpus >= 1000


def test_reservations_and_release() -> None:
    admission = Admission(Budget(256 * MIB, 1000))
    assert admission.try_reserve(128 * MIB, 500)
    assert admission.try_reserve(128 * MIB, 0)
    assert not admission.try_reserve(1 * MIB, 0)
    assert not admission.try_reserve(0, 600)
    admission.release(128 * MIB, 500)
    assert admission.try_reserve(64 * MIB, 500)
    assert repr(admission) == f"<Admission memory={192 * MIB}/{256 * MIB} cpu=500/1000>"


def test_never_fits() -> None:
    admission = Admission(Budget(256 * MIB, 1000))
    with pytest.raises(MemoryNeverFitsError, match="at most 256 MiB"):
        admission.check_fits_ever(512 * MIB, 0)
    with pytest.raises(MemoryNeverFitsError, match="milli-CPUs"):
        admission.check_fits_ever(0, 2000)
    admission.check_fits_ever(256 * MIB, 1000)
