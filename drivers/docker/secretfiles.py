"""A container's secret files on the host: a small tmpfs of its own, bind-mounted read-only at
``/run/secrets`` in that container and in no other.

Layout: ``<root>/`` (root's, 0700: no other host user gets in) holds one ``s-<random>`` mount
point per container with secrets. Each is a tmpfs (nosuid, nodev, noexec; sized to its files)
whose top directory is owned by the task's user with mode 0500, holding one file per secret,
owned by that user, mode 0400. So inside the container only the function's user (and nobody
else in it) reads them, from memory, never from the host's disk or the image. A task that runs
as the image's own user (``user`` None, or a name rather than ``uid[:gid]``) gets files that
are root's and readable by all users of its container (0444 in a 0555 directory): the
container, not the user, is then the boundary.

``remove`` unmounts and deletes (with the container); ``remove_all`` clears a root that a
killed process left (the next start of the same server does it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil

from drivers.errors import SecretFilesError
from drivers.libc import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount_tmpfs, remove_tree, unmount

PAGE = 4096


def _owner(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of a numeric ``uid[:gid]`` user; None otherwise."""
    if not user:
        return None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


class SecretFiles:
    """One container's secret files (see the module docstring). Making the object does no
    I/O: ``make`` mounts and writes, ``remove`` always cleans up."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mounted = False

    @classmethod
    def under(cls, root: str) -> SecretFiles:
        return cls(os.path.join(root, "s-" + secrets.token_hex(6)))

    def make(self, files: dict[str, bytes], user: str | None) -> None:
        """Mount the tmpfs and write ``files`` (names checked by the caller). Raises
        SecretFilesError, leaving nothing behind; its message never holds a value."""
        owner = _owner(user)
        uid, gid = owner or (0, 0)
        top_mode, file_mode = (0o500, 0o400) if owner else (0o555, 0o444)
        size = sum(-(-len(value) // PAGE) * PAGE for value in files.values()) + 2 * PAGE
        options = f"size={size},nr_inodes={len(files) + 8},mode={top_mode:o},uid={uid},gid={gid}"
        root = os.path.dirname(self.path)
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
            os.chmod(root, 0o700)
            os.mkdir(self.path, 0o700)
        except OSError as exc:
            raise SecretFilesError(
                f"cannot make the secret files dir {self.path}: {exc.strerror}"
            ) from None
        try:
            try:
                mount_tmpfs(self.path, MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
            except OSError as exc:
                raise SecretFilesError(
                    f"cannot mount a tmpfs for secret files at {self.path}: {exc.strerror} "
                    "(mounting needs root)"
                ) from None
            self.mounted = True
            for name, value in files.items():
                self._write(name, value, uid, gid, file_mode)
        except OSError as exc:
            self.remove()
            raise SecretFilesError(f"cannot write secret files: {exc.strerror}") from None
        except BaseException:
            self.remove()
            raise

    def _write(self, name: str, value: bytes, uid: int, gid: int, mode: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(self.path, name), flags, mode)
        try:
            view = memoryview(value)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Unmount and remove; idempotent, never raises."""
        if self.mounted:
            unmount(self.path)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


def remove_all(root: str) -> None:
    """Unmount and remove every container's secret files under ``root`` (a killed run's);
    never raises."""
    remove_tree(root)


def remove_root_if_empty(root: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(root)
