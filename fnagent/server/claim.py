"""What makes one ``fnagent serve`` the only one for its store and its port: an exclusive lock on
a file beside the store, and the listening socket, both taken before anything is swept.

A second server on the same store (it would serve the first's deleted fns from its own cache)
or on the same address ends at once with one line and touches nothing: the start-up sweep of
leftover containers and socket dirs only runs once both are held. A PostgreSQL store is shared
by design and has no lock: there the address alone is held (serve.store_claim).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fnagent.errors import InstanceInUseError, InvalidInputError


@dataclass
class Claim:
    """The held store lock and the bound, listening socket; ``release`` lets both go."""

    lock_fd: int | None
    sock: socket.socket

    def release(self) -> None:
        self.sock.close()
        if self.lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)


def lock_path_for(store_path: str) -> Path:
    """The lock file of a SQLite store: ``<store>.lock`` beside it."""
    return Path(os.path.abspath(store_path) + ".lock")


def lock_store(store_path: str) -> int:
    """Take the store's exclusive lock (held until the fd closes: the process's end releases it
    too, so a killed server never leaves a stale lock)."""
    path = lock_path_for(store_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InvalidInputError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        store = os.path.abspath(store_path)
        raise InstanceInUseError(
            f"the store {store} is in use by another fnagent serve; "
            "stop it, or pass another --db-url or FN_DB_URL"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, as uvicorn would make it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InstanceInUseError(
                f"{host}:{port} is already in use (another fnagent serve?); pass --port or FN_PORT"
            ) from None
        raise InvalidInputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def claim(store_path: str | None, host: str, port: int) -> Claim:
    """The store's lock (none for a store no other process can open), then the address; on
    failure nothing is held."""
    fd = lock_store(store_path) if store_path is not None else None
    try:
        sock = listen(host, port)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return Claim(lock_fd=fd, sock=sock)
