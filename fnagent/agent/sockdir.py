"""A container's socket dir, and the one listener the agent will ever connect to in it.

Each http-stream container gets a directory of its own (``SocketDir.path``), on the host, laid
out as::

    <path>/          a tmpfs of FN_IOFS_SIZE_BYTES (0: a plain directory), root's, 0711
    <path>/iofs/     bind-mounted at /tmp/iofs: the function's, where it binds lsnr.sock
    <path>/own/      the agent's alone (0700, never mounted): a hard link to the listener
    <path>/out/      with ``output``: root's, 0711, bind-mounted read-only; the driver's FIFOs
                     for the container's stdout and stderr (drivers/docker/pipes.py)

The function controls everything in ``iofs/``: ``lsnr.sock`` may be a symlink to anywhere, and
may be re-pointed at any moment. So the agent never connects through it. Once, at readiness,
``pin`` resolves ``lsnr.sock`` without following anything out of ``iofs/`` (a symlink counts
only when its target is a plain name in the same directory) and hard-links the socket inode
into ``own/`` as ``lsnr.sock`` (linkat without following a symlink); the link is kept only
when it is a socket. From then on every connect goes to ``own/lsnr.sock``, which the function
cannot change. A hard link cannot cross file systems (nor mounts), so the inode linked is one
the function bound inside its own dir. When the function rebinds, the pinned inode refuses
connections and the container counts as broken, as on any socket error.

The tmpfs bounds what a function can write there (and holds it in memory charged to the
writer's cgroup, not on the host's disk). Mounting needs root (CAP_SYS_ADMIN); when the mount
fails the socket dir cannot be made and ``SocketDirError`` says why and what to set.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat

from drivers.libc import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount_tmpfs, remove_tree, unmount
from fnagent.agent.readiness import LISTENER
from fnagent.errors import SocketDirError

SHARED = "iofs"
OWN = "own"
OUT = "out"
# Inodes cost kernel memory that the size option does not count: bound them too.
IOFS_MAX_INODES = 1024


def _mount_tmpfs(path: str, size_bytes: int) -> None:
    options = f"size={size_bytes},nr_inodes={IOFS_MAX_INODES},mode=0711"
    mount_tmpfs(path, MS_NOSUID | MS_NODEV | MS_NOEXEC, options)


class SocketDir:
    """One container's socket dir (see the module docstring). Making the object does no I/O:
    ``make`` creates the directory, ``remove`` always cleans up."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mounted = False
        self.shared = os.path.join(path, SHARED)
        """The directory mounted into the container."""
        self.own = os.path.join(path, OWN)
        self.listener = os.path.join(self.own, LISTENER)
        """The path the agent connects to (there once ``pin`` returned True)."""
        self.out = os.path.join(path, OUT)
        """The container's output dir (``ContainerTask.output_dir``), made with ``output``.
        Not in ``shared``: the function must not replace the FIFOs, and their writes would
        wake the readiness watch on ``shared``."""

    @classmethod
    def under(cls, root: str, prefix: str = "c-") -> SocketDir:
        # Short: a unix socket's path (``listener``) must stay under 108 bytes.
        return cls(os.path.join(root, prefix + secrets.token_hex(4)))

    def make(self, size_bytes: int, *, output: bool = False) -> None:
        """Create the socket dir, and its parent when missing (someone may have removed it
        while the agent ran). ``size_bytes`` 0 makes a plain directory with no size limit;
        ``output`` also makes ``out``. Raises SocketDirError (and then leaves nothing
        behind)."""
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
            os.mkdir(self.path, 0o711)
        except OSError as exc:
            raise SocketDirError(f"cannot make the socket dir {self.path}: {exc}") from None
        try:
            if size_bytes > 0:
                try:
                    _mount_tmpfs(self.path, size_bytes)
                except OSError as exc:
                    raise SocketDirError(
                        f"cannot mount a {size_bytes}-byte tmpfs for the socket dir {self.path}: "
                        f"{exc.strerror} (mounting needs root; FN_IOFS_SIZE_BYTES=0 uses a plain "
                        "directory without a size limit)"
                    ) from None
                self.mounted = True
            os.mkdir(self.own, 0o700)
            if output:
                os.mkdir(self.out, 0o711)
            os.mkdir(self.shared)
            # The function runs as an unprivileged user and must create its socket here.
            os.chmod(self.shared, 0o777)
        except OSError as exc:
            self.remove()
            raise SocketDirError(f"cannot make the socket dir {self.path}: {exc}") from None
        except BaseException:
            self.remove()
            raise

    def pin(self) -> bool:
        """Hard-link the function's listener socket to ``listener``; True once done.

        False while ``iofs/lsnr.sock`` is missing, not a socket, or a symlink whose target is
        not a plain name in ``iofs/`` naming a socket; never follows anything out of ``iofs/``.
        """
        try:
            directory = os.open(self.shared, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            return self._pin_in(directory)
        finally:
            os.close(directory)

    def _pin_in(self, directory: int) -> bool:
        name = LISTENER
        try:
            found = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if stat.S_ISLNK(found.st_mode):
                name = os.readlink(name, dir_fd=directory)
                if not _plain_name(name):
                    return False
                found = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if not stat.S_ISSOCK(found.st_mode):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listener)
            # follow_symlinks=False: linkat without AT_SYMLINK_FOLLOW. Between the stat and
            # here the function may have swapped `name` for a symlink: then the link made is
            # that symlink, which the check below refuses.
            os.link(name, self.listener, src_dir_fd=directory, follow_symlinks=False)
            pinned = os.lstat(self.listener)
        except OSError:
            return False
        if stat.S_ISSOCK(pinned.st_mode) and pinned.st_dev == found.st_dev:
            return True
        with contextlib.suppress(OSError):
            os.unlink(self.listener)
        return False

    def remove(self) -> None:
        """Unmount and remove the socket dir; idempotent, never raises."""
        if self.mounted:
            unmount(self.path)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..")


def remove_root(root: str) -> None:
    """Remove ``root`` and everything under it, unmounting the socket dirs' tmpfs first (a
    killed agent's leftovers, or this agent's on a clean exit). Never raises."""
    remove_tree(root)
