"""The parsers of ``FN_*`` settings: one rule per kind of value, for every setting.

An unset or empty variable keeps its default. Anything else must parse, or the setting is
refused with ``InvalidInputError`` naming the variable, its value and the expected form; a
setting is never silently ignored:

- whole numbers: digits, with a lower bound (and an upper one where it matters);
- booleans: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``, any case;
- sizes in bytes: a whole number of bytes (Fn's form) or a number with a unit ``k``, ``m`` or
  ``g`` (powers of 1024; ``KiB``, ``MB``... too): ``1048576``, ``1m``, ``64KiB``;
- durations in milliseconds (the ``*_MSECS`` settings): a whole number of milliseconds (Fn's
  form) or a number with a unit ``ms``, ``s``, ``m``: ``5000``, ``5s``, ``1.5m``;
- real numbers (percentages, weights): a decimal number within bounds, ``inf`` where the upper
  bound allows it;
- CPUs (``FN_DEFAULT_CPUS``): ``--cpus`` syntax, a number of CPUs or milli-CPUs: ``0.5``, ``500m``;
- URLs (``FN_PUBLIC_LB_URL``): an absolute http or https URL without query or fragment;
- lists: words separated by spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from fnagent.errors import InvalidInputError
from fnagent.units import parse_cpus

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
_NUMBER_UNIT = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$", re.IGNORECASE)
_SIZE_UNITS = {
    unit + suffix: 1024.0**power
    for power, unit in enumerate("kmg", start=1)
    for suffix in ("", "b", "ib")
}
_DURATION_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0}
_SIZE_FORM = "a size: use bytes (1048576) or a number with a unit k, m or g (1m)"
_DURATION_FORM = "a duration: use milliseconds (5000) or a number with a unit ms, s or m (5s)"


def _text(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _bounded(name: str, text: str, value: int, minimum: int, maximum: int | None) -> int:
    if value < minimum:
        rule = "must be positive" if minimum == 1 else f"must be at least {minimum}"
        raise InvalidInputError(f"{name}={text}: {rule}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name}={text}: must be at most {maximum}")
    return value


def env_int(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    """A whole number between ``minimum`` and ``maximum``."""
    text = _text(environ, name)
    if not text:
        return default
    if not text.isdigit():
        raise InvalidInputError(f"{name}={text!r} is not a whole number")
    return _bounded(name, text, int(text), minimum, maximum)


def env_optional_int(environ: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """A whole number, or None when unset."""
    return env_int(environ, name, 0, minimum=minimum) if _text(environ, name) else None


def env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    """A number above zero."""
    text = _text(environ, name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{name}={text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise InvalidInputError(f"{name}={text}: must be positive")
    return value


def env_real(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float = float("inf"),
    above_minimum: bool = False,
) -> float:
    """A number (``inf`` too) from ``minimum`` to ``maximum``; above it when ``above_minimum``."""
    text = _text(environ, name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{name}={text!r} is not a number") from None
    low_ok = value > minimum if above_minimum else value >= minimum
    if not (low_ok and value <= maximum):
        low = f"above {minimum:g}" if above_minimum else f"at least {minimum:g}"
        high = "" if maximum == float("inf") else f" and at most {maximum:g}"
        raise InvalidInputError(f"{name}={text}: must be {low}{high}")
    return value


def env_bool(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``; anything else is refused, not read as false."""
    text = _text(environ, name).lower()
    if not text:
        return default
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InvalidInputError(
        f"{name}={_text(environ, name)!r} is not a boolean: use 1, true, yes, on or 0, false,"
        " no, off"
    )


def _scaled(
    environ: Mapping[str, str],
    name: str,
    default: int,
    units: Mapping[str, float],
    form: str,
    minimum: int,
    maximum: int | None,
) -> int:
    """A whole number, or a number with one of ``units`` (name -> factor)."""
    text = _text(environ, name)
    if not text:
        return default
    match = _NUMBER_UNIT.match(text)
    unit = match[2].lower() if match else ""
    if not match or (unit and unit not in units) or (not unit and not match[1].isdigit()):
        raise InvalidInputError(f"{name}={text!r} is not {form}")
    value = round(float(match[1]) * units[unit]) if unit else int(match[1])
    return _bounded(name, text, value, minimum, maximum)


def env_size(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    """Bytes: a whole number, or a number with a unit k, m or g (powers of 1024)."""
    return _scaled(environ, name, default, _SIZE_UNITS, _SIZE_FORM, minimum, maximum)


def env_msecs(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Milliseconds: a whole number, or a number with a unit ms, s or m."""
    return _scaled(environ, name, default, _DURATION_MS, _DURATION_FORM, minimum, None)


def env_words(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Words separated by spaces; () when unset."""
    return tuple(environ.get(name, "").split())


def env_cpus(environ: Mapping[str, str], name: str) -> int:
    """Milli-CPUs in ``--cpus`` syntax (``0.5``, ``500m``); 0 when unset."""
    text = _text(environ, name)
    if not text:
        return 0
    try:
        return parse_cpus(text)
    except InvalidInputError as error:
        raise InvalidInputError(f"{name}={text!r}: {error.message}") from None


def env_base_url(environ: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) URL without query or fragment, without its trailing slash; None
    when unset."""
    text = _text(environ, name)
    if not text:
        return None
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        valid = valid and not (parts.query or parts.fragment)
    except ValueError:  # a bracketed host that is no IPv6 address, a port that is no number
        valid = False
    if not valid:
        raise InvalidInputError(
            f"{name}={text!r} is not a base URL: use http(s)://host[:port][/path]"
        )
    return text.rstrip("/")
