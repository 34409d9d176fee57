"""OrphanReaper's watcher: does nothing after ``done``, cleans up when its parent vanishes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drivers.docker.reaper import OrphanReaper


def _made_dir(tmp_path: Path) -> Path:
    path = tmp_path / "socket dir"
    (path / "inner").mkdir(parents=True)
    (path / "inner" / "lsnr.sock").write_bytes(b"")
    return path


def test_a_parent_that_says_done_leaves_everything_alone(tmp_path: Path) -> None:
    path = _made_dir(tmp_path)
    reaper = OrphanReaper.start(None)
    reaper.remove_dir(str(path))
    reaper.done()
    reaper.done()
    assert reaper.process.wait(timeout=30) == 0
    assert path.exists()


def test_a_parent_gone_without_done_gets_its_directories_removed(tmp_path: Path) -> None:
    path = _made_dir(tmp_path)
    reaper = OrphanReaper.start(None)
    reaper.remove_dir(str(path))
    assert reaper._fd is not None
    os.close(reaper._fd)  # what the kernel does for a killed parent
    reaper._fd = None
    assert reaper.process.wait(timeout=30) == 0
    assert not path.exists()


def test_a_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    reaper = OrphanReaper.start(None)
    try:
        with pytest.raises(ValueError, match="newline"):
            reaper.remove_dir(str(tmp_path / "a\nb"))
    finally:
        reaper.done()
        reaper.process.wait(timeout=30)
