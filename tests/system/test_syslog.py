"""An app's syslog_url with `fnagent serve` and real containers: receivers on 127.0.0.1 get
every line fn-test prints, tagged with the app, fn and call; a change or removal applies
without a restart; and a gone, refusing or stalled endpoint fails and slows no call."""

from __future__ import annotations

import socket
from typing import Any

from fnagent.testing.syslogd import SyslogReceiver
from tests.helpers import wait_for
from tests.system.helpers import deploy, free_port, invoke
from tests.system.server import Server


def set_syslog(server: Server, fn: dict[str, Any], url: str) -> None:
    answer = server.request("PUT", f"/v2/apps/{fn['app_id']}", {"syslog_url": url})
    assert answer.status == 200, answer.body


def say(server: Server, fn: dict[str, Any], **keys: str) -> str:
    """A call that prints ``keys`` (fn-test's stdout/stderr) and answers a second later, so
    its output arrives while the call runs and is tagged with it; its call id."""
    answer = invoke(server, fn, {**keys, "sleep_ms": 1000})
    assert answer.status == 200, answer.body
    return answer.headers["fn-call-id"]


def lines_of(receiver: SyslogReceiver, call_id: str) -> list[bytes]:
    return [m for m in receiver.received() if f"call_id={call_id} ".encode() in m]


def metric(server: Server, name: str, app_id: str) -> float:
    for row in server.request("GET", "/metrics").body.decode().splitlines():
        if row.startswith(name) and f'app_id="{app_id}"' in row:
            return float(row.split()[-1])
    return 0.0


def test_tcp_and_udp_receivers_get_each_line_tagged(server: Server) -> None:
    with SyslogReceiver("tcp") as tcp, SyslogReceiver("udp") as udp:
        fn = deploy(server, app="logged", fn="talker", timeout=30)
        set_syslog(server, fn, f"{tcp.url},{udp.url}")
        call_id = say(server, fn, stdout="to out\nsecond", stderr="to err")
        for receiver in (tcp, udp):
            wait_for(lambda: len(lines_of(receiver, call_id)) == 3, "three lines")  # noqa: B023
            got = sorted(lines_of(receiver, call_id))
            tags = f"app_name=logged func_name=talker call_id={call_id}".encode()
            assert [m.split(b" ", 1)[0] for m in got] == [b"<11>1", b"<14>1", b"<14>1"]
            assert [m.rsplit(tags + b" ", 1)[1] for m in got] == [b"to err", b"to out", b"second"]
            assert all(
                b" logged - " in m
                and f'[fnagent@32473 app_name="logged" func_name="talker" call_id="{call_id}"]'
                in m.decode()
                for m in got
            )
        wait_for(
            lambda: metric(server, "fnagent_syslog_sent_lines_total", fn["app_id"]) == 6,
            "six lines counted as sent",
        )


def test_a_changed_or_removed_syslog_url_applies_at_once(server: Server) -> None:
    with SyslogReceiver("tcp") as first, SyslogReceiver("tcp") as second:
        fn = deploy(server, app="moving", fn="talker", timeout=30)
        set_syslog(server, fn, first.url)
        one = say(server, fn, stdout="one")
        wait_for(lambda: lines_of(first, one), "the first call's line at the first receiver")
        set_syslog(server, fn, second.url)  # the same hot container serves on
        two = say(server, fn, stdout="two")
        wait_for(lambda: lines_of(second, two), "the second call's line at the second receiver")
        set_syslog(server, fn, "")
        three = say(server, fn, stdout="three")
        # A last call to a receiver: once its line is in, the one before would have been too.
        with SyslogReceiver("tcp") as witness:
            set_syslog(server, fn, witness.url)
            four = say(server, fn, stdout="four")
            wait_for(lambda: lines_of(witness, four), "the last call's line")
        for receiver in (first, second, witness):
            assert not lines_of(receiver, three)
        assert not lines_of(first, two)
        assert len(first.received()) == 1 and len(second.received()) == 1


def test_calls_answer_200_when_the_endpoints_are_gone_refusing_or_stalled(
    server: Server,
) -> None:
    with SyslogReceiver("tcp") as tcp_gone, SyslogReceiver("udp") as udp_gone:
        fn = deploy(server, app="lonely", fn="talker", timeout=30)
        set_syslog(server, fn, f"{tcp_gone.url},{udp_gone.url}")
        heard = say(server, fn, stdout="heard")
        wait_for(lambda: lines_of(tcp_gone, heard), "a line heard")
        wait_for(lambda: lines_of(udp_gone, heard), "a datagram heard")
    # Both receivers are gone now (closed); add one that refuses and one that never reads.
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(1)
        urls = [
            tcp_gone.url,
            udp_gone.url,
            f"tcp://127.0.0.1:{free_port()}",
            f"tcp://127.0.0.1:{stalled.getsockname()[1]}",
        ]
        set_syslog(server, fn, ",".join(urls))
        for i in range(30):
            many = "\n".join(f"call {i} line {j} " + "x" * 100 for j in range(50))
            answer = invoke(server, fn, {"stdout": many, "stderr": "e"})
            assert answer.status == 200, answer.body
        # 1,530 lines for endpoints that take none: past the 1,000 a destination buffers, they
        # are dropped and counted, never waited for. (A gone UDP endpoint loses them unseen.)
        wait_for(
            lambda: metric(server, "fnagent_syslog_dropped_lines_total", fn["app_id"]) > 0,
            "dropped lines counted",
            timeout_s=20,
        )
        assert invoke(server, fn, {"stdout": "still"}).status == 200
