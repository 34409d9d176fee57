"""An app's secrets as the registry keeps them, and the rules for their names and for the
annotation a fn names them in. No I/O, no key: values arrive sealed (``fnagent.secretbox``)
and the registry never sees them in clear.

- A name is 1 to 64 of ``A-Za-z0-9._-``, not ``.`` or ``..`` (it becomes a file name,
  ``/run/secrets/<name>``, in the function's container).
- A value is text of 1 byte to 64 KiB (UTF-8); it is sealed before it reaches the store.
- A fn names the secrets it gets in its annotation ``fnagent.io/secrets``: a JSON list of
  names (``["db-password", "api.key"]``; the real ``fn`` CLI sends it with
  ``--annotation 'fnagent.io/secrets=["db-password"]'``). A string holding such a list is
  taken too. Anything else is 400.
- A fn may name only secrets its app has (400 naming the missing one); a secret a fn names
  cannot be deleted (409 naming the fn). Deleting an app deletes its secrets.

What a store holds per secret is its app, name, sealed value and times: a copy of the store
without the key file shows which secrets exist, their sizes and which fns name them, never a
value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fnagent.errors import InvalidInputError
from fnagent.store.models import format_timestamp

SECRETS_ANNOTATION = "fnagent.io/secrets"
MAX_SECRET_NAME_CHARS = 64
MAX_SECRET_VALUE_BYTES = 64 * 1024

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

MSG_SECRET_NOT_FOUND = "Secret not found"  # 404
MSG_SECRET_NAME = (
    "Invalid secret name: 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', not '.' or '..'"
)
MSG_SECRET_VALUE_MISSING = 'Missing secret value: send {"value": "..."} with a non-empty string'
MSG_SECRET_VALUE_TYPE = "Invalid JSON: value must be a string"
MSG_SECRET_VALUE_TOO_LONG = f"Secret value too long: at most {MAX_SECRET_VALUE_BYTES} bytes (UTF-8)"
MSG_SECRETS_ANNOTATION = (
    f"Invalid annotation {SECRETS_ANNOTATION}: must be a JSON list of secret names, "
    'e.g. ["db-password"]'
)


def validate_secret_name(name: object) -> str:
    """400 ``MSG_SECRET_NAME`` unless ``name`` is a valid secret name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(MSG_SECRET_NAME)
    return name


def secret_value_from_body(body: Mapping[str, Any]) -> str:
    """The value of a ``PUT .../secrets/{name}`` body ``{"value": "..."}``: a non-empty string
    of at most 64 KiB in UTF-8. The messages never quote the value."""
    value = body.get("value")
    if value is None or value == "":
        raise InvalidInputError(MSG_SECRET_VALUE_MISSING)
    if not isinstance(value, str):
        raise InvalidInputError(MSG_SECRET_VALUE_TYPE)
    if len(value.encode("utf-8")) > MAX_SECRET_VALUE_BYTES:
        raise InvalidInputError(MSG_SECRET_VALUE_TOO_LONG)
    return value


def secret_names(annotations: Mapping[str, Any]) -> tuple[str, ...]:
    """The secrets a fn names in ``fnagent.io/secrets`` (none without it), in order, each
    once. 400 when the annotation is not a list of valid names (or a string holding one)."""
    raw = annotations.get(SECRETS_ANNOTATION)
    if raw is None:
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidInputError(MSG_SECRETS_ANNOTATION) from None
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise InvalidInputError(MSG_SECRETS_ANNOTATION)
    names: list[str] = []
    for name in raw:
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidInputError(f"{MSG_SECRETS_ANNOTATION}; {MSG_SECRET_NAME}")
        if name not in names:
            names.append(name)
    return tuple(names)


def stored_annotations_name(annotations: str, name: str) -> bool:
    """Whether a fn's stored annotations (JSON text, ``fnagent/store/rows.py``) name the
    secret ``name``. Annotations stored before the rule that break it name nothing: the
    agent would mount nothing for them."""
    try:
        return name in secret_names(json.loads(annotations))
    except InvalidInputError:
        return False


def missing_secret_message(name: str, app_name: str) -> str:
    """400: a fn names a secret its app does not have."""
    return (
        f'Secret "{name}" named in {SECRETS_ANNOTATION} does not exist in app "{app_name}": '
        "create it first"
    )


def secret_in_use_message(name: str, fn_names: list[str]) -> str:
    """409: a secret some fns still name cannot be deleted."""
    named = ", ".join(f'"{fn}"' for fn in fn_names)
    which = "fn" if len(fn_names) == 1 else "fns"
    return (
        f'Secret "{name}" is still named by {which} {named} ({SECRETS_ANNOTATION}): '
        "remove it there first"
    )


@dataclass(frozen=True, kw_only=True)
class Secret:
    """A secret's record without its value: what lists and writes answer."""

    app_id: str
    name: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True, kw_only=True)
class SealedSecret:
    """A secret's sealed value (``fnagent.secretbox``), as stored; opening it needs the key."""

    app_id: str
    name: str
    sealed: bytes = field(repr=False)
