"""Parsers for the human-written values of flags and settings (memory, CPUs, durations, env).

Each raises ``InvalidInputError`` with a message that names the bad value and the expected form.
"""

from __future__ import annotations

import re

from drivers.errors import InvalidInputError

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_memory(text: str) -> int:
    """Bytes from Docker's memory syntax: ``64m``, ``1g``, ``512k``, ``1.5GiB``, ``1048576``."""
    match = _MEMORY.match(text)
    if not match:
        raise InvalidInputError(
            f"invalid memory {text!r}: use a number with an optional unit b, k, m or g (e.g. 128m)"
        )
    number, unit = match.groups()
    return int(float(number) * _MEMORY_UNITS[unit.lower()])


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
