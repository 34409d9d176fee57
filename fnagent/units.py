"""Parsers for the human-written values of flags and settings (memory, CPUs, durations, env).

Each raises ``InvalidInputError`` with a message that names the bad value and the expected form.
"""

from __future__ import annotations

import re

from fnagent.errors import InvalidInputError

MIB = 1024 * 1024
# Docker refuses a memory limit below 6 MiB; saying so ourselves names the flag and the rule.
MIN_MEMORY_BYTES = 6 * MIB

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?)?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"k": 1024, "m": MIB, "g": 1024 * MIB}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_memory(text: str) -> int:
    """Bytes from the one memory syntax of every command: a bare number is MiB (as in Fn),
    or a number with a unit ``k``, ``m`` or ``g`` (``KiB``, ``MB``, ... too; all are powers of
    1024): ``64``, ``64m``, ``8192k``, ``1.5g``. A limit is always set, at least 6 MiB
    (Docker's floor)."""
    match = _MEMORY.match(text)
    if not match:
        raise InvalidInputError(
            f"invalid memory {text!r}: use MiB (128) or a number with a unit k, m or g "
            "(e.g. 128m, 1g)"
        )
    number, unit = match.groups()
    value = int(float(number) * _MEMORY_UNITS[(unit or "m").lower()])
    if value < MIN_MEMORY_BYTES:
        raise InvalidInputError(f"invalid memory {text!r}: must be at least 6m (Docker's floor)")
    return value


def parse_memory_mb(text: str) -> int:
    """``parse_memory`` for Fn's API, which counts whole MiB."""
    value = parse_memory(text)
    if value % MIB:
        raise InvalidInputError(f"invalid memory {text!r}: Fn's API takes a whole number of MiB")
    return value // MIB


def parse_cpus(text: str) -> int:
    """Milli-CPUs from ``--cpus`` syntax: ``0.5`` or ``2`` CPUs, or ``500m`` milli-CPUs."""
    value = text.strip().lower()
    try:
        mcpus = int(value[:-1]) if value.endswith("m") else round(float(value) * 1000)
    except ValueError:
        raise InvalidInputError(
            f"invalid cpus {text!r}: use a number of CPUs (0.5, 2) or milli-CPUs (500m)"
        ) from None
    if mcpus <= 0:
        raise InvalidInputError(f"invalid cpus {text!r}: must be more than 0")
    return mcpus


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``1.5s``, ``250ms``, ``2m`` or ``1h``."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidInputError(
            f"invalid duration {text!r}: use seconds (30, 1.5s) or a unit ms, s, m, h"
        )
    number, unit = match.groups()
    seconds = float(number) * _DURATION_UNITS[(unit or "s").lower()]
    if seconds <= 0:
        raise InvalidInputError(f"invalid duration {text!r}: must be more than 0")
    return seconds


def parse_env(items: tuple[str, ...] | list[str], host_env: dict[str, str]) -> dict[str, str]:
    """``NAME=value`` pairs; a bare ``NAME`` takes the value from ``host_env`` (as docker run
    does) and is left out when unset there."""
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not _ENV_NAME.match(name):
            raise InvalidInputError(
                f"invalid environment variable {item!r}: the name must match [A-Za-z_][A-Za-z0-9_]*"
            )
        if sep:
            env[name] = value
        elif name in host_env:
            env[name] = host_env[name]
    return env
