"""The socket dir's listener check on real files: only a socket bound inside the function's own
dir is ever pinned, and the agent's pinned link cannot be re-pointed afterwards."""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fnagent.agent.sockdir import SocketDir, remove_root
from fnagent.errors import SocketDirError

MIB = 1024 * 1024


@pytest.fixture
def made(tmp_path: Path) -> Iterator[SocketDir]:
    socket_dir = SocketDir.under(str(tmp_path / "root"))
    socket_dir.make(0)
    yield socket_dir
    socket_dir.remove()


def bind(path: Path | str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen()
    return sock


def reaches(listener: str, expected: socket.socket) -> bool:
    """Whether a connection to ``listener`` lands on ``expected``."""
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(listener)
        expected.settimeout(1)
        accepted, _ = expected.accept()
        accepted.close()
        return True


def test_the_layout(made: SocketDir) -> None:
    assert stat.S_IMODE(os.stat(made.path).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(made.own).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(made.shared).st_mode) == 0o777
    assert made.listener.startswith(made.own + "/")
    made.remove()
    made.remove()  # idempotent
    assert not os.path.exists(made.path)


def test_make_recreates_a_removed_root(tmp_path: Path) -> None:
    socket_dir = SocketDir.under(str(tmp_path / "gone" / "root"))
    socket_dir.make(0)
    assert os.path.isdir(socket_dir.shared)
    socket_dir.remove()


def test_make_fails_cleanly_where_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SocketDirError, match="cannot make the socket dir"):
        SocketDir.under(str(tmp_path / "file")).make(0)


def test_a_plain_socket_is_pinned(made: SocketDir) -> None:
    assert not made.pin()
    with bind(Path(made.shared) / "lsnr.sock") as sock:
        assert made.pin()
        assert stat.S_ISSOCK(os.lstat(made.listener).st_mode)
        assert reaches(made.listener, sock)


def test_a_symlink_to_a_socket_in_the_same_dir_is_pinned(made: SocketDir) -> None:
    with bind(Path(made.shared) / "phonylsnr.sock") as sock:
        os.symlink("phonylsnr.sock", Path(made.shared) / "lsnr.sock")
        assert made.pin()
        assert (
            os.lstat(made.listener).st_ino == os.lstat(Path(made.shared) / "phonylsnr.sock").st_ino
        )
        assert reaches(made.listener, sock)


@pytest.mark.parametrize("target", ["ABSOLUTE", "../outside.sock", "sub/in.sock", "..", "."])
def test_a_symlink_out_of_the_dir_is_never_pinned(
    made: SocketDir, tmp_path: Path, target: str
) -> None:
    (Path(made.shared) / "sub").mkdir()
    with bind(tmp_path / "outside.sock"), bind(Path(made.shared) / "sub" / "in.sock"):
        if target == "ABSOLUTE":
            target = str(tmp_path / "outside.sock")
        os.symlink(target, Path(made.shared) / "lsnr.sock")
        assert not made.pin()
        assert not os.path.lexists(made.listener)


@pytest.mark.parametrize("kind", ["file", "dangling", "chain", "fifo"])
def test_no_socket_is_never_pinned(made: SocketDir, kind: str) -> None:
    shared = Path(made.shared)
    if kind == "file":
        (shared / "lsnr.sock").write_text("not a socket")
    elif kind == "dangling":
        os.symlink("phony.sock", shared / "lsnr.sock")
    elif kind == "chain":  # a link to a link to a socket: the target must be the socket itself
        sock = bind(shared / "phony.sock")
        os.symlink("phony.sock", shared / "middle")
        os.symlink("middle", shared / "lsnr.sock")
    else:
        os.mkfifo(shared / "lsnr.sock")
    assert not made.pin()
    assert not os.path.lexists(made.listener)
    if kind == "chain":
        sock.close()


def test_a_shared_dir_swapped_for_a_symlink_is_not_followed(
    made: SocketDir, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with bind(elsewhere / "lsnr.sock"):
        os.rmdir(made.shared)
        os.symlink(elsewhere, made.shared)
        assert not made.pin()


def test_re_pointing_the_listener_after_pinning_changes_nothing(
    made: SocketDir, tmp_path: Path
) -> None:
    shared = Path(made.shared)
    with bind(shared / "phony.sock") as own, bind(tmp_path / "host.sock") as host:
        os.symlink("phony.sock", shared / "lsnr.sock")
        assert made.pin()
        os.symlink(tmp_path / "host.sock", shared / "next")
        os.replace(shared / "next", shared / "lsnr.sock")
        assert reaches(made.listener, own)
        host.settimeout(0)
        with pytest.raises(BlockingIOError):
            host.accept()


def test_a_rebound_listener_refuses(made: SocketDir) -> None:
    shared = Path(made.shared)
    with bind(shared / "lsnr.sock"):
        assert made.pin()
    os.unlink(shared / "lsnr.sock")
    with bind(shared / "lsnr.sock"), socket.socket(socket.AF_UNIX) as client:
        with pytest.raises(ConnectionRefusedError):
            client.connect(made.listener)


def test_a_symlink_swapped_in_while_pinning_is_refused(
    made: SocketDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: after the check, the function renames a symlink over the socket's name; the
    link made is then that symlink, and it is thrown away."""
    shared = Path(made.shared)
    real_link = os.link

    def swap_then_link(*args: Any, **kwargs: Any) -> None:
        os.symlink(tmp_path / "host.sock", shared / "swap")
        os.replace(shared / "swap", shared / "lsnr.sock")
        real_link(*args, **kwargs)

    with bind(shared / "lsnr.sock"), bind(tmp_path / "host.sock"):
        monkeypatch.setattr(os, "link", swap_then_link)
        assert not made.pin()
        assert not os.path.lexists(made.listener)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@needs_root
def test_the_tmpfs_bounds_what_is_written(tmp_path: Path) -> None:
    socket_dir = SocketDir.under(str(tmp_path / "root"))
    socket_dir.make(MIB)
    try:
        assert socket_dir.mounted
        fill_path = Path(socket_dir.shared) / "fill"
        with open(fill_path, "wb") as fill, pytest.raises(OSError) as raised:
            for _ in range(4):
                fill.write(b"x" * MIB)
                fill.flush()
        assert raised.value.errno == errno.ENOSPC
    finally:
        socket_dir.remove()
    assert not os.path.exists(socket_dir.path)
    assert socket_dir.path not in Path("/proc/self/mounts").read_text()


@needs_root
def test_remove_root_unmounts_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    left = [SocketDir.under(str(root)) for _ in range(2)]
    for socket_dir in left:
        socket_dir.make(MIB)
    remove_root(str(root))
    assert not root.exists()
    assert str(root) not in Path("/proc/self/mounts").read_text()


def test_the_output_dir_is_made_only_when_asked_root_s_and_beside_the_shared_dir(
    tmp_path: Path,
) -> None:
    plain = SocketDir(str(tmp_path / "plain"))
    plain.make(0)
    assert not os.path.exists(plain.out)
    made = SocketDir(str(tmp_path / "with"))
    made.make(0, output=True)
    assert stat.S_IMODE(os.stat(made.out).st_mode) == 0o711
    assert os.path.dirname(made.out) == made.path and made.out != made.shared
    made.remove()
    assert not os.path.exists(made.path)
