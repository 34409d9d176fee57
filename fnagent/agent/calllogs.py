"""A hot container's stdout and stderr, cut into the calls it served; capped; logged.

One ``OutputRouter`` per container is its log sink (``router.stdout``, ``router.stderr``). It
cuts each stream into lines and gives each line to a call:

- **Framed** (Fn's FDKs): the container's environment has ``FN_LOGFRAME_NAME`` and
  ``FN_LOGFRAME_HDR`` (``FRAME_ENV``), and each call carries that header (``Fn-Call-Id``), so the
  FDK prints a frame line ``<name>=<call id>`` on both streams as each call starts. Once a
  stream has shown a frame, its lines belong to the call the last frame named, whenever they
  arrive: also a little after the response. A frame is recognised only when it names a call
  this container was given; one naming anything else (a forged frame, or one for a call long
  gone) sends the lines after it to no call, so a function can never write into the log of a
  call it did not serve. Frame lines (and the blank lines the FDKs print around them) are not
  part of any log.
- **Unframed**: a line belongs to the call running when it arrives (between the request and
  the end of the response's settle, see ``needs_settle``); between calls, to no call.

Whether a container frames is known at the end of its first call: until then the lines of that
call are held back; if a frame comes, the lines before it are the container's start-up output
(which Docker delivers late, often during the first call) and belong to no call; if none does,
they are the call's.

Lines keep the order they complete in, across both streams. A line longer than
MAX_LINE_BYTES is cut into pieces, so output without newlines cannot grow memory. Each call's
log is a ``CappedLog`` (FN_MAX_LOG_SIZE_BYTES, then one truncation line). Lines of no call go
to the agent's log through a token bucket per container, so a function printing without end
cannot flood the server's log. Every line, of a call or not, is also handed to the ``sink``
(the agent's follow hub), tagged with its call id and stream, while ``sink_wants`` says someone
wants the fn's lines: with nobody following, no per-line object is built.

The last stderr lines are kept (``stderr_tail``) to explain a container that dies or times out
before it listens.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from fnagent.models import Fn

logger = logging.getLogger("fnagent.calls")

FRAME_NAME = "fnagent_call_id"
"""``FN_LOGFRAME_NAME``: the FDKs print ``<FRAME_NAME>=<call id>`` as each call starts."""
FRAME_HEADER = "Fn-Call-Id"
"""``FN_LOGFRAME_HDR``: the request header whose value the FDKs print in the frame."""
FRAME_ENV = {"FN_LOGFRAME_NAME": FRAME_NAME, "FN_LOGFRAME_HDR": FRAME_HEADER}

TRUNCATED = b"\n[fnagent: log truncated at %d bytes]\n"
DEFAULT_IDLE_LOG_BYTES_PER_S = 64 * 1024
IDLE_LOG_BURST_S = 4
"""The bucket holds this many seconds' worth of the rate."""
DROP_NOTICE_INTERVAL_S = 1.0
MAX_LINE_BYTES = 16 * 1024
"""A partial line is cut here: its pieces are lines of their own."""
OPEN_CALLS = 4
"""A container's finished calls whose logs still take their late framed lines."""
RECENT_LINES = 20
RECENT_BYTES = 4096
"""``stderr_tail`` holds at most RECENT_LINES lines and RECENT_BYTES bytes."""
STDOUT, STDERR = "stdout", "stderr"
SETTLE_QUIET_S = 0.01
FIRST_CALL_QUIET_S = 0.05
"""After a response, output expected is all in once none came for this long (needs_settle).
Measured on a loaded 2-core host: a line printed just before the response arrives up to
~30 ms after it, most within 1 ms."""

_FRAME_PREFIX = FRAME_NAME.encode() + b"="


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a container printed (``data`` without its newline), and whose it is."""

    fn_id: str
    app_id: str
    call_id: str | None
    """None: printed between calls, or after a frame naming no call of this container."""
    stream: str
    data: bytes
    container: str
    fn: Fn | None = None
    """The fn's definition as the router last had it (``OutputRouter.fn``): the app's
    ``syslog_url`` and names for the syslog forwarder."""


LineSink = Callable[[LogLine], None]
SinkWants = Callable[[str, Fn | None], bool]
"""Asked with the fn's id and definition before a line is built for the sink."""


class LineForwarder(Protocol):
    """Where the agent also hands every line of the fns it wants (the syslog forwarder).
    Called on the event loop, on every line: neither method may block or raise."""

    def wants(self, fn: Fn) -> bool:
        """Whether ``fn``'s lines are wanted now."""
        ...

    def __call__(self, line: LogLine, /) -> None: ...


class CappedLog:
    """Keeps the first ``max_bytes`` of what is written, then one truncation line."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = self.max_bytes - self._size
        if room > 0:
            kept = data[:room]
            self._parts.append(kept)
            self._size += len(kept)
        if len(data) > max(room, 0) and not self.truncated:
            self.truncated = True
            self._parts.append(TRUNCATED % self.max_bytes)
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class _Unknown:
    """A frame named no call of this container: the lines after it are nobody's."""


_UNKNOWN = _Unknown()


class _Stream:
    """One of the container's two streams: its partial line and its framing state."""

    def __init__(self, router: OutputRouter, name: str) -> None:
        self._router = router
        self.name = name
        self.partial = b""
        self.framed = False
        """A recognised frame came on this stream: its lines go by frame from now on."""
        self.frame_call: str | _Unknown | None = None
        self.pending_blank = False
        """A blank line held back: it is dropped when a frame follows (the FDKs print one)."""
        self.skip_blank = False
        """The line before was a frame: one blank line after it is the FDK's, dropped."""

    def write(self, data: bytes) -> int:
        self._router._write(self, data)
        return len(data)


class OutputRouter:
    """A container's stdout/stderr sink that cuts the output into its calls (module docstring).

    The agent calls ``begin(call_id, log)`` before it sends a call, and ``end(call_id)`` once
    the response is in and settled; between calls, output goes to the agent's log through a
    token bucket (``rate_bytes_per_s``, holding up to ``burst_bytes``): the excess is dropped,
    handed to ``on_drop`` (a metric), and said in one "container output dropped" line per
    DROP_NOTICE_INTERVAL_S. Output of a call is bounded by the call's ``CappedLog`` instead.
    """

    def __init__(
        self,
        container_name: str,
        fields: dict[str, str],
        *,
        rate_bytes_per_s: int = DEFAULT_IDLE_LOG_BYTES_PER_S,
        burst_bytes: int | None = None,
        on_drop: Callable[[int], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        sink: LineSink | None = None,
        sink_wants: SinkWants | None = None,
    ) -> None:
        self._container = container_name
        self._fields = fields
        self._fn_id = fields.get("fn_id", "")
        self._app_id = fields.get("app_id", "")
        self.stdout = _Stream(self, STDOUT)
        self.stderr = _Stream(self, STDERR)
        self.current: str | None = None
        """The call between its request and its ``end``: unframed lines go to it."""
        self._logs: dict[str, CappedLog] = {}
        """The calls this container was given that still take lines: the current one and up
        to OPEN_CALLS finished ones (oldest first)."""
        self._framed_calls: dict[str, set[str]] = {}
        """Call id -> the streams its frame came on."""
        self._own_output: set[str] = set()
        """Calls that got a line (not a frame) while current."""
        self.chatty = False
        """A line of the container's went to one of its calls: calls are expected to print."""
        self._recent: deque[bytes] = deque(maxlen=RECENT_LINES)
        self._decided = False
        """Whether the container is known to frame or not (module docstring)."""
        self._held: list[tuple[_Stream, bytes]] = []
        self._held_bytes = 0
        self._sink = sink
        self._sink_wants = sink_wants
        self.fn: Fn | None = None
        """The container's fn, set by the agent and kept current by it (an app's syslog_url
        changes without a new container); tagged on each line."""
        self.last_arrival = float("-inf")
        self._arrival: anyio.Event | None = None
        self._rate = rate_bytes_per_s
        self._burst = (
            burst_bytes if burst_bytes is not None else rate_bytes_per_s * IDLE_LOG_BURST_S
        )
        self._tokens = float(self._burst)
        self._on_drop = on_drop
        self._now = now
        self._refilled_at = now()
        self._notice_due = 0.0
        self._unreported = 0

    # -- the agent's side ---------------------------------------------------------------------

    def begin(self, call_id: str, log: CappedLog) -> None:
        """``call_id`` is about to be sent to this container; its lines go to ``log``."""
        self.current = call_id
        self._logs[call_id] = log
        while len(self._logs) > OPEN_CALLS + 1:
            oldest = next(iter(self._logs))
            del self._logs[oldest]
            self._framed_calls.pop(oldest, None)
            self._own_output.discard(oldest)

    def end(self, call_id: str) -> None:
        """The call's response is in: partial lines of unframed streams are its last lines.
        Its log still takes the lines its frames send it (up to OPEN_CALLS later calls)."""
        if self.current != call_id:
            return
        self._decide(framed=False)
        for stream in (self.stdout, self.stderr):
            if not stream.framed:
                if stream.pending_blank:
                    stream.pending_blank = False
                    self._emit_one(stream, b"")
                if stream.partial:
                    data, stream.partial = stream.partial, b""
                    self._emit_one(stream, data)
        self.current = None
        self._own_output.discard(call_id)

    def needs_settle(self, call_id: str, now: float, since: float) -> bool:
        """Whether ``call_id``'s output may still be on its way at ``now``, its response
        having come at ``since`` (Docker hands a container's output over a little after the
        function wrote it, often after the response). Never for a container that has not
        printed in any call (besides frames) since its first: a silent function pays no
        wait; nor once the call's log is full. Otherwise: the container frames and this
        call's frame has not come on every framed stream yet; or output is expected (the call
        printed, or the container printed in an earlier call, or this is its first call) and
        nothing has arrived for SETTLE_QUIET_S (FIRST_CALL_QUIET_S on a container's first
        call: whether it frames is still to be seen) since the response or the last output."""
        if not self.chatty and self._decided:
            return False  # it never printed in a call: nothing to wait for
        log = self._logs.get(call_id)
        if log is None or log.truncated:
            return False  # its log is full: what comes now is between calls (rate-limited)
        seen = self._framed_calls.get(call_id, set())
        for stream in (self.stdout, self.stderr):
            if stream.framed and stream.name not in seen:
                return True
        if not self._decided:
            return now - max(self.last_arrival, since) < FIRST_CALL_QUIET_S
        expected = call_id in self._own_output or self.chatty
        return expected and now - max(self.last_arrival, since) < SETTLE_QUIET_S

    @property
    def frames(self) -> bool:
        """Both streams have shown a frame: every line goes by frame."""
        return self.stdout.framed and self.stderr.framed

    def arrival(self) -> anyio.Event:
        """An event set when the next output arrives."""
        if self._arrival is None:
            self._arrival = anyio.Event()
        return self._arrival

    def stderr_tail(self) -> str:
        """The last stderr lines (at most RECENT_LINES, RECENT_BYTES), newline-terminated."""
        kept: list[bytes] = []
        size = 0
        for line in reversed(self._recent):
            if size + len(line) + 1 > RECENT_BYTES:
                if not kept:  # one line longer than the bound: its end
                    kept.append(line[-(RECENT_BYTES - 1) :])
                break
            kept.append(line)
            size += len(line) + 1
        return "".join(line.decode("utf-8", "replace") + "\n" for line in reversed(kept))

    # -- the container's side -----------------------------------------------------------------

    def _write(self, stream: _Stream, data: bytes) -> None:
        if not data:
            return
        self.last_arrival = self._now()
        if self._arrival is not None:
            event, self._arrival = self._arrival, None
            event.set()
        buffered = stream.partial + data if stream.partial else data
        lines = buffered.split(b"\n")
        stream.partial = lines.pop()
        while len(stream.partial) > MAX_LINE_BYTES:
            lines.append(stream.partial[:MAX_LINE_BYTES])
            stream.partial = stream.partial[MAX_LINE_BYTES:]
        idle: list[bytes] = []
        for line in lines:
            self._line(stream, line, idle)
        if idle:
            self._log_idle(b"".join(idle))

    def _line(self, stream: _Stream, line: bytes, idle: list[bytes]) -> None:
        if line.startswith(_FRAME_PREFIX):
            call_id = line[len(_FRAME_PREFIX) :].strip().decode("ascii", "replace")
            stream.framed = True
            stream.pending_blank = False
            self._decide(framed=True)
            if call_id in self._logs:
                stream.frame_call = call_id
                stream.skip_blank = True
                self._framed_calls.setdefault(call_id, set()).add(stream.name)
                return
            stream.frame_call = _UNKNOWN  # the line itself is shown, as nobody's output
        elif not line:
            if stream.skip_blank:
                stream.skip_blank = False
                return
            if not stream.pending_blank:
                stream.pending_blank = True
                return
            # Two blank lines in a row: the first was the function's own.
        elif stream.pending_blank:
            stream.pending_blank = False
            self._emit(stream, b"", idle)
        stream.skip_blank = False
        self._emit(stream, line, idle)

    def _emit_one(self, stream: _Stream, line: bytes) -> None:
        idle: list[bytes] = []
        self._emit(stream, line, idle)
        if idle:
            self._log_idle(b"".join(idle))

    def _decide(self, *, framed: bool) -> None:
        """The container frames or not: the held lines are start-up output (no call's) or
        the first call's."""
        if self._decided:
            return
        self._decided = True
        held, self._held, self._held_bytes = self._held, [], 0
        idle: list[bytes] = []
        for stream, line in held:
            self._attribute(stream, line, None if framed else self.current, idle)
        if idle:
            self._log_idle(b"".join(idle))

    def _emit(self, stream: _Stream, line: bytes, idle: list[bytes]) -> None:
        if stream.name == STDERR:
            self._recent.append(line[-RECENT_BYTES:])
        call_id: str | None
        if stream.framed:
            owner = stream.frame_call
            call_id = owner if isinstance(owner, str) else None
        else:
            call_id = self.current
            if call_id is not None and not self._decided:
                log = self._logs[call_id]
                if self._held_bytes + len(line) < log.max_bytes:
                    self._held.append((stream, line))
                    self._held_bytes += len(line) + 1
                    self._own_output.add(call_id)
                    self.chatty = True
                    return
                self._decide(framed=False)  # so much output: no FDK prints this before a frame
        self._attribute(stream, line, call_id, idle)

    def _attribute(
        self, stream: _Stream, line: bytes, call_id: str | None, idle: list[bytes]
    ) -> None:
        log = self._logs.get(call_id) if call_id is not None else None
        if log is None or call_id is None:
            call_id = None
            idle.append(line + b"\n")
        else:
            log.write(line + b"\n")
            self.chatty = True
            if call_id == self.current:
                self._own_output.add(call_id)
        if self._sink is not None and (
            self._sink_wants is None or self._sink_wants(self._fn_id, self.fn)
        ):
            self._sink(
                LogLine(
                    fn_id=self._fn_id,
                    app_id=self._app_id,
                    call_id=call_id,
                    stream=stream.name,
                    data=line,
                    container=self._container,
                    fn=self.fn,
                )
            )

    def _log_idle(self, data: bytes) -> None:
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        kept = min(len(data), int(self._tokens))
        self._tokens -= kept
        if kept:
            logger.info(
                "container output",
                extra={
                    **self._fields,
                    "container": self._container,
                    "output": data[:kept].decode("utf-8", "replace"),
                },
            )
        if kept < len(data):
            self._dropped(len(data) - kept, now)

    def _dropped(self, size: int, now: float) -> None:
        self._unreported += size
        if self._on_drop is not None:
            self._on_drop(size)
        if now < self._notice_due:
            return
        self._notice_due = now + DROP_NOTICE_INTERVAL_S
        logger.warning(
            "container output dropped",
            extra={
                **self._fields,
                "container": self._container,
                "dropped_bytes": self._unreported,
                "limit_bytes_per_s": self._rate,
            },
        )
        self._unreported = 0


def log_call(call_id: str, fn_id: str, app_id: str, status: int, output: bytes) -> None:
    """One JSON line for a finished call, with its output."""
    logger.info(
        "call finished",
        extra={
            "call_id": call_id,
            "fn_id": fn_id,
            "app_id": app_id,
            "status": status,
            "output": output.decode("utf-8", "replace"),
        },
    )
