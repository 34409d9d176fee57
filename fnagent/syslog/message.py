"""Syslog destinations and messages: the rules, with no I/O.

An app's ``syslog_url`` is a comma-separated list of ``tcp://``, ``udp://`` or ``tls://``
destinations (``tcp+tls://``, the Docker spelling Fn's documentation uses, means ``tls://``),
each ``host[:port]``; the port defaults to 514 (6514 for TLS, RFC 5425). Each log line becomes
one RFC 5424 message (facility user; severity info for stdout, err for stderr), tagged with
the app, fn and call as RFC 5424 structured data and, in Fn's shape, at the head of the text:

    <14>1 2026-11-30T22:50:19.123456Z host myapp - stdout [fnagent@32473 app_name="myapp"
    func_name="hello" call_id="01J..."] app_name=myapp func_name=hello call_id=01J... the line

(one line on the wire). Over TCP and TLS each message is framed by octet counting (RFC 6587,
RFC 5425: ``LEN SP MSG``); over UDP each message is one datagram (RFC 5426). A message is cut
to ``max_message_bytes(scheme)``: 8 KiB over TCP and TLS, 2 KiB over UDP, the sizes every
receiver should take (RFC 5425 section 4.3.1, RFC 5426 section 3.2).
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fnagent.errors import InvalidInputError

SCHEMES = {"tcp": "tcp", "udp": "udp", "tls": "tls", "tcp+tls": "tls"}
"""The schemes an app may use, and the transport each means."""
DEFAULT_PORTS = {"tcp": 514, "udp": 514, "tls": 6514}
MAX_DESTINATIONS = 8
MAX_STREAM_MESSAGE_BYTES = 8192
MAX_DATAGRAM_BYTES = 2048

FACILITY_USER = 1
SEVERITY = {"stdout": 6, "stderr": 3}
"""Severity by stream: informational for stdout, error for stderr (as Fn does)."""
SD_ID = "fnagent@32473"
"""The structured-data element's id (32473: the enterprise number for examples, RFC 5612)."""
MAX_APP_NAME = 48
MAX_HOSTNAME = 255

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NOT_PRINTABLE_ASCII = re.compile(rb"[^\x21-\x7e]")


@dataclass(frozen=True, order=True)
class Destination:
    """One place an app's lines go: a transport (tcp, udp or tls), a host and a port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_syslog_urls(text: str) -> tuple[Destination, ...]:
    """The destinations of an app's ``syslog_url``, or InvalidInputError (400) saying which
    entry is wrong and why. An empty text has none."""
    if not text.strip():
        return ()
    parts = text.split(",")
    if len(parts) > MAX_DESTINATIONS:
        raise InvalidInputError(
            f'invalid syslog url: "{text}" has {len(parts)} entries: at most '
            f"{MAX_DESTINATIONS} destinations"
        )
    return tuple(_parse_one(part.strip(), text) for part in parts)


def _parse_one(url: str, whole: str) -> Destination:
    def invalid(why: str) -> InvalidInputError:
        return InvalidInputError(f'invalid syslog url: "{url}" {why}')

    if not url:
        raise InvalidInputError(f'invalid syslog url: "{whole}" has an empty entry in the list')
    split = urlsplit(url)
    transport = SCHEMES.get(split.scheme.lower()) if "://" in url else None
    if transport is None:
        raise invalid("invalid scheme, only [tcp, udp, tls, tcp+tls] are supported")
    if split.path or split.query or split.fragment or "@" in split.netloc:
        raise invalid("is host[:port] only: a path, query, fragment or user is not allowed")
    host = split.hostname or ""
    if not host:
        raise invalid("a host is missing")
    try:
        port = split.port
    except ValueError:
        port = 0
    else:
        port = DEFAULT_PORTS[transport] if port is None else port
    if not 0 < port < 65536:
        raise invalid("the port must be a number from 1 to 65535")
    if not _valid_host(host):
        raise invalid(f"invalid host {host!r}: use a DNS name or an IP address")
    return Destination(transport, host, port)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def max_message_bytes(transport: str) -> int:
    return MAX_DATAGRAM_BYTES if transport == "udp" else MAX_STREAM_MESSAGE_BYTES


def format_message(
    line: bytes,
    *,
    stream: str,
    app_name: str,
    fn_name: str,
    call_id: str | None,
    hostname: str,
    timestamp: float,
    max_bytes: int = MAX_STREAM_MESSAGE_BYTES,
) -> bytes:
    """One log line as an RFC 5424 message of at most ``max_bytes`` octets (the line is cut,
    never inside a UTF-8 sequence). ``call_id`` None: printed between calls."""
    tags = [("app_name", app_name), ("func_name", fn_name)]
    if call_id is not None:
        tags.append(("call_id", call_id))
    pri = FACILITY_USER * 8 + SEVERITY.get(stream, SEVERITY["stdout"])
    header = " ".join(
        [
            f"<{pri}>1",
            rfc3339(timestamp),
            _header_field(hostname, MAX_HOSTNAME),
            _header_field(app_name, MAX_APP_NAME),
            "-",
            stream if stream in SEVERITY else "-",
            structured_data(tags),
            " ".join(f"{name}={logfmt_value(value)}" for name, value in tags),
        ]
    ).encode()
    room = max_bytes - len(header) - 1
    text = line.removesuffix(b"\r")
    if len(text) > room:
        text = cut_utf8(text, max(room, 0))
    return header + b" " + text


def frame(message: bytes, transport: str) -> bytes:
    """``message`` as it goes on the wire: octet counting over a stream, alone in a datagram."""
    if transport == "udp":
        return message
    return b"%d %s" % (len(message), message)


def rfc3339(timestamp: float) -> str:
    """UTC with microseconds, as RFC 5424's TIMESTAMP allows (at most 6 fraction digits)."""
    seconds = int(timestamp)
    micros = int(round((timestamp - seconds) * 1_000_000))
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def structured_data(params: list[tuple[str, str]]) -> str:
    """One SD-ELEMENT; in a PARAM-VALUE ``"``, ``\\`` and ``]`` are escaped (RFC 5424 6.3.3)."""
    escaped = " ".join(f'{name}="{_sd_escape(value)}"' for name, value in params)
    return f"[{SD_ID} {escaped}]"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def logfmt_value(value: str) -> str:
    """A value as logfmt writes it: bare unless it holds a space, a quote, ``=`` or nothing."""
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII, no spaces, at most ``limit`` octets, or ``-``."""
    cleaned = _NOT_PRINTABLE_ASCII.sub(b"_", value.encode()).decode()[:limit]
    return cleaned or "-"


def cut_utf8(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes, less an incomplete UTF-8 sequence at the cut."""
    cut = data[:size]
    for back in range(1, min(4, len(cut)) + 1):
        byte = cut[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # a lead byte: is its sequence whole?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                cut = cut[:-back]
            break
    return cut
