"""Clean up after a process that dies without running its own cleanup (SIGKILL, a crash).

A killed process runs no code, and the Docker daemon does not remove a running container when
the client that made it goes away (``AutoRemove`` waits for the container to exit, and a
function may never exit). So ``OrphanReaper.start`` spawns a watcher first, a shell that holds
the read end of a pipe whose only write end is ours: it sees end of file the moment we are
gone, however we went. We name what to remove as we make it (containers by label, host
directories) and say ``done`` once we cleaned up ourselves; a watcher that reaches end of file
without ``done`` runs ``reap`` (Python, only then) on what it was told, and exits.

A shell, not a fork of this process: the watcher lives as long as the run, and a forked copy
would make the run pay a copy-on-write fault for every page it touches meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import docker

from drivers.docker.client import DockerClient
from drivers.docker.freezer import find_freezer
from drivers.libc import remove_tree

# A create that was in flight when the parent died may land a moment later.
SECOND_PASS_DELAY_S = 2.0

# $0 is the Python to reap with; the last line "done" means there is nothing to do.
_WATCHER = """said=$(cat)
case "$said" in done|*"
done") exit 0 ;; esac
exec "$0" -c 'import sys; from drivers.docker.reaper import reap; reap(sys.argv[1])' "$said"
"""


class OrphanReaper:
    """Our end of the watcher: name what to remove, then say ``done``."""

    def __init__(self, write_fd: int, process: subprocess.Popen[bytes]) -> None:
        self._fd: int | None = write_fd
        self.process = process

    @classmethod
    def start(cls, docker_host: str | None) -> OrphanReaper:
        read_fd, write_fd = os.pipe()  # not inheritable: no container process ever holds it
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHER, sys.executable],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                # A watcher holding our stderr would keep whoever reads it waiting.
                stderr=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C and a hang-up reach us only.
                start_new_session=True,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        reaper = cls(write_fd, process)
        if docker_host:
            reaper._say("host", docker_host)
        return reaper

    def remove_labelled(self, label: str) -> None:
        """Remove the containers carrying ``label`` (``name=value``) should we die."""
        self._say("label", label)

    def remove_dir(self, path: str) -> None:
        """Remove the host directory ``path`` (and unmount what is mounted there) should we
        die."""
        self._say("dir", path)

    def done(self) -> None:
        """We cleaned up ourselves: the watcher exits without touching anything. Idempotent."""
        if self._fd is not None:
            os.write(self._fd, b"done\n")
            os.close(self._fd)
            self._fd = None

    def _say(self, kind: str, value: str) -> None:
        if "\n" in value:
            raise ValueError(f"a reaper {kind} cannot hold a newline: {value!r}")
        if self._fd is not None:
            os.write(self._fd, f"{kind} {value}\n".encode())  # short: atomic on a pipe


def reap(said: str) -> None:
    """The watcher's work once its parent died without saying ``done``: ``said`` is the
    lines the parent wrote (``host URL``, ``label name=value``, ``dir PATH``)."""
    entries = [line.partition(" ") for line in said.splitlines()]
    host = next((value for kind, _, value in entries if kind == "host"), None)
    labels = [value for kind, _, value in entries if kind == "label"]
    for kind, _, value in entries:
        if kind == "dir":
            remove_tree(value)  # a socket dir is a tmpfs mount point: unmounted first
    if not labels:
        return
    api = DockerClient(host)._connect()
    try:
        _remove_labelled(api, labels)
        time.sleep(SECOND_PASS_DELAY_S)
        _remove_labelled(api, labels)
    finally:
        api.close()


def _remove_labelled(api: docker.APIClient, labels: list[str]) -> None:
    for label in labels:
        for container in api.containers(all=True, filters={"label": label}):
            _thaw(api, container["Id"])
            try:
                api.remove_container(container["Id"], force=True, v=True)
            except docker.errors.APIError:
                pass  # already gone, or being removed


def _thaw(api: docker.APIClient, container_id: str) -> None:
    """Thaw a container left frozen through its cgroup (Docker does not know it is)."""
    try:
        pid = int(api.inspect_container(container_id)["State"].get("Pid") or 0)
        freezer = find_freezer(pid, container_id)
        if freezer is not None:
            freezer.request(False)
    except (OSError, docker.errors.APIError):
        pass  # gone, or not ours to thaw: the removal says what is wrong
