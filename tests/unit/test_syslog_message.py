"""Syslog destinations and the RFC 5424 message of a line (fnagent/syslog/message.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnagent.errors import InvalidInputError
from fnagent.syslog.message import (
    MAX_DATAGRAM_BYTES,
    Destination,
    cut_utf8,
    format_message,
    frame,
    logfmt_value,
    max_message_bytes,
    parse_syslog_urls,
    rfc3339,
    structured_data,
)

T = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z


def message(line: bytes = b"hello", **fields: object) -> bytes:
    args: dict[str, object] = {
        "stream": "stdout",
        "app_name": "myapp",
        "fn_name": "hello",
        "call_id": "01CALL",
        "hostname": "agent-1",
        "timestamp": T,
    }
    return format_message(line, **{**args, **fields})  # type: ignore[arg-type]


def test_destinations_default_ports_and_aliases() -> None:
    assert parse_syslog_urls("tcp://logs, udp://10.0.0.1:5514,tls://[::1],tcp+tls://a.b:1") == (
        Destination("tcp", "logs", 514),
        Destination("udp", "10.0.0.1", 5514),
        Destination("tls", "::1", 6514),
        Destination("tls", "a.b", 1),
    )
    assert str(Destination("tls", "::1", 6514)) == "tls://[::1]:6514"
    assert parse_syslog_urls("") == ()


@pytest.mark.parametrize(
    "url", ["unix:///dev/log", "http://l:1", "l:514", "tcp://l:99999", "tcp://-l:1", "tcp://l/x"]
)
def test_bad_destinations_are_400(url: str) -> None:
    with pytest.raises(InvalidInputError, match=f'^invalid syslog url: "{re.escape(url)}" '):
        parse_syslog_urls(url)


def test_message_fields() -> None:
    assert message() == (
        b"<14>1 2023-11-14T22:13:20.250000Z agent-1 myapp - stdout "
        b'[fnagent@32473 app_name="myapp" func_name="hello" call_id="01CALL"] '
        b"app_name=myapp func_name=hello call_id=01CALL hello"
    )
    # stderr is severity err (3); a line between calls has no call id
    assert message(stream="stderr", call_id=None) == (
        b"<11>1 2023-11-14T22:13:20.250000Z agent-1 myapp - stderr "
        b'[fnagent@32473 app_name="myapp" func_name="hello"] '
        b"app_name=myapp func_name=hello hello"
    )


def test_message_keeps_a_line_s_bytes_but_a_carriage_return() -> None:
    assert message(b"caf\xc3\xa9 \x00 \xff\r").endswith(b" caf\xc3\xa9 \x00 \xff")


def test_structured_data_escapes_quote_backslash_and_bracket() -> None:
    assert structured_data([("a", 'x"y\\z]w')]) == '[fnagent@32473 a="x\\"y\\\\z\\]w"]'
    got = message(app_name='a"b]', fn_name="f\\n")
    assert b'app_name="a\\"b\\]" func_name="f\\\\n"' in got
    assert b' app_name="a\\"b]" func_name="f\\\\n" ' in got  # logfmt quotes, ] needs nothing


def test_header_fields_are_printable_ascii() -> None:
    got = message(app_name="ap p\u00e9" + "x" * 100, hostname="")
    header = got.split(b" [", 1)[0].split(b" ")
    assert header[2] == b"-"  # no hostname
    assert header[3] == b"ap_p__" + b"x" * 42  # 48 octets: é is two
    assert logfmt_value("") == '""'
    assert logfmt_value("a b") == '"a b"'


def test_truncation_to_the_bound_never_splits_a_character() -> None:
    big = "é".encode() * 5000
    got = message(big, max_bytes=MAX_DATAGRAM_BYTES)
    assert MAX_DATAGRAM_BYTES - 1 <= len(got) <= MAX_DATAGRAM_BYTES
    got.decode("utf-8")  # whole characters only
    assert len(message(b"x" * 20000)) == max_message_bytes("tcp") == 8192
    assert max_message_bytes("udp") == MAX_DATAGRAM_BYTES


@given(st.binary(max_size=3000), st.integers(min_value=400, max_value=2500))
def test_any_line_fits_its_bound(line: bytes, bound: int) -> None:
    got = message(line.replace(b"\n", b""), max_bytes=bound)  # the router cut it at newlines
    assert len(got) <= bound
    assert b"\n" not in got  # nothing a function prints ends a message early on the wire


def test_framing() -> None:
    assert frame(b"<14>1 x", "tcp") == b"7 <14>1 x"
    assert frame(b"<14>1 x", "tls") == b"7 <14>1 x"
    assert frame(b"<14>1 x", "udp") == b"<14>1 x"


def test_timestamps() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1.9999999) == "1970-01-01T00:00:02.000000Z"


@given(st.text(max_size=50), st.integers(min_value=0, max_value=200))
def test_a_cut_keeps_whole_characters(text: str, size: int) -> None:
    data = text.encode()
    cut = cut_utf8(data, size)
    assert data.startswith(cut) and len(cut) >= min(size, len(data)) - 3
    cut.decode("utf-8")
