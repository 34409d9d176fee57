"""Fn's rules for apps, fns and triggers, without a database (fnagent/store/models.py)."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import InvalidInputError
from fnagent.errors import ConflictError
from fnagent.store import models as m

T0 = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)

NAME_CHECKS = [
    (m.validate_app_name, m.MSG_APP_MISSING_NAME, m.MSG_APP_NAME_TOO_LONG, m.MSG_APP_INVALID_NAME),
    (m.validate_fn_name, m.MSG_FN_MISSING_NAME, m.MSG_FN_NAME_TOO_LONG, m.MSG_FN_INVALID_NAME),
    (
        m.validate_trigger_name,
        m.MSG_TRIGGER_MISSING_NAME,
        m.MSG_TRIGGER_NAME_TOO_LONG,
        m.MSG_TRIGGER_INVALID_NAME,
    ),
]
NAME_IDS = ["app", "fn", "trigger"]


def invalid(message: str) -> Any:
    """pytest.raises for an InvalidInputError (400) with exactly ``message``."""
    return pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$")


def test_fn_messages_are_fns_words() -> None:
    # Spot checks against fnproject/fn api/models (app.go, fn.go, trigger.go, error.go).
    assert m.MSG_APP_NAME_TOO_LONG == "App name must be 255 characters or less"
    assert m.MSG_FN_INVALID_TIMEOUT == "timeout value is out of range, must be between 0 and 300"
    assert (
        m.MSG_FN_INVALID_MEMORY == "memory value is out of range. It should be between 0 and 8192"
    )
    assert m.MSG_ANNOTATION_KEY_LENGTH == (
        "Invalid annotation key length, annotation keys may not be larger than 128 bytes"
    )
    assert m.MSG_TOO_MANY_ANNOTATIONS.endswith("annotations keys (100)")


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("check", "missing", "too_long", "bad"), NAME_CHECKS, ids=NAME_IDS)
def test_name_rules(check: Any, missing: str, too_long: str, bad: str) -> None:
    for good in ["a", "my-app_1", "A" * 255, "émile", "函数", "x٣"]:
        assert check(good) == good
    with invalid(missing):
        check("")
    with invalid(too_long):
        check("a" * 256)
    # Go's len() counts bytes: 128 two-byte letters are 256 bytes.
    with invalid(too_long):
        check("é" * 128)
    for name in ["a b", "a.b", "a/b", "a\tb", "&&%@!#$#@$", "a\x00", "\ud800"]:
        with invalid(bad):
            check(name)


@given(st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=255))
def test_names_of_fns_alphabet_are_valid(name: str) -> None:
    for check, *_ in NAME_CHECKS:
        assert check(name) == name


@given(
    st.text(max_size=20),
    st.characters(exclude_categories=["L", "N"], exclude_characters="_-"),
    st.text(max_size=20),
)
def test_a_name_with_any_other_character_is_refused(head: str, bad: str, tail: str) -> None:
    name = head + bad + tail
    for check, _, too_long, message in NAME_CHECKS:
        with pytest.raises(InvalidInputError) as raised:
            check(name)
        assert raised.value.message in (message, too_long)
        assert raised.value.status == 400


# --- annotations ------------------------------------------------------------------------------


def test_annotation_rules() -> None:
    ok = {"k": "v", "n": 1, "b": False, "o": {"x": [1, 2]}, "a": [], "e": {}, "!~": 0.5}
    assert m.validate_annotations(ok) == ok
    for key in ["", "a b", "tab\t", "é", "\x7f"]:
        with invalid(m.MSG_ANNOTATION_KEY):
            m.validate_annotations({key: "v"})
    assert m.validate_annotations({"k" * 128: 1})
    with invalid(m.MSG_ANNOTATION_KEY_LENGTH):
        m.validate_annotations({"k" * 129: 1})
    for value in ["", None, float("nan"), object()]:
        with invalid(m.MSG_ANNOTATION_VALUE):
            m.validate_annotations({"k": value})
    assert m.validate_annotations({"k": "x" * 510})  # 512 bytes with its quotes
    with invalid(m.MSG_ANNOTATION_VALUE_LENGTH):
        m.validate_annotations({"k": "x" * 511})
    with invalid(m.MSG_ANNOTATION_VALUE_LENGTH):
        m.validate_annotations({"k": "é" * 256})  # counted in UTF-8 bytes
    hundred = {f"k{i}": i for i in range(100)}
    assert m.validate_annotations(hundred) == hundred
    with invalid(m.MSG_TOO_MANY_ANNOTATIONS):
        m.validate_annotations({**hundred, "one-more": 1})


@given(
    st.dictionaries(
        st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=128),
        st.one_of(
            st.integers(),
            st.booleans(),
            st.text(min_size=1, max_size=100),
            st.lists(st.integers(), max_size=10),
        ),
        max_size=100,
    )
)
def test_annotations_within_fns_limits_are_valid(annotations: dict[str, Any]) -> None:
    assert m.validate_annotations(annotations) == annotations


@given(
    st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], max_size=10),
    st.characters(
        exclude_characters=[chr(c) for c in range(0x21, 0x7F)], exclude_categories=["Cs"]
    ),
)
def test_annotation_keys_outside_printable_ascii_are_refused(prefix: str, bad: str) -> None:
    with invalid(m.MSG_ANNOTATION_KEY):
        m.validate_annotations({prefix + bad: 1})


def test_merges_delete_on_empty_values() -> None:
    assert m.merge_config({"a": "1", "b": "2"}, {"a": "", "c": "3", "zz": ""}) == {
        "b": "2",
        "c": "3",
    }
    assert m.merge_config({"a": "1"}, None) == {"a": "1"}
    merged = m.merge_annotations({"a": 1, "b": 2, "c": 3}, {"a": "", "b": None, "d": {}})
    assert merged == {"c": 3, "d": {}}


# --- other fields -----------------------------------------------------------------------------


def test_fn_bounds_and_defaults() -> None:
    fn = new_fn()
    assert (fn.memory, fn.timeout, fn.idle_timeout) == (128, 30, 30)
    assert (fn.shape, fn.config, fn.annotations) == (None, {}, {})
    fn = new_fn(memory=8192, timeout=300, idle_timeout=3600)
    assert (fn.memory, fn.timeout, fn.idle_timeout) == (8192, 300, 3600)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"timeout": 301}, m.MSG_FN_INVALID_TIMEOUT),
        ({"timeout": -1}, m.MSG_FN_INVALID_TIMEOUT),
        ({"idle_timeout": 3601}, m.MSG_FN_INVALID_IDLE_TIMEOUT),
        ({"memory": 8193}, m.MSG_FN_INVALID_MEMORY),
        ({"memory": -5}, m.MSG_FN_INVALID_MEMORY),
        ({"memory": True}, f"{m.MSG_INVALID_JSON}: memory must be an integer"),
        ({"timeout": "30"}, f"{m.MSG_INVALID_JSON}: timeout must be an integer"),
        ({"image": ""}, m.MSG_FN_MISSING_IMAGE),
        ({"app_id": ""}, m.MSG_FN_MISSING_APP_ID),
        ({"name": ""}, m.MSG_FN_MISSING_NAME),
        ({"shape": "GENERIC_MIPS"}, m.MSG_APP_INVALID_SHAPE),
    ]
    for fields, message in cases:
        with invalid(message):
            new_fn(**fields)
    with pytest.raises(InvalidInputError, match="repository name must be lowercase"):
        new_fn(image="Fnproject/Hello")


def test_fn_checks_run_in_fns_order() -> None:
    # Fn.Validate: name, app_id, image, timeout, idle_timeout, memory, annotations.
    with invalid(m.MSG_FN_MISSING_IMAGE):
        new_fn(image="", timeout=9999, annotations={"": ""})
    with invalid(m.MSG_FN_INVALID_TIMEOUT):
        new_fn(memory=99999, timeout=9999, idle_timeout=99999)
    with invalid(m.MSG_FN_INVALID_MEMORY):
        new_fn(memory=99999, annotations={"": ""})


def test_config_keys_must_make_environment_variables() -> None:
    assert new_fn(config={"A": "", "lower.dots-ok": "x"}).config == {"A": "", "lower.dots-ok": "x"}
    for key in ["", "A=B", "A\x00"]:
        with pytest.raises(InvalidInputError, match="^Invalid config key"):
            new_fn(config={key: "v"})
    with pytest.raises(InvalidInputError, match="^Invalid JSON: config must be an object"):
        new_fn(config={"A": 1})


def test_app_fields() -> None:
    app = new_app()
    assert (app.shape, app.syslog_url, app.created_at, app.updated_at) == (
        "GENERIC_X86",
        None,
        T0,
        T0,
    )
    for url in ["tcp://logs:514", "udp://logs:514", "tcp+tls://a:1,udp://b:2", "tls://l.example:1"]:
        assert new_app(syslog_url=url).syslog_url == url
    assert new_app(syslog_url="").syslog_url is None
    for url in ["http://logs", "logs:514", "unix:///dev/log", "unixgram:///dev/log"]:
        with pytest.raises(InvalidInputError, match=r'^invalid syslog url: ".*" invalid scheme'):
            new_app(syslog_url=url)
    for shape in m.SHAPES:
        assert new_app(shape=shape).shape == shape
    with invalid(m.MSG_APP_INVALID_SHAPE):
        new_app(shape="x86")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tcp://", "a host is missing"),
        ("tcp://:514", "a host is missing"),
        ("udp://logs:0", "the port must be a number from 1 to 65535"),
        ("udp://logs:65536", "the port must be a number from 1 to 65535"),
        ("tcp://logs:x", "the port must be a number from 1 to 65535"),
        ("tcp://bad_host!:514", "invalid host"),
        ("tcp://logs:514/path", "a path, query, fragment or user is not allowed"),
        ("tcp://user@logs:514", "a path, query, fragment or user is not allowed"),
        ("tcp://logs:514?x=1", "a path, query, fragment or user is not allowed"),
        ("tcp://logs:514,", "an empty entry in the list"),
        (",".join(["tcp://l:1"] * 9), "at most 8 destinations"),
    ],
)
def test_app_syslog_url_rejects_bad_hosts_and_ports(url: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"^invalid syslog url: .*{re.escape(says)}"):
        new_app(syslog_url=url)
    app = new_app(syslog_url="tcp://l:1")
    with pytest.raises(InvalidInputError, match=rf"{re.escape(says)}"):
        m.apply_app_patch(app, {"syslog_url": url}, T1)


def test_app_patch_keeps_a_stored_syslog_url_it_does_not_change() -> None:
    # Stored before the rules were tightened: other changes to the app still go through.
    app = m.App(id="a", name="a", syslog_url="unix:///dev/log", created_at=T0, updated_at=T0)
    assert m.apply_app_patch(app, {"config": {"A": "1"}}, T1).syslog_url == "unix:///dev/log"


def test_app_syslog_url_takes_lists_ports_and_addresses() -> None:
    for url in [
        "tcp://logs",
        "udp://10.0.0.1:514",
        "tls://[::1]:6514",
        " tcp://a:1 , udp://b:2 ",
        "tcp://Logs.Example.COM:1",
    ]:
        assert new_app(syslog_url=url).syslog_url == url


def test_trigger_fields() -> None:
    assert new_trigger().source == "/hello"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"app_id": ""}, m.MSG_TRIGGER_MISSING_APP_ID),
        ({"name": ""}, m.MSG_TRIGGER_MISSING_NAME),
        ({"fn_id": ""}, m.MSG_TRIGGER_MISSING_FN_ID),
        ({"type": "cron"}, m.MSG_TRIGGER_TYPE_UNKNOWN),
        ({"type": ""}, m.MSG_TRIGGER_TYPE_UNKNOWN),
        ({"source": ""}, m.MSG_TRIGGER_MISSING_SOURCE),
        ({"source": "hello"}, m.MSG_TRIGGER_SOURCE_PREFIX),
        ({"annotations": {"": "v"}}, m.MSG_ANNOTATION_KEY),
    ]
    for fields, message in cases:
        with invalid(message):
            new_trigger(**fields)


def test_to_json_uses_fns_field_names_and_timestamps() -> None:
    assert m.format_timestamp(T0) == "2024-01-02T03:04:05.123Z"
    app = new_app(config={"A": "1"}, annotations={"k": [1]}, syslog_url="tcp://l:1")
    assert app.to_json() == {
        "id": "app-id",
        "name": "myapp",
        "config": {"A": "1"},
        "annotations": {"k": [1]},
        "syslog_url": "tcp://l:1",
        "shape": "GENERIC_X86",
        "created_at": "2024-01-02T03:04:05.123Z",
        "updated_at": "2024-01-02T03:04:05.123Z",
    }
    # Go's omitempty: empty maps and a null syslog_url are left out of an app.
    assert set(new_app().to_json()) == {"id", "name", "shape", "created_at", "updated_at"}
    fn = new_fn(annotations={"a": 1})
    assert fn.to_json() == {
        "id": "fn-id",
        "name": "myfn",
        "app_id": "app-id",
        "image": "fnproject/hello",
        "memory": 128,
        "timeout": 30,
        "idle_timeout": 30,
        "config": {},
        "annotations": {"a": 1},
        "created_at": "2024-01-02T03:04:05.123Z",
        "updated_at": "2024-01-02T03:04:05.123Z",
    }
    assert new_trigger().to_json() == {
        "id": "trigger-id",
        "name": "mytrigger",
        "app_id": "app-id",
        "fn_id": "fn-id",
        "type": "http",
        "source": "/hello",
        "created_at": "2024-01-02T03:04:05.123Z",
        "updated_at": "2024-01-02T03:04:05.123Z",
    }


# --- patches ----------------------------------------------------------------------------------


def test_app_patch() -> None:
    app = new_app(config={"A": "1", "B": "2"}, annotations={"x": 1, "y": 2}, syslog_url="tcp://l:1")
    same = m.apply_app_patch(
        app, {"id": app.id, "name": app.name, "config": {}, "shape": "ARM"}, T1
    )
    assert same is app
    assert (
        m.apply_app_patch(app, {"config": None, "annotations": None, "syslog_url": None}, T1) is app
    )
    patched = m.apply_app_patch(
        app,
        {"config": {"A": "", "C": "3"}, "annotations": {"x": "", "z": {"n": 1}}, "syslog_url": ""},
        T1,
    )
    assert patched.config == {"B": "2", "C": "3"}
    assert patched.annotations == {"y": 2, "z": {"n": 1}}
    assert patched.syslog_url is None
    assert (patched.created_at, patched.updated_at) == (T0, T1)
    with pytest.raises(ConflictError, match=f"^{m.MSG_APP_NAME_IMMUTABLE}$"):
        m.apply_app_patch(app, {"name": "other"}, T1)
    with invalid(m.MSG_APP_ID_MISMATCH):
        m.apply_app_patch(app, {"id": "other"}, T1)
    with invalid(m.MSG_ANNOTATION_VALUE_LENGTH):
        m.apply_app_patch(app, {"annotations": {"big": "x" * 600}}, T1)
    with pytest.raises(InvalidInputError, match="^Invalid JSON: the body must be an object$"):
        m.apply_app_patch(app, [], T1)  # type: ignore[arg-type]


def test_fn_patch() -> None:
    fn = new_fn(memory=256, config={"A": "1"})
    zeros = {"image": "", "memory": 0, "timeout": 0, "idle_timeout": 0, "config": None}
    assert m.apply_fn_patch(fn, {**zeros, "name": fn.name, "app_id": fn.app_id}, T1) is fn
    patched = m.apply_fn_patch(
        fn, {"image": "fnproject/other:2", "timeout": 60, "config": {"A": "", "B": "2"}}, T1
    )
    assert (patched.image, patched.memory, patched.timeout) == ("fnproject/other:2", 256, 60)
    assert (patched.config, patched.updated_at) == ({"B": "2"}, T1)
    for body in [{"name": "renamed"}, {"app_id": "another-app"}]:
        with invalid(m.MSG_FN_FIELD_CHANGE):
            m.apply_fn_patch(fn, body, T1)
    with invalid(m.MSG_FN_ID_MISMATCH):
        m.apply_fn_patch(fn, {"id": "nottheid"}, T1)
    with invalid(m.MSG_FN_INVALID_IDLE_TIMEOUT):
        m.apply_fn_patch(fn, {"idle_timeout": 3601}, T1)
    with invalid(m.MSG_FN_INVALID_MEMORY):
        m.apply_fn_patch(fn, {"memory": 100000000000000}, T1)


def test_trigger_patch() -> None:
    trigger = new_trigger(annotations={"a": 1})
    same = {"id": trigger.id, "app_id": "app-id", "fn_id": "fn-id", "type": "http", "name": ""}
    assert m.apply_trigger_patch(trigger, same, T1) is trigger
    patched = m.apply_trigger_patch(
        trigger, {"name": "renamed", "source": "/new", "annotations": {"a": None}}, T1
    )
    assert (patched.name, patched.source, patched.annotations) == ("renamed", "/new", {})
    assert patched.updated_at == T1
    for body in [{"app_id": "other"}, {"fn_id": "other"}]:
        with invalid(m.MSG_TRIGGER_FIELD_CHANGE):
            m.apply_trigger_patch(trigger, body, T1)
    with invalid(m.MSG_TRIGGER_TYPE_UNKNOWN):
        m.apply_trigger_patch(trigger, {"type": "cron"}, T1)
    with invalid(m.MSG_TRIGGER_SOURCE_PREFIX):
        m.apply_trigger_patch(trigger, {"source": "noprefix"}, T1)
    with invalid(m.MSG_TRIGGER_INVALID_NAME):
        m.apply_trigger_patch(trigger, {"name": "a b"}, T1)
    with invalid(m.MSG_TRIGGER_ID_MISMATCH):
        m.apply_trigger_patch(trigger, {"id": "nonmatching"}, T1)


# --- builders with defaults for the tests above -----------------------------------------------


def new_app(**fields: Any) -> m.App:
    args: dict[str, Any] = {
        "id": "app-id",
        "name": "myapp",
        "config": None,
        "annotations": None,
        "syslog_url": None,
        "shape": None,
        "now": T0,
    }
    return m.new_app(**{**args, **fields})


def new_fn(**fields: Any) -> m.FnRecord:
    args: dict[str, Any] = {
        "id": "fn-id",
        "app_id": "app-id",
        "name": "myfn",
        "image": "fnproject/hello",
        "memory": 0,
        "timeout": 0,
        "idle_timeout": 0,
        "config": None,
        "annotations": None,
        "shape": None,
        "now": T0,
    }
    return m.new_fn(**{**args, **fields})


def new_trigger(**fields: Any) -> m.Trigger:
    args: dict[str, Any] = {
        "id": "trigger-id",
        "app_id": "app-id",
        "fn_id": "fn-id",
        "name": "mytrigger",
        "type": "http",
        "source": "/hello",
        "annotations": None,
        "now": T0,
    }
    return m.new_trigger(**{**args, **fields})


def test_fn_limit_annotations() -> None:
    # The `fn` CLI sends --annotation values as JSON: 2 or "2" (from '"2"') both count.
    limit, init = "fnagent.io/max-concurrency", "fnagent.io/init-timeout-ms"
    for good in [{limit: 1}, {limit: "3"}, {limit: 1000}, {init: 100}, {init: "300000"}]:
        assert new_fn(annotations=good).annotations == good
    bad_limit = f"^annotation {limit} must be an integer >= 1"
    bad_init = f"^annotation {init} must be an integer from 100 to 300000"
    cases: list[tuple[Any, str]] = [
        ({limit: 0}, bad_limit),
        ({limit: -1}, bad_limit),
        ({limit: "0"}, bad_limit),
        ({limit: " 2"}, bad_limit),
        ({limit: "2.0"}, bad_limit),
        ({limit: 1.5}, bad_limit),
        ({limit: True}, bad_limit),
        ({limit: [1]}, bad_limit),
        ({limit: "x" * 20}, bad_limit),
        ({init: 99}, bad_init),
        ({init: 300001}, bad_init),
        ({init: "5s"}, bad_init),
    ]
    for given_annotations, expected in cases:
        with pytest.raises(InvalidInputError, match=expected):
            new_fn(annotations=given_annotations)
    fn = new_fn(annotations={limit: 2})
    assert m.apply_fn_patch(fn, {"annotations": {limit: 4}}, T1).annotations == {limit: 4}
    assert m.apply_fn_patch(fn, {"annotations": {limit: ""}}, T1).annotations == {}
    with pytest.raises(InvalidInputError, match=bad_limit):
        m.apply_fn_patch(fn, {"annotations": {limit: 0}}, T1)
    with pytest.raises(InvalidInputError, match=bad_init):
        m.apply_fn_patch(fn, {"annotations": {init: 1}}, T1)
    # Apps and triggers carry these keys as plain annotations (they mean nothing there).
    assert new_app(annotations={limit: 0}).annotations == {limit: 0}
