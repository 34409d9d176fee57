"""The wire format of ``POST /v2/run``: a one-off run handed to a running agent.

Both bodies are streams of frames: one kind byte, a 4-byte big-endian payload size, then the
payload. The request body (chunked, sent while the response is read) is one ``REQUEST`` frame
(the run as JSON), then ``STDIN`` frames, then ``STDIN_END``; a ``CANCEL`` frame at any time
asks the agent to stop the run and remove its container. The response body is ``STDOUT`` and
``STDERR`` frames in the order the function wrote them, then one ``RESULT`` frame (JSON: the
process exit code under ``"exit"``, a one-line ``"message"`` to print when there is one, and
``"document"``, ``fnagent run --json``'s document). Standard library only: ``fnagent run``
imports this before it knows whether it will need anything else.
"""

from __future__ import annotations

import json
from typing import Any

REQUEST = b"R"
STDIN = b"I"
STDIN_END = b"E"
CANCEL = b"C"
STDOUT = b"1"
STDERR = b"2"
RESULT = b"X"
KINDS = frozenset((REQUEST, STDIN, STDIN_END, CANCEL, STDOUT, STDERR, RESULT))

HEADER_BYTES = 5
MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest frame either side sends or accepts; output is cut into frames this big."""
MAX_REQUEST_BYTES = 256 * 1024
"""The largest ``REQUEST`` frame an agent reads (image, command, env and headers)."""


class FrameError(ValueError):
    """The other side broke the frame format."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def json_frame(kind: bytes, document: dict[str, Any]) -> bytes:
    return frame(kind, json.dumps(document, separators=(",", ":")).encode())


def frames_of(kind: bytes, data: bytes) -> list[bytes]:
    """``data`` as frames of ``kind``, none larger than MAX_PAYLOAD_BYTES (none for b"")."""
    step = MAX_PAYLOAD_BYTES
    return [frame(kind, data[i : i + step]) for i in range(0, len(data), step)]


class FrameReader:
    """Cuts a byte stream into frames: ``feed`` bytes as they come, then take ``frames()``.

    ``max_payload`` bounds what a peer can make this side hold for one frame.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_BYTES) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes, max_frames: int | None = None) -> list[tuple[bytes, bytes]]:
        """Add ``data``; return the frames now complete, in order, at most ``max_frames`` (the
        rest stay buffered for the next call). FrameError on a bad kind or an oversized
        frame."""
        self._buffer += data
        out: list[tuple[bytes, bytes]] = []
        while len(self._buffer) >= HEADER_BYTES and (max_frames is None or len(out) < max_frames):
            kind = bytes(self._buffer[:1])
            if kind not in KINDS:
                raise FrameError(f"unknown frame kind {kind!r}")
            size = int.from_bytes(self._buffer[1:HEADER_BYTES], "big")
            if size > self.max_payload:
                raise FrameError(f"frame of {size} bytes, over the {self.max_payload} allowed")
            end = HEADER_BYTES + size
            if len(self._buffer) < end:
                break
            out.append((kind, bytes(self._buffer[HEADER_BYTES:end])))
            del self._buffer[:end]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._buffer)


def with_stdout(document: dict[str, Any], output: bytes) -> dict[str, Any]:
    """``fnagent run --json``'s ``document`` with the run's stdout: text when it is UTF-8,
    else base64 under ``stdout_base64``."""
    import base64  # only for output that is not UTF-8

    try:
        return {**document, "stdout": output.decode("utf-8")}
    except UnicodeDecodeError:
        return {**document, "stdout_base64": base64.b64encode(output).decode("ascii")}


def failure_document(message: str) -> dict[str, Any]:
    """``fnagent run --json``'s document when fnagent itself failed and no function ran."""
    return {
        "status": "error",
        "exit_code": None,
        "error": message,
        "http_status": None,
        "timings_ms": {},
        "stats": [],
        "stdout": "",
    }
