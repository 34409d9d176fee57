"""What the agent runs: functions (Fn's model, with its bounds) and calls to them."""

from __future__ import annotations

import functools
import hashlib
import json
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
    secrets: tuple[SecretFile, ...] = ()

    def __post_init__(self) -> None:
        validate_bounds(
            memory_mb=self.memory_mb, timeout_s=self.timeout_s, idle_timeout_s=self.idle_timeout_s
        )
        if self.format not in FORMATS:
            raise InvalidInputError(f"invalid format {self.format!r}: use one of {FORMATS}")
        if not self.image:
            raise InvalidInputError("missing image")

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
    extensions: dict[str, str] = field(default_factory=dict)
    deadline: float = 0.0
    """time.monotonic() after which the call has timed out; 0 = now + the fn's timeout."""

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.fn.timeout_s

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
