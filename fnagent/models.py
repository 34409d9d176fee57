"""What the agent runs: functions (Fn's model, with its bounds) and calls to them."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fnagent.bounds import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_IDLE_TIMEOUT_S,
    MAX_MEMORY_MB,
    MAX_TIMEOUT_S,
)
from fnagent.errors import InvalidInputError
from fnagent.ids import new_id

FORMAT_HTTP_STREAM = "http-stream"
FORMAT_COLD = "cold"
FORMATS = (FORMAT_HTTP_STREAM, FORMAT_COLD)

# Per-fn limits a fn asks for in its annotations (so Fn's own `fn` CLI can set them).
MAX_CONCURRENCY_ANNOTATION = "fnagent.io/max-concurrency"
INIT_TIMEOUT_ANNOTATION = "fnagent.io/init-timeout-ms"
MIN_INIT_TIMEOUT_MS = 100
MAX_INIT_TIMEOUT_MS = 5 * 60 * 1000
_DIGITS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, kw_only=True)
class SecretFile:
    """One secret a function's containers get as ``/run/secrets/<name>``. ``digest`` names
    this version of the value (``fnagent.secretbox.digest`` of its sealed form) and goes into
    the fn's version; the value never does, nor into any repr."""

    name: str
    value: bytes = field(repr=False)
    digest: str


@dataclass(frozen=True, kw_only=True)
class Fn:
    """A function as the agent sees it: Fn's fields, app config folded in.

    ``version_key`` hashes everything that changes a container, so a changed function gets
    fresh containers while the old ones drain. Its secrets count by name and digest: a secret
    set again makes a new version, and no value is hashed into it.
    """

    id: str
    name: str
    app_id: str
    app_name: str
    image: str
    format: str = FORMAT_HTTP_STREAM
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus_mcpus: int = 0
    timeout_s: int = DEFAULT_TIMEOUT_S
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S
    app_config: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    syslog_url: str | None = None
    """The app's syslog destinations for the fn's output (fnagent/syslog). Not part of
    ``version_key``: changing it changes no container."""
    secrets: tuple[SecretFile, ...] = ()

    def __post_init__(self) -> None:
        validate_bounds(
            memory_mb=self.memory_mb, timeout_s=self.timeout_s, idle_timeout_s=self.idle_timeout_s
        )
        if self.format not in FORMATS:
            raise InvalidInputError(f"invalid format {self.format!r}: use one of {FORMATS}")
        if not self.image:
            raise InvalidInputError("missing image")
        max_concurrency(self.annotations)
        init_timeout_ms(self.annotations)

    @functools.cached_property
    def max_concurrency(self) -> int | None:
        """At most this many containers of the fn at once (None: no limit)."""
        return max_concurrency(self.annotations)

    @functools.cached_property
    def init_timeout_ms(self) -> int | None:
        """The fn's own start-up timeout (None: FN_HOT_START_TIMEOUT_MSECS)."""
        return init_timeout_ms(self.annotations)

    @functools.cached_property
    def version_key(self) -> str:
        material = json.dumps(
            [
                self.id,
                self.image,
                self.format,
                self.memory_mb,
                self.cpus_mcpus,
                self.timeout_s,
                self.idle_timeout_s,
                dict(self.app_config),
                dict(self.config),
                self.annotations,
            ]
            + [[secret.name, secret.digest] for secret in self.secrets],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:24]


def validate_bounds(*, memory_mb: int, timeout_s: int, idle_timeout_s: int) -> None:
    """Fn's bounds, with messages in Fn's words."""
    if not 0 < memory_mb <= MAX_MEMORY_MB:
        raise InvalidInputError(
            f"memory value is out of range. It should be between 0 and {MAX_MEMORY_MB}"
        )
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInputError(
            f"timeout value is out of range. Sync should be between 0 and {MAX_TIMEOUT_S}"
        )
    if not 0 < idle_timeout_s <= MAX_IDLE_TIMEOUT_S:
        raise InvalidInputError(
            f"idle_timeout value is out of range, it should be between 0 and {MAX_IDLE_TIMEOUT_S}"
        )


def max_concurrency(annotations: Mapping[str, Any]) -> int | None:
    """``fnagent.io/max-concurrency``: an integer >= 1, or None when absent; anything else
    raises InvalidInputError (400)."""
    value = _annotation_int(annotations, MAX_CONCURRENCY_ANNOTATION)
    if value is not None and value < 1:
        raise InvalidInputError(
            f"annotation {MAX_CONCURRENCY_ANNOTATION} must be an integer >= 1 (or a string "
            f"of its digits), not {_shown(annotations[MAX_CONCURRENCY_ANNOTATION])}"
        )
    return value


def init_timeout_ms(annotations: Mapping[str, Any]) -> int | None:
    """``fnagent.io/init-timeout-ms``: an integer from MIN_INIT_TIMEOUT_MS to
    MAX_INIT_TIMEOUT_MS, or None when absent; anything else raises InvalidInputError (400)."""
    value = _annotation_int(annotations, INIT_TIMEOUT_ANNOTATION)
    if value is not None and not MIN_INIT_TIMEOUT_MS <= value <= MAX_INIT_TIMEOUT_MS:
        raise InvalidInputError(
            f"annotation {INIT_TIMEOUT_ANNOTATION} must be an integer from "
            f"{MIN_INIT_TIMEOUT_MS} to {MAX_INIT_TIMEOUT_MS} (milliseconds), not "
            f"{_shown(annotations[INIT_TIMEOUT_ANNOTATION])}"
        )
    return value


def _annotation_int(annotations: Mapping[str, Any], key: str) -> int | None:
    """The annotation as an integer: a JSON integer, or a string of at most 12 digits (the
    `fn` CLI sends a quoted value as a string); None when absent; -1 for anything else."""
    if key not in annotations:
        return None
    value = annotations[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else -1
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return -1


def _shown(value: Any) -> str:
    """The value as JSON, cut short: it is the client's and goes back in a message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(kw_only=True)
class CallRequest:
    """The caller's HTTP request. ``url`` is the full URL the caller used; ``body`` is read
    already (the server caps it at FN_MAX_REQUEST_SIZE)."""

    method: str = "POST"
    url: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(kw_only=True)
class Call:
    """One invocation: a sortable unique id, the fn, the request, and a deadline."""

    fn: Fn
    request: CallRequest = field(default_factory=CallRequest)
    id: str = field(default_factory=new_id)
    trigger: bool = False
    """Came through an HTTP trigger: use the gateway protocol (Fn-Intent: httprequest)."""
    background: bool = False
    """No caller waits for it (a detached call): it starts containers one at a time
    (fnagent/agent/launch.py), not at once as waiting callers do."""
    extensions: dict[str, str] = field(default_factory=dict)
    deadline: float = 0.0
    """time.monotonic() after which the call has timed out; 0 = now + the fn's timeout."""

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.fn.timeout_s

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
