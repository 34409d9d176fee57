"""Secrets without a server: the name, value and annotation rules, sealing and the key file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fnagent.errors import InvalidInputError, SecretKeyError
from fnagent.models import Fn, SecretFile
from fnagent.secretbox import SecretBox, create_key, digest, load_key
from fnagent.store.secrets import (
    MAX_SECRET_VALUE_BYTES,
    MSG_SECRET_NAME,
    MSG_SECRETS_ANNOTATION,
    SECRETS_ANNOTATION,
    secret_names,
    secret_value_from_body,
    validate_secret_name,
)

VALUE = b"hunter2-\xe2\x9c\x93"


@pytest.mark.parametrize("name", ["a", "db.password", "API_KEY-2", "x" * 64, "..a", "a.."])
def test_valid_secret_names(name: str) -> None:
    assert validate_secret_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "/a", "x" * 65, "a b", "é", "a\nb", "a\x00b", None, 3]
)
def test_invalid_secret_names(name: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        validate_secret_name(name)
    assert raised.value.message == MSG_SECRET_NAME


def test_secret_values_are_bounded_and_never_quoted() -> None:
    assert secret_value_from_body({"value": "x" * MAX_SECRET_VALUE_BYTES}) == "x" * 65536
    too_long = "\u00e9" * (MAX_SECRET_VALUE_BYTES // 2 + 1)  # 2 bytes each in UTF-8
    for body in ({}, {"value": ""}, {"value": None}, {"value": 5}, {"value": too_long}):
        with pytest.raises(InvalidInputError) as raised:
            secret_value_from_body(body)
        assert raised.value.status == 400
        assert "\u00e9\u00e9" not in raised.value.message


@pytest.mark.parametrize(
    ("annotation", "names"),
    [
        (["a", "b.c"], ("a", "b.c")),
        (["a", "a", "b"], ("a", "b")),
        ([], ()),
        ('["a", "b"]', ("a", "b")),
    ],
)
def test_the_annotation_names_secrets(annotation: object, names: tuple[str, ...]) -> None:
    assert secret_names({SECRETS_ANNOTATION: annotation}) == names


def test_no_annotation_names_nothing() -> None:
    assert secret_names({"other": ["a"]}) == ()


@pytest.mark.parametrize(
    "annotation", ["a", '"a"', "[a]", {"a": 1}, [1], ["../etc/passwd"], ["."], 3, [["a"]]]
)
def test_a_malformed_annotation_is_400(annotation: object) -> None:
    with pytest.raises(InvalidInputError) as raised:
        secret_names({SECRETS_ANNOTATION: annotation})
    assert raised.value.message.startswith(MSG_SECRETS_ANNOTATION)


def test_sealing_round_trips_and_hides_the_value() -> None:
    box = SecretBox.generate()
    sealed = box.seal("app1", "token", VALUE)
    assert VALUE not in sealed
    assert box.open("app1", "token", sealed) == VALUE
    # A fresh nonce each time: the same value seals differently, so the digest changes too.
    again = box.seal("app1", "token", VALUE)
    assert again != sealed
    assert digest(again) != digest(sealed)
    assert "hunter2" not in repr(box)


def test_a_wrong_key_or_altered_bytes_never_open() -> None:
    box = SecretBox.generate()
    sealed = box.seal("app1", "token", VALUE)
    with pytest.raises(SecretKeyError) as raised:
        SecretBox.generate().open("app1", "token", sealed)
    assert "not the one it was stored with" in raised.value.message
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for app_id, name, data in (
        ("app1", "token", flipped),
        ("app2", "token", sealed),  # moved to another app
        ("app1", "other", sealed),  # or another name
        ("app1", "token", b"\x02" + sealed[1:]),
        ("app1", "token", b""),
    ):
        with pytest.raises(SecretKeyError):
            box.open(app_id, name, data)


def test_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "dir" / "fn.db.secrets-key")
    key = create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key
    with pytest.raises(SecretKeyError, match="cannot create"):
        create_key(path)  # never over an existing key
    assert load_key(path) == key


def test_bad_key_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_key(str(tmp_path / "missing"))
    open_to_all = tmp_path / "open"
    create_key(str(open_to_all))
    os.chmod(open_to_all, 0o644)
    with pytest.raises(SecretKeyError, match="may be read by others"):
        load_key(str(open_to_all))
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    os.chmod(garbage, 0o600)
    with pytest.raises(SecretKeyError, match="does not hold a key"):
        load_key(str(garbage))


def _fn(*secrets: SecretFile) -> Fn:
    return Fn(id="f1", name="fn", app_id="a1", app_name="app", image="img", secrets=secrets)


def test_a_secret_change_changes_the_version_without_the_value_in_it() -> None:
    box = SecretBox.generate()
    first = box.seal("a1", "token", VALUE)
    second = box.seal("a1", "token", VALUE)
    with_first = _fn(SecretFile(name="token", value=VALUE, digest=digest(first)))
    with_second = _fn(SecretFile(name="token", value=VALUE, digest=digest(second)))
    assert with_first.version_key != with_second.version_key
    assert with_first.version_key != _fn().version_key
    same = _fn(SecretFile(name="token", value=b"other", digest=digest(first)))
    assert same.version_key == with_first.version_key  # only the digest counts
    assert "hunter2" not in repr(with_first)
