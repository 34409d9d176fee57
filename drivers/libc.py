"""What the C library gives that Python's standard library does not: mounts and inotify.

Loaded on first use (ctypes costs a few ms that `fnagent run`'s cold format skips). Shared by
the agent's socket dirs and by the one-off run's orphan reaper, which must unmount a socket
dir's tmpfs before it can remove the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
_MNT_DETACH = 2

_libc: ctypes.CDLL | None = None


def load_libc() -> ctypes.CDLL | None:
    """The C library with errno kept, or None when it cannot be loaded."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        try:
            # glibc's soname first: find_library runs ldconfig in a subprocess.
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            try:
                _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            except OSError:
                return None
    return _libc


def _c() -> ctypes.CDLL:
    libc = load_libc()
    if libc is None:
        raise OSError(0, "the C library cannot be loaded to mount")
    return libc


def mount_tmpfs(path: str, flags: int, options: str) -> None:
    """Mount a tmpfs at ``path``; raises OSError (mounting needs CAP_SYS_ADMIN)."""
    if _c().mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options.encode()) != 0:
        import ctypes  # loaded already by load_libc

        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def unmount(path: str) -> None:
    """Lazily unmount ``path`` (a container may still hold its bind of it); quiet when it is
    not a mount point."""
    with contextlib.suppress(OSError):
        _c().umount2(os.fsencode(path), _MNT_DETACH)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it, unmounting first every mount at or under it
    (deepest first). Never raises."""
    here = os.path.realpath(path).rstrip("/")
    for point in sorted(mount_points(), reverse=True):
        if point == here or point.startswith(here + "/"):
            unmount(point)
    shutil.rmtree(path, ignore_errors=True)


def mount_points() -> list[str]:
    """The mount points this process sees (/proc/self/mounts)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return []
    return [_unescape(line.split(" ")[1]) for line in lines if line.count(" ") >= 2]


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field
