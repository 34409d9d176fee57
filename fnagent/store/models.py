"""The registry's records (apps, fns, triggers) and Fn's rules for them, without I/O.

Records are frozen dataclasses; ``to_json()`` gives Fn's v2 JSON. ``*_from_body`` read a POST
body (JSON as sent: any value of any type) into a validated new record, refusing an ``id`` as
Fn does; ``new_*`` are the same rules over fields. ``apply_*_patch`` merge a PUT body into a
record the way Fn's ``Update`` methods do: a field absent, null or zero in the body is left as
is, ``config`` and ``annotations`` merge key by key, and ``updated_at`` moves only when
something changed. ``clamp_per_page`` and the cursors are the paging rules every list follows.

These are the only checks a body gets: the server passes bodies through and renders the
errors, so every backend of the store (``fnagent.store.base.Store``) answers the same.

Fn's messages and statuses are matched, from fnproject/fn ``api/models`` (app.go, fn.go,
trigger.go, annotations.go, error.go), ``api/datastore/sql/sql.go`` and ``api/server/*_test.go``.
Where this store differs from Fn, on purpose:

- Bounds use Fn v2's fn messages ("timeout value is out of range, must be between 0 and 300");
  ``fnagent.models.validate_bounds`` keeps the older route wording, so it is not reused here.
- Name lengths are counted in UTF-8 bytes like Go's ``len``; the limit is error.go's 255.
- ``image`` must also parse as an image reference (Fn only requires it non-empty); neither it
  nor ``syslog_url`` may hold a NUL (no registry or syslog server takes one, and PostgreSQL's
  text cannot hold it).
- ``config`` keys become environment variables, so they must be non-empty and hold no ``=`` or
  NUL (Fn checks nothing); a value of the wrong JSON type gives "Invalid JSON: ..." (Fn's
  ``ErrInvalidJSON`` text, with the field named). Keys are at most 256 bytes, values 64 KiB,
  one record's config 256 KiB in all (Fn has no limit; beyond Linux's, a container cannot
  start).
- A trigger ``source`` is a path (Fn only wants a leading ``/``): segments of letters, digits
  and RFC 3986's other path characters (``-._~!$&'()*+,;=:@``), no ``.``/``..`` segment, no
  ``%``, ``?``, ``#``, spaces or control characters, since it is matched against the decoded
  request path and travels in the function's request headers.
- A fn's annotations ``fnagent.io/max-concurrency`` (an integer >= 1) and
  ``fnagent.io/init-timeout-ms`` (100 to 300000) are ours, checked on create and update: a
  JSON integer or a string of its digits, else 400 naming the annotation
  (``validate_fn_annotations``). An app or trigger may carry them as plain annotations.
- A fn's ``name``/``app_id`` that differs in a PUT body is refused with Fn's
  ``ErrFnsInvalidFieldChange`` (Fn's SQL store silently ignores them).
- A trigger's ``app_id``, ``fn_id`` and ``type`` cannot change ("Trigger app_id, fn_id and type
  cannot be modified", ours: Fn copies ``fn_id`` without checking the fn's app). Its ``name`` and
  ``source`` can, as in Fn.
- Trigger names are unique per app (Fn: per app and fn), so a name cursor pages exactly.
- A fn created with an explicit ``shape`` keeps it (Fn always copies the app's shape); without
  one it inherits the app's. ``shape`` in a PUT body is ignored, as in Fn.
- Lists (sqlite.py): the last page has no ``next_cursor`` (Fn gives one whenever a page is
  full, then an empty page); a cursor we did not issue is 400 "invalid cursor ..." (Fn: 500).

As in Fn, an app rename is 409 (``ErrAppsNameImmutable``), not 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from drivers.images import parse_image
from fnagent.bounds import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_IDLE_TIMEOUT_S,
    MAX_MEMORY_MB,
    MAX_TIMEOUT_S,
)
from fnagent.errors import ConflictError, InvalidInputError
from fnagent.models import init_timeout_ms, max_concurrency
from fnagent.syslog.message import parse_syslog_urls

# Fn's error.go: MaxLengthAppName / MaxLengthFnName / MaxLengthTriggerName.
MAX_NAME_BYTES = 255
MAX_ANNOTATION_KEY_BYTES = 128
MAX_ANNOTATION_VALUE_BYTES = 512
MAX_ANNOTATION_KEYS = 100
# Ours (Fn bounds no config): each entry becomes one "KEY=value" environment string, which
# Linux caps at 128 KiB (MAX_ARG_STRLEN), and all of them share the exec's argument space
# (a quarter of the stack limit, 2 MiB by default) with the app's config, so the app's and
# the fn's config together stay well inside it.
MAX_CONFIG_KEY_BYTES = 256
MAX_CONFIG_VALUE_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 256 * 1024

TRIGGER_TYPE_HTTP = "http"
TRIGGER_TYPES = (TRIGGER_TYPE_HTTP,)

SHAPE_GENERIC_X86 = "GENERIC_X86"
SHAPES = (SHAPE_GENERIC_X86, "GENERIC_ARM", "GENERIC_X86_ARM")
DEFAULT_SHAPE = SHAPE_GENERIC_X86


# Apps (app.go; "Missing Name" is error.go's ErrMissingName, which App.ValidateName returns).
MSG_APP_MISSING_NAME = "Missing Name"
MSG_APP_NAME_TOO_LONG = f"App name must be {MAX_NAME_BYTES} characters or less"
MSG_APP_INVALID_NAME = "Invalid app name"
MSG_APP_EXISTS = "App already exists"  # 409
MSG_APP_NOT_FOUND = "App not found"  # 404
MSG_APP_NAME_IMMUTABLE = "Could not update - name is immutable"  # 409 in Fn
MSG_APP_ID_MISMATCH = "App ID in path does not match ID in body"
MSG_APP_INVALID_SHAPE = "Invalid app shape"
# A create body that carries an id (Fn's ErrAppIDProvided, ErrFnsIDProvided,
# ErrTriggerIDProvided): ids are the store's to assign.
MSG_APP_ID_PROVIDED = "App ID cannot be supplied on create"
MSG_FN_ID_PROVIDED = "ID cannot be provided for Fn creation"
MSG_TRIGGER_ID_PROVIDED = "ID cannot be provided for Trigger creation"
# Fns (fn.go, error.go's ErrInvalidMemory).
MSG_FN_MISSING_APP_ID = "Missing AppID on Fn"
MSG_FN_MISSING_NAME = "Missing Fn name"
MSG_FN_NAME_TOO_LONG = f"Fn name must be {MAX_NAME_BYTES} characters or less"
MSG_FN_INVALID_NAME = "name must be a valid string"
MSG_FN_MISSING_IMAGE = "Missing image on Fn"
MSG_FN_INVALID_TIMEOUT = f"timeout value is out of range, must be between 0 and {MAX_TIMEOUT_S}"
MSG_FN_INVALID_IDLE_TIMEOUT = (
    f"idle_timeout value is out of range, must be between 0 and {MAX_IDLE_TIMEOUT_S}"
)
MSG_FN_INVALID_MEMORY = f"memory value is out of range. It should be between 0 and {MAX_MEMORY_MB}"
MSG_FN_NOT_FOUND = "Fn not found"  # 404
MSG_FN_EXISTS = "Fn with specified name already exists"  # 409
MSG_FN_ID_MISMATCH = "Fn ID in path does not match that in body"
MSG_FN_FIELD_CHANGE = "Fn names and IDs cannot be modified"
# Triggers (trigger.go).
MSG_TRIGGER_MISSING_APP_ID = "Missing App ID on Trigger"
MSG_TRIGGER_MISSING_NAME = "Missing name on Trigger"
MSG_TRIGGER_NAME_TOO_LONG = f"Trigger name must be {MAX_NAME_BYTES} characters or less"
MSG_TRIGGER_INVALID_NAME = "Invalid name for Trigger"
MSG_TRIGGER_MISSING_FN_ID = "Missing Fn ID on Trigger"
MSG_TRIGGER_FN_NOT_IN_APP = "Invalid Fn ID - not owned by specified app"
MSG_TRIGGER_TYPE_UNKNOWN = "Trigger Type Not Supported"
MSG_TRIGGER_MISSING_SOURCE = "Missing Trigger Source"
MSG_TRIGGER_SOURCE_PREFIX = "Missing Trigger Source Prefix '/'"
MSG_TRIGGER_INVALID_SOURCE = (  # ours
    "Invalid Trigger Source: a path of letters, digits and -._~!$&'()*+,;=:@ between '/', "
    "without '.' or '..' segments"
)
MSG_TRIGGER_NOT_FOUND = "Trigger not found"  # 404
MSG_TRIGGER_EXISTS = "Trigger already exists"  # 409
MSG_TRIGGER_SOURCE_EXISTS = "Trigger with the same type and source exists on this app"  # 409
MSG_TRIGGER_ID_MISMATCH = "ID in path does not match ID in body"
MSG_TRIGGER_FIELD_CHANGE = "Trigger app_id, fn_id and type cannot be modified"  # ours
# Annotations (error.go).
MSG_ANNOTATION_KEY = (
    "Invalid annotation key, annotation keys must be non-empty ascii strings excluding whitespace"
)
MSG_ANNOTATION_KEY_LENGTH = (
    "Invalid annotation key length, annotation keys may not be larger than "
    f"{MAX_ANNOTATION_KEY_BYTES} bytes"
)
MSG_ANNOTATION_VALUE = (
    "Invalid annotation value, annotation values may only be non-empty strings, numbers, "
    "objects, or arrays"
)
MSG_ANNOTATION_VALUE_LENGTH = (
    "Invalid annotation value length, annotation values may not be larger than "
    f"{MAX_ANNOTATION_VALUE_BYTES} bytes when serialized as JSON"
)
MSG_TOO_MANY_ANNOTATIONS = (
    "Invalid annotation change, new key(s) exceed maximum permitted number of annotations keys "
    f"({MAX_ANNOTATION_KEYS})"
)
MSG_INVALID_JSON = "Invalid JSON"

# annotations.go's validKeyRegex: printable ASCII without the space.
_ANNOTATION_KEY = re.compile(r"[!-~]+")
_SOURCE_ASCII = frozenset("-._~!$&'()*+,;=:@/")


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, like Fn's strfmt.DateTime."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True, kw_only=True)
class App:
    id: str
    name: str
    config: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    syslog_url: str | None = None
    shape: str | None = DEFAULT_SHAPE
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Fn's App JSON: empty ``config``/``annotations`` and a null ``syslog_url`` are
        omitted (Go's omitempty)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.config:
            out["config"] = dict(self.config)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.syslog_url is not None:
            out["syslog_url"] = self.syslog_url
        out["shape"] = self.shape or ""
        out["created_at"] = format_timestamp(self.created_at)
        out["updated_at"] = format_timestamp(self.updated_at)
        return out


@dataclass(frozen=True, kw_only=True)
class FnRecord:
    """A function as registered (Fn's ``Fn``); ``memory`` in MiB, timeouts in seconds."""

    id: str
    name: str
    app_id: str
    image: str
    memory: int = DEFAULT_MEMORY_MB
    timeout: int = DEFAULT_TIMEOUT_S
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT_S
    config: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    shape: str | None = None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Fn's Fn JSON: ``config`` always present, empty ``annotations`` omitted."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "app_id": self.app_id,
            "image": self.image,
            "memory": self.memory,
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "config": dict(self.config),
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.shape:
            out["shape"] = self.shape
        out["created_at"] = format_timestamp(self.created_at)
        out["updated_at"] = format_timestamp(self.updated_at)
        return out


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """Binds ``source`` (a path starting with ``/``) of ``type`` to a fn of the app."""

    id: str
    name: str
    app_id: str
    fn_id: str
    type: str = TRIGGER_TYPE_HTTP
    source: str
    annotations: dict[str, Any] = field(default_factory=dict)
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Fn's Trigger JSON: empty ``annotations`` omitted."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "app_id": self.app_id,
            "fn_id": self.fn_id,
            "type": self.type,
            "source": self.source,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        out["created_at"] = format_timestamp(self.created_at)
        out["updated_at"] = format_timestamp(self.updated_at)
        return out


# --- paging ---------------------------------------------------------------------------------

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def clamp_per_page(per_page: int | None) -> int:
    """Fn's pageParamsV2: above 100 is 100; zero, negative or missing is 30."""
    if per_page is None or per_page <= 0:
        return DEFAULT_PER_PAGE
    return min(per_page, MAX_PER_PAGE)


def encode_cursor(name: str) -> str:
    """Fn's cursor: the last name on the page, base64 URL-safe without padding."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The name a cursor stands for; InvalidInputError for anything we did not hand out
    (Fn answers 500 there), such as one holding NUL, which no stored name or id does."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        name = raw.decode()
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"invalid cursor {cursor!r}") from None
    if "\x00" in name:
        raise InvalidInputError(f"invalid cursor {cursor!r}")
    return name


# --- field validation ---------------------------------------------------------------------


def _check_name(name: object, *, missing: str, too_long: str, invalid: str) -> str:
    """Fn's ValidateName: non-empty, at most 255 bytes, unicode letters, digits, ``_``, ``-``."""
    if not isinstance(name, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: name must be a string")
    if not name:
        raise InvalidInputError(missing)
    # Go's len() counts bytes; surrogatepass so a lone surrogate is refused as a character.
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidInputError(too_long)
    for char in name:
        # unicode.IsLetter / unicode.IsNumber are the L* and N* categories.
        if char not in "_-" and unicodedata.category(char)[0] not in "LN":
            raise InvalidInputError(invalid)
    return name


def validate_app_name(name: object) -> str:
    return _check_name(
        name,
        missing=MSG_APP_MISSING_NAME,
        too_long=MSG_APP_NAME_TOO_LONG,
        invalid=MSG_APP_INVALID_NAME,
    )


def validate_fn_name(name: object) -> str:
    return _check_name(
        name,
        missing=MSG_FN_MISSING_NAME,
        too_long=MSG_FN_NAME_TOO_LONG,
        invalid=MSG_FN_INVALID_NAME,
    )


def validate_trigger_name(name: object) -> str:
    return _check_name(
        name,
        missing=MSG_TRIGGER_MISSING_NAME,
        too_long=MSG_TRIGGER_NAME_TOO_LONG,
        invalid=MSG_TRIGGER_INVALID_NAME,
    )


def validate_image(image: object) -> str:
    if image is None or image == "":
        raise InvalidInputError(MSG_FN_MISSING_IMAGE)
    if not isinstance(image, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: image must be a string")
    if "\x00" in image:  # no registry takes it, and PostgreSQL's text cannot hold it
        raise InvalidInputError(f"invalid image reference {image!r}: NUL is not allowed")
    parse_image(image)
    return image


def _is_int(value: object) -> bool:
    # bool is an int in Python, never in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def validate_fn_resources(*, memory: object, timeout: object, idle_timeout: object) -> None:
    """Fn's Fn.Validate bounds, in Fn's order (timeout, idle_timeout, memory), after defaults."""
    for name, value in (("memory", memory), ("timeout", timeout), ("idle_timeout", idle_timeout)):
        if not _is_int(value):
            raise InvalidInputError(f"{MSG_INVALID_JSON}: {name} must be an integer")
    assert isinstance(memory, int) and isinstance(timeout, int) and isinstance(idle_timeout, int)
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise InvalidInputError(MSG_FN_INVALID_TIMEOUT)
    if not 0 < idle_timeout <= MAX_IDLE_TIMEOUT_S:
        raise InvalidInputError(MSG_FN_INVALID_IDLE_TIMEOUT)
    if not 0 < memory <= MAX_MEMORY_MB:
        raise InvalidInputError(MSG_FN_INVALID_MEMORY)


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInputError(f"{MSG_INVALID_JSON}: {what} is not valid Unicode") from None


def validate_config(config: Mapping[str, str]) -> dict[str, str]:
    """Ours (Fn checks nothing): keys become env var names for the container, and every entry
    must fit in the environment a container is started with (the MAX_CONFIG_* bounds)."""
    total = 0
    for key, value in config.items():
        if not key or "=" in key or "\x00" in key:
            raise InvalidInputError(
                f"Invalid config key {key!r}: config keys become environment variable names "
                "and must be non-empty, without '=' or NUL"
            )
        key_size = _utf8_size(key, "a config key")
        if key_size > MAX_CONFIG_KEY_BYTES:
            raise InvalidInputError(
                f"Invalid config key {key[:32]!r}...: config keys may not be larger than "
                f"{MAX_CONFIG_KEY_BYTES} bytes"
            )
        if "\x00" in value:
            raise InvalidInputError(f"Invalid config value for {key!r}: NUL is not allowed")
        value_size = _utf8_size(value, f"the config value of {key!r}")
        if value_size > MAX_CONFIG_VALUE_BYTES:
            raise InvalidInputError(
                f"Invalid config value for {key!r}: config values may not be larger than "
                f"{MAX_CONFIG_VALUE_BYTES} bytes"
            )
        total += key_size + value_size
    if total > MAX_CONFIG_BYTES:
        raise InvalidInputError(
            f"Invalid config: keys and values together may not be larger than "
            f"{MAX_CONFIG_BYTES} bytes"
        )
    return dict(config)


def _config_object(value: object, name: str = "config") -> dict[str, str] | None:
    """A JSON ``config`` object as sent; None (absent or null) means "no change"."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: {name} must be an object of strings")
    return dict(value)


def _annotation_size(value: Any) -> int | None:
    """Bytes of the compact JSON form, or None when the value is not JSON at all."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return len(text.encode("utf-8", "surrogatepass"))


def _is_empty_annotation(value: Any) -> bool:
    # annotations.go's isEmptyValue: the JSON text is "" or null.
    return value is None or value == ""


def validate_annotations(annotations: Mapping[str, Any]) -> dict[str, Any]:
    """Fn's Annotations.Validate: each key, then each value, then the key count."""
    for key, value in annotations.items():
        if not isinstance(key, str) or not _ANNOTATION_KEY.fullmatch(key):
            raise InvalidInputError(MSG_ANNOTATION_KEY)
        if len(key.encode()) > MAX_ANNOTATION_KEY_BYTES:
            raise InvalidInputError(MSG_ANNOTATION_KEY_LENGTH)
        size = _annotation_size(value)
        if size is None or _is_empty_annotation(value):
            raise InvalidInputError(MSG_ANNOTATION_VALUE)
        if size > MAX_ANNOTATION_VALUE_BYTES:
            raise InvalidInputError(MSG_ANNOTATION_VALUE_LENGTH)
    if len(annotations) > MAX_ANNOTATION_KEYS:
        raise InvalidInputError(MSG_TOO_MANY_ANNOTATIONS)
    return dict(annotations)


def validate_fn_annotations(annotations: Mapping[str, Any]) -> dict[str, Any]:
    """Fn's rules (``validate_annotations``), then ours for the keys a fn may set to ask for
    a limit: ``fnagent.io/max-concurrency`` (an integer >= 1) and ``fnagent.io/init-timeout-ms``
    (100 to 300000). Their rules live with the agent's model (``fnagent.models``), which
    refuses a fn that breaks them, so a stored fn always passes them."""
    checked = validate_annotations(annotations)
    max_concurrency(checked)
    init_timeout_ms(checked)
    return checked


def _annotations_object(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: annotations must be an object")
    return dict(value)


def merge_config(current: Mapping[str, str], patch: Mapping[str, str] | None) -> dict[str, str]:
    """Fn's config merge: a key set to "" is deleted, any other value replaces or adds."""
    merged = dict(current)
    for key, value in (patch or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merge_annotations(
    current: Mapping[str, Any], patch: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Fn's Annotations.MergeChange: a key set to "" or null is deleted."""
    merged = dict(current)
    for key, value in (patch or {}).items():
        if _is_empty_annotation(value):
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def validate_syslog_url(url: str | None) -> str | None:
    """An app's ``syslog_url``, unchanged, or InvalidInputError (400) naming the bad entry:
    a comma-separated list of ``tcp://``, ``udp://`` or ``tls://`` host[:port]
    (fnagent/syslog/message.py has the rules)."""
    if url:
        if "\x00" in url:  # no syslog server takes it, and PostgreSQL's text cannot hold it
            raise InvalidInputError(f"invalid syslog url: {url!r}: NUL is not allowed")
        parse_syslog_urls(url)
    return url


def validate_shape(shape: str | None) -> str | None:
    if shape and shape not in SHAPES:
        raise InvalidInputError(MSG_APP_INVALID_SHAPE)
    return shape


def validate_trigger_type(type_: object) -> str:
    if type_ not in TRIGGER_TYPES:
        raise InvalidInputError(MSG_TRIGGER_TYPE_UNKNOWN)
    assert isinstance(type_, str)
    return type_


def validate_trigger_source(source: object) -> str:
    if source is None or source == "":
        raise InvalidInputError(MSG_TRIGGER_MISSING_SOURCE)
    if not isinstance(source, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: source must be a string")
    if not source.startswith("/"):
        raise InvalidInputError(MSG_TRIGGER_SOURCE_PREFIX)
    for char in source:
        if char.isascii():
            if not (char.isalnum() or char in _SOURCE_ASCII):
                raise InvalidInputError(MSG_TRIGGER_INVALID_SOURCE)
        # Other letters and digits (any script) are fine: no space, mark, symbol or control.
        elif unicodedata.category(char)[0] not in "LN":
            raise InvalidInputError(MSG_TRIGGER_INVALID_SOURCE)
    if any(segment in (".", "..") for segment in source.split("/")):
        raise InvalidInputError(MSG_TRIGGER_INVALID_SOURCE)
    return source


def _optional_str(patch: Mapping[str, Any], key: str) -> str | None:
    value = patch.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: {key} must be a string")
    return value


def _optional_int(patch: Mapping[str, Any], key: str) -> int | None:
    value = patch.get(key)
    if value is not None and not _is_int(value):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: {key} must be an integer")
    return value


def _check_patch(patch: object) -> Mapping[str, Any]:
    if not isinstance(patch, Mapping):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: the body must be an object")
    return patch


# --- building records ---------------------------------------------------------------------


def new_app(
    *,
    id: str,
    name: str,
    config: Mapping[str, str] | None,
    annotations: Mapping[str, Any] | None,
    syslog_url: str | None,
    shape: str | None,
    now: datetime,
) -> App:
    """A validated new app, checked in Fn's order (name, annotations, syslog, shape), then
    config. No shape means Fn's default, GENERIC_X86."""
    validate_app_name(name)
    checked_annotations = validate_annotations(_annotations_object(annotations) or {})
    if syslog_url is not None and not isinstance(syslog_url, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: syslog_url must be a string")
    validate_syslog_url(syslog_url)
    if shape is not None and not isinstance(shape, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: shape must be a string")
    validate_shape(shape)
    checked_config = validate_config(_config_object(config) or {})
    return App(
        id=id,
        name=name,
        config=checked_config,
        annotations=checked_annotations,
        syslog_url=syslog_url or None,
        shape=shape or DEFAULT_SHAPE,
        created_at=now,
        updated_at=now,
    )


def new_fn(
    *,
    id: str,
    app_id: str,
    name: str,
    image: str,
    memory: int,
    timeout: int,
    idle_timeout: int,
    config: Mapping[str, str] | None,
    annotations: Mapping[str, Any] | None,
    shape: str | None,
    now: datetime,
) -> FnRecord:
    """A validated new fn in Fn's order: app_id, name, image, bounds, annotations; 0 means
    Fn's default for memory/timeout/idle_timeout. ``shape`` None is left for the store to
    fill in from the app."""
    if not app_id:
        raise InvalidInputError(MSG_FN_MISSING_APP_ID)
    validate_fn_name(name)
    validate_image(image)
    for key, value in (("memory", memory), ("timeout", timeout), ("idle_timeout", idle_timeout)):
        if value is not None and not _is_int(value):
            raise InvalidInputError(f"{MSG_INVALID_JSON}: {key} must be an integer")
    memory = memory or DEFAULT_MEMORY_MB
    timeout = timeout or DEFAULT_TIMEOUT_S
    idle_timeout = idle_timeout or DEFAULT_IDLE_TIMEOUT_S
    validate_fn_resources(memory=memory, timeout=timeout, idle_timeout=idle_timeout)
    checked_annotations = validate_fn_annotations(_annotations_object(annotations) or {})
    checked_config = validate_config(_config_object(config) or {})
    if shape is not None and not isinstance(shape, str):
        raise InvalidInputError(f"{MSG_INVALID_JSON}: shape must be a string")
    validate_shape(shape)
    return FnRecord(
        id=id,
        name=name,
        app_id=app_id,
        image=image,
        memory=memory,
        timeout=timeout,
        idle_timeout=idle_timeout,
        config=checked_config,
        annotations=checked_annotations,
        shape=shape or None,
        created_at=now,
        updated_at=now,
    )


def new_trigger(
    *,
    id: str,
    app_id: str,
    fn_id: str,
    name: str,
    type: str,
    source: str,
    annotations: Mapping[str, Any] | None,
    now: datetime,
) -> Trigger:
    """A validated new trigger in Fn's order: app_id, name, fn_id, type, source,
    annotations."""
    if not app_id:
        raise InvalidInputError(MSG_TRIGGER_MISSING_APP_ID)
    validate_trigger_name(name)
    if not fn_id:
        raise InvalidInputError(MSG_TRIGGER_MISSING_FN_ID)
    validate_trigger_type(type)
    validate_trigger_source(source)
    checked_annotations = validate_annotations(_annotations_object(annotations) or {})
    return Trigger(
        id=id,
        name=name,
        app_id=app_id,
        fn_id=fn_id,
        type=type,
        source=source,
        annotations=checked_annotations,
        created_at=now,
        updated_at=now,
    )


# --- reading POST bodies ------------------------------------------------------------------


def _create_body(body: object, id_provided: str) -> Mapping[str, Any]:
    """The body as an object without an ``id`` (Fn checks the id first; "" is no id, as
    Go's zero value)."""
    checked = _check_patch(body)
    if checked.get("id") not in (None, ""):
        raise InvalidInputError(id_provided)
    return checked


def _optional_id(body: Mapping[str, Any], key: str) -> str:
    """An id field that is checked for presence later: "" when absent or null."""
    return _optional_str(body, key) or ""


def _given(body: Mapping[str, Any], key: str, absent: Any) -> Any:
    """``body[key]`` as sent, whatever its type (the rules check it); ``absent`` when absent
    or null."""
    value = body.get(key)
    return absent if value is None else value


def app_from_body(body: Mapping[str, Any], *, id: str, now: datetime) -> App:
    """A POST /v2/apps body as a new app (see new_app); an ``id`` in it: 400."""
    body = _create_body(body, MSG_APP_ID_PROVIDED)
    return new_app(
        id=id,
        name=_given(body, "name", ""),
        config=body.get("config"),
        annotations=body.get("annotations"),
        syslog_url=body.get("syslog_url"),
        shape=body.get("shape"),
        now=now,
    )


def fn_from_body(body: Mapping[str, Any], *, id: str, now: datetime) -> FnRecord:
    """A POST /v2/fns body as a new fn (see new_fn); an ``id`` in it: 400."""
    body = _create_body(body, MSG_FN_ID_PROVIDED)
    return new_fn(
        id=id,
        app_id=_optional_id(body, "app_id"),
        name=_given(body, "name", ""),
        image=_given(body, "image", ""),
        memory=_given(body, "memory", 0),
        timeout=_given(body, "timeout", 0),
        idle_timeout=_given(body, "idle_timeout", 0),
        config=body.get("config"),
        annotations=body.get("annotations"),
        shape=body.get("shape"),
        now=now,
    )


def trigger_from_body(body: Mapping[str, Any], *, id: str, now: datetime) -> Trigger:
    """A POST /v2/triggers body as a new trigger (see new_trigger); an ``id`` in it: 400."""
    body = _create_body(body, MSG_TRIGGER_ID_PROVIDED)
    return new_trigger(
        id=id,
        app_id=_optional_id(body, "app_id"),
        fn_id=_optional_id(body, "fn_id"),
        name=_given(body, "name", ""),
        type=_given(body, "type", ""),
        source=_given(body, "source", ""),
        annotations=body.get("annotations"),
        now=now,
    )


# --- merging PUT bodies -------------------------------------------------------------------


_Record = TypeVar("_Record", App, FnRecord, Trigger)


def _touched(original: _Record, merged: _Record, now: datetime) -> _Record:
    """``merged`` with a new updated_at, or ``original`` itself when nothing changed."""
    if merged == original:
        return original
    return replace(merged, updated_at=now)


def apply_app_patch(app: App, patch: Mapping[str, Any], now: datetime) -> App:
    """Merge a PUT /v2/apps/{id} body. ``name`` is immutable (409, as in Fn); ``syslog_url``
    "" clears it; ``shape`` and the timestamps in the body are ignored."""
    patch = _check_patch(patch)
    body_id = _optional_str(patch, "id")
    if body_id and body_id != app.id:
        raise InvalidInputError(MSG_APP_ID_MISMATCH)
    name = _optional_str(patch, "name")
    if name and name != app.name:
        raise ConflictError(MSG_APP_NAME_IMMUTABLE)
    syslog_url = app.syslog_url
    new_syslog = _optional_str(patch, "syslog_url")
    if new_syslog is not None:
        # Checked only when changed: one stored under older rules still lets the app change.
        syslog_url = validate_syslog_url(new_syslog) or None
    annotations = merge_annotations(app.annotations, _annotations_object(patch.get("annotations")))
    merged = replace(
        app,
        config=validate_config(merge_config(app.config, _config_object(patch.get("config")))),
        annotations=validate_annotations(annotations),
        syslog_url=syslog_url,
    )
    return _touched(app, merged, now)


def apply_fn_patch(fn: FnRecord, patch: Mapping[str, Any], now: datetime) -> FnRecord:
    """Merge a PUT /v2/fns/{id} body: empty ``image`` and zero bounds keep the current
    values; a different ``name`` or ``app_id`` is refused."""
    patch = _check_patch(patch)
    body_id = _optional_str(patch, "id")
    if body_id and body_id != fn.id:
        raise InvalidInputError(MSG_FN_ID_MISMATCH)
    name = _optional_str(patch, "name")
    app_id = _optional_str(patch, "app_id")
    if (name and name != fn.name) or (app_id and app_id != fn.app_id):
        raise InvalidInputError(MSG_FN_FIELD_CHANGE)
    image = _optional_str(patch, "image") or fn.image
    memory = _optional_int(patch, "memory") or fn.memory
    timeout = _optional_int(patch, "timeout") or fn.timeout
    idle_timeout = _optional_int(patch, "idle_timeout") or fn.idle_timeout
    validate_image(image)
    validate_fn_resources(memory=memory, timeout=timeout, idle_timeout=idle_timeout)
    annotations = merge_annotations(fn.annotations, _annotations_object(patch.get("annotations")))
    merged = replace(
        fn,
        image=image,
        memory=memory,
        timeout=timeout,
        idle_timeout=idle_timeout,
        annotations=validate_fn_annotations(annotations),
        config=validate_config(merge_config(fn.config, _config_object(patch.get("config")))),
    )
    return _touched(fn, merged, now)


def apply_trigger_patch(trigger: Trigger, patch: Mapping[str, Any], now: datetime) -> Trigger:
    """Merge a PUT /v2/triggers/{id} body: ``name`` and ``source`` may change (as in Fn);
    ``app_id``, ``fn_id`` and ``type`` may not."""
    patch = _check_patch(patch)
    body_id = _optional_str(patch, "id")
    if body_id and body_id != trigger.id:
        raise InvalidInputError(MSG_TRIGGER_ID_MISMATCH)
    type_ = _optional_str(patch, "type")
    if type_:
        validate_trigger_type(type_)
    fixed = {"app_id": trigger.app_id, "fn_id": trigger.fn_id, "type": trigger.type}
    for key, current in fixed.items():
        value = _optional_str(patch, key)
        if value and value != current:
            raise InvalidInputError(MSG_TRIGGER_FIELD_CHANGE)
    name = validate_trigger_name(_optional_str(patch, "name") or trigger.name)
    source = validate_trigger_source(_optional_str(patch, "source") or trigger.source)
    annotations = merge_annotations(
        trigger.annotations, _annotations_object(patch.get("annotations"))
    )
    merged = replace(
        trigger, name=name, source=source, annotations=validate_annotations(annotations)
    )
    return _touched(trigger, merged, now)
