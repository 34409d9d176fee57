"""``SyslogReceiver``: a syslog endpoint on 127.0.0.1 for tests, in a thread of its own.

It takes TCP (octet-counted frames, RFC 6587), TLS (the same, given an ``ssl.SSLContext``
holding a certificate) or UDP (a message per datagram) and keeps every message it gets in
``messages``, so a test can poll for what it expects from either an event loop or a thread.
``close()`` (or leaving the ``with``) stops listening and drops every connection: the
endpoint is gone, and a new receiver may take the same port.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from types import TracebackType
from typing import Self

_FRAME = re.compile(rb"(\d{1,9}) ")


class SyslogReceiver:
    def __init__(
        self, transport: str = "tcp", *, port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.transport = transport
        self.messages: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._tls = tls
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self._sock = socket.socket(socket.AF_INET, kind)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._closed = False
        if transport != "udp":
            self._sock.listen(16)
        target = self._datagrams if transport == "udp" else self._accept
        self._thread = threading.Thread(target=target, daemon=True, name="syslogd")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.transport}://127.0.0.1:{self.port}"

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.messages)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            sockets = [self._sock, *self._open]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=5)

    def _keep(self, message: bytes) -> None:
        with self._lock:
            self.messages.append(message)

    def _datagrams(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            if data:
                self._keep(data)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with self._lock:
            self.connections += 1
            self._open.append(conn)
        buffer = b""
        with conn:
            while not self._closed:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while match := _FRAME.match(buffer):
                    end = match.end() + int(match.group(1))
                    if len(buffer) < end:
                        break
                    self._keep(buffer[match.end() : end])
                    buffer = buffer[end:]
