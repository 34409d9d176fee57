"""The syslog forwarder against real endpoints on 127.0.0.1 (fnagent/syslog/forwarder.py):
delivery over TCP, UDP and TLS, a bounded buffer that drops and counts, reconnection after
a refusal, idle destinations closed, and a caller that is never held up."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from fnagent.agent.calllogs import LogLine
from fnagent.models import Fn
from fnagent.syslog.forwarder import SyslogForwarder
from fnagent.testing.syslogd import SyslogReceiver
from tests.helpers import poll

pytestmark = pytest.mark.anyio


def fn_for(url: str | None, app_id: str = "app1") -> Fn:
    return Fn(id="fn1", name="hello", app_id=app_id, app_name="myapp", image="img", syslog_url=url)


def line(fn: Fn, data: bytes = b"hi", call_id: str | None = "call1") -> LogLine:
    return LogLine(fn.id, fn.app_id, call_id, "stdout", data, "c1", fn)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def forwarder(**options: Any) -> AsyncIterator[SyslogForwarder]:
    options.setdefault("hostname", "agent-1")
    options.setdefault("backoff", lambda failures: 0.02)
    async with SyslogForwarder(**options) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[SyslogReceiver]:
    with SyslogReceiver("tcp") as endpoint:
        yield endpoint


async def test_lines_reach_a_tcp_endpoint_in_order_and_tagged(receiver: SyslogReceiver) -> None:
    fn = fn_for(receiver.url)
    async with forwarder() as sink:
        for i in range(50):
            sink(line(fn, b"line %d" % i))
        sink(LogLine(fn.id, fn.app_id, None, "stderr", b"between calls", "c1", fn))
        await poll(lambda: sink.sent == {"app1": 51}, "51 lines written")
        await poll(lambda: len(receiver.received()) == 51, "51 lines received")
        assert sink.dropped == {}
    got = receiver.received()
    assert got[0].startswith(b"<14>1 ")
    assert b" agent-1 myapp - stdout [fnagent@32473 " in got[0]
    assert got[0].endswith(b"app_name=myapp func_name=hello call_id=call1 line 0")
    assert [m.rsplit(b" ", 1)[1] for m in got[:50]] == [b"%d" % i for i in range(50)]
    assert got[50].startswith(b"<11>1 ")
    assert got[50].endswith(b"app_name=myapp func_name=hello between calls")


async def test_udp_gets_a_datagram_per_line_and_a_list_gets_every_line() -> None:
    with SyslogReceiver("udp") as udp, SyslogReceiver("tcp") as tcp:
        fn = fn_for(f"{udp.url}, {tcp.url}")
        async with forwarder() as sink:
            sink(line(fn, b"one"))
            sink(line(fn, b"x" * 5000))
            await poll(lambda: len(udp.received()) == 2, "two datagrams")
            await poll(lambda: len(tcp.received()) == 2, "two messages over tcp")
        assert udp.received()[0].endswith(b"call_id=call1 one")
        assert len(udp.received()[1]) == 2048  # a datagram is cut to 2 KiB
        assert len(tcp.received()[1]) > 5000


async def test_a_full_buffer_drops_new_lines_and_counts_them() -> None:
    fn = fn_for(f"tcp://127.0.0.1:{free_port()}")  # refuses: nothing is sent
    async with forwarder(buffer_lines=3) as sink:
        for _ in range(10):
            sink(line(fn))
        assert sink.dropped == {"app1": 7}
        assert "buffered=3" in repr(sink)
    # Closing drops what the refusing endpoint never took, and counts it too.
    assert sink.dropped == {"app1": 10} and sink.sent == {}


async def test_a_refused_endpoint_is_retried_and_gets_the_buffered_lines() -> None:
    port = free_port()
    fn = fn_for(f"tcp://127.0.0.1:{port}")
    async with forwarder() as sink:
        sink(line(fn, b"waited"))
        await poll(lambda: "buffered=1" in repr(sink), "a refused connection, line kept")
        with SyslogReceiver("tcp", port=port) as late:
            got = await poll(late.received, "the buffered line after the endpoint came up")
            assert got[0].endswith(b" waited")
        # The endpoint went away: lines are buffered again (or lost with the write that found
        # it gone, counted), and a new endpoint on the port gets what follows.
        with SyslogReceiver("tcp", port=port) as again:
            for i in range(3):
                sink(line(fn, b"after %d" % i))
            await poll(lambda: any(m.endswith(b"after 2") for m in again.received()), "after")
        await poll(
            lambda: sink.sent["app1"] + sink.dropped.get("app1", 0) == 4, "every line counted"
        )


async def test_a_slow_endpoint_never_holds_the_caller(receiver: SyslogReceiver) -> None:
    # An endpoint that accepts and never reads: the kernel's buffers fill, the sender's write
    # waits, and the lines beyond the buffer are dropped at once: the caller only appends.
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(1)
        port = stalled.getsockname()[1]
        fn = fn_for(f"tcp://127.0.0.1:{port}")
        async with forwarder(buffer_lines=100) as sink:
            for _ in range(2000):
                sink(line(fn, b"y" * 8000))
            assert sink.dropped["app1"] >= 1900
            await poll(lambda: sink.sent.get("app1", 0) > 0, "a first batch written")
            for _ in range(2000):
                sink(line(fn, b"y" * 8000))
            assert "buffered=100" in repr(sink)
            assert sink.dropped["app1"] >= 3800


async def test_idle_destinations_close_and_lines_without_a_url_are_ignored(
    receiver: SyslogReceiver,
) -> None:
    async with forwarder(idle_close_s=0.05) as sink:
        assert sink.wants(fn_for(receiver.url)) and not sink.wants(fn_for(None))
        sink(line(fn_for(None)))
        sink(line(fn_for("unix:///dev/log")))  # stored before the rules: ignored
        assert "senders=0" in repr(sink)
        sink(line(fn_for(receiver.url)))
        await poll(receiver.received, "the line")
        await poll(lambda: "senders=0" in repr(sink), "the idle destination closed")
        # A removed or changed syslog_url leaves nothing open; the next line reconnects.
        sink(line(fn_for(receiver.url)))
        await poll(lambda: len(receiver.received()) == 2, "a line after reopening")
        assert receiver.connections == 2


async def test_each_app_has_its_own_buffer(receiver: SyslogReceiver) -> None:
    refused = f"tcp://127.0.0.1:{free_port()}"
    async with forwarder(buffer_lines=2) as sink:
        for _ in range(5):
            sink(line(fn_for(refused, app_id="noisy")))
        sink(line(fn_for(receiver.url, app_id="quiet")))
        await poll(receiver.received, "the quiet app's line")
        assert sink.dropped == {"noisy": 3}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_verifies_the_endpoint(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    with SyslogReceiver("tcp", tls=server) as endpoint:
        fn = fn_for(f"tls://127.0.0.1:{endpoint.port}")
        trusting = ssl.create_default_context(cafile=str(cert))
        async with forwarder(tls_context=trusting) as sink:
            sink(line(fn, b"secret"))
            got = await poll(endpoint.received, "a line over TLS")
        assert got[0].endswith(b" secret")
        # By default the system's trust store decides: a self-signed endpoint is refused.
        async with forwarder(buffer_lines=5) as sink:
            sink(line(fn, b"never"))
            await poll(lambda: "buffered=1" in repr(sink), "the line held, unverified")
        assert sink.sent == {} and sink.dropped == {"app1": 1}
        assert len(endpoint.received()) == 1
