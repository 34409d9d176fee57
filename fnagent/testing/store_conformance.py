"""Store conformance: cases every ``Store`` backend must pass, SQLite today and PostgreSQL
later (the model is Fn's ``api/datastore/datastoretest``).

Each case is a plain ``async def case_*(store)`` listed in ``CASES`` (this module is not a test
module, so pytest collects nothing here). A case uses only the ``fnagent.store.base.Store``
protocol and the records' public fields; it asserts Fn's messages and statuses exactly.

Runner contract (``tests/unit/test_store_conformance.py``): hand each case a fresh, empty,
open store whose clock is a ``FakeClock`` (so every write has a distinct, later timestamp),
and close it afterwards.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import pytest

from fnagent.errors import FnAgentError, InvalidInputError
from fnagent.store import App, ConflictError, FnRecord, NotFoundError, Store, Trigger
from fnagent.store import models as m
from fnagent.store.models import decode_cursor, encode_cursor
from fnagent.store.secrets import MSG_SECRET_NAME, MSG_SECRETS_ANNOTATION, SECRETS_ANNOTATION

T = TypeVar("T")

Case = Callable[[Store], Awaitable[None]]


class FakeClock:
    """Moves 1 ms per reading, so every write gets a distinct, predictable timestamp."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> datetime:
        return datetime(2024, 1, 2, tzinfo=UTC) + timedelta(milliseconds=next(self._ticks))


def app_body(name: str, **fields: Any) -> dict[str, Any]:
    """A POST /v2/apps body."""
    return {"name": name, **fields}


def fn_body(app_id: str, name: str, image: str, **fields: Any) -> dict[str, Any]:
    """A POST /v2/fns body."""
    return {"app_id": app_id, "name": name, "image": image, **fields}


def trigger_body(
    app_id: str, fn_id: str, name: str, type: str, source: str, **fields: Any
) -> dict[str, Any]:
    """A POST /v2/triggers body."""
    return {
        "app_id": app_id,
        "fn_id": fn_id,
        "name": name,
        "type": type,
        "source": source,
        **fields,
    }


async def raises(kind: type[FnAgentError], message: str, call: Awaitable[T]) -> FnAgentError:
    """Await ``call``; it must raise ``kind`` with exactly Fn's ``message``."""
    with pytest.raises(kind) as raised:
        await call
    assert raised.value.message == message
    return raised.value


async def app_fn_trigger(store: Store, suffix: str = "") -> tuple[App, FnRecord, Trigger]:
    app = await store.create_app(app_body(f"app{suffix}"))
    fn = await store.create_fn(fn_body(app.id, f"fn{suffix}", "fnproject/hello"))
    trigger = await store.create_trigger(
        trigger_body(app.id, fn.id, f"t{suffix}", "http", f"/t{suffix}")
    )
    return app, fn, trigger


# --- round trips --------------------------------------------------------------------------


async def case_every_field_round_trips(store: Store) -> None:
    app = await store.create_app(
        app_body(
            "myapp",
            config={"DB": "postgres://x", "EMPTY": ""},
            annotations={"k": "v", "nested": {"a": [1, 2.5, None, True]}, "n": 7},
            syslog_url="tcp://logs:514",
            shape="GENERIC_ARM",
        )
    )
    assert (app.name, app.shape, app.syslog_url) == ("myapp", "GENERIC_ARM", "tcp://logs:514")
    assert len(app.id) == 26 and app.created_at == app.updated_at
    assert await store.get_app(app.id) == app
    assert await store.get_app_by_name("myapp") == app

    fn = await store.create_fn(
        fn_body(
            app.id,
            "myfn",
            "registry.local:5000/team/fn:1.2",
            memory=512,
            timeout=120,
            idle_timeout=600,
            config={"FN_ONLY": "1"},
            annotations={"fnproject.io/custom": {"x": "y"}},
        )
    )
    assert (fn.memory, fn.timeout, fn.idle_timeout) == (512, 120, 600)
    assert fn.shape == "GENERIC_ARM"  # inherited from the app, as in Fn
    assert await store.get_fn(fn.id) == fn
    defaults = await store.create_fn(
        fn_body(app.id, "defaults", "fnproject/hello", shape="GENERIC_X86")
    )
    assert (defaults.memory, defaults.timeout, defaults.idle_timeout) == (128, 30, 30)
    assert defaults.shape == "GENERIC_X86"

    trigger = await store.create_trigger(
        trigger_body(app.id, fn.id, "mytrigger", "http", "/my/path", annotations={"a": 1})
    )
    assert await store.get_trigger(trigger.id) == trigger
    assert await store.get_trigger_by_source(app.id, "http", "/my/path") == trigger
    assert trigger.to_json()["source"] == "/my/path"


async def case_find_http_trigger(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    assert await store.find_http_trigger("app", "/t") == (app, fn, trigger)
    assert await store.find_http_trigger("app", "t") == (app, fn, trigger)
    await raises(NotFoundError, "App not found", store.find_http_trigger("nope", "/t"))
    await raises(NotFoundError, "Trigger not found", store.find_http_trigger("app", "/nope"))


# --- Fn's errors ------------------------------------------------------------------------------


async def case_unique_constraints_conflict(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    other, other_fn, _ = await app_fn_trigger(store, "2")
    error = await raises(ConflictError, "App already exists", store.create_app(app_body("app")))
    assert error.status == 409
    await raises(
        ConflictError,
        "Fn with specified name already exists",
        store.create_fn(fn_body(app.id, "fn", "fnproject/other")),
    )
    await store.create_fn(fn_body(other.id, "fn", "fnproject/hello"))  # names are per app
    await raises(
        ConflictError,
        "Trigger with the same type and source exists on this app",
        store.create_trigger(trigger_body(app.id, fn.id, "another", "http", "/t")),
    )
    await raises(
        ConflictError,
        "Trigger already exists",
        store.create_trigger(trigger_body(app.id, fn.id, "t", "http", "/elsewhere")),
    )
    # Another app may use the same trigger name and source.
    await store.create_trigger(trigger_body(other.id, other_fn.id, "t", "http", "/t"))
    await raises(
        ConflictError,
        "Trigger with the same type and source exists on this app",
        store.update_trigger(
            (await store.create_trigger(trigger_body(app.id, fn.id, "u", "http", "/u"))).id,
            {"source": "/t"},
        ),
    )
    renamed = await store.create_trigger(trigger_body(app.id, fn.id, "v", "http", "/v"))
    await raises(
        ConflictError, "Trigger already exists", store.update_trigger(renamed.id, {"name": "t"})
    )
    assert await store.get_trigger(trigger.id) == trigger


async def case_missing_things_are_404_with_fns_messages(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    for call in [
        store.get_app("x"),
        store.get_app_by_name("x"),
        store.update_app("x", {}),
        store.delete_app("x"),
        store.create_fn(fn_body("x", "f", "fnproject/hello")),
        store.create_trigger(trigger_body("x", fn.id, "t2", "http", "/t2")),
    ]:
        error = await raises(NotFoundError, "App not found", call)
        assert error.status == 404
    for call in [
        store.get_fn("x"),
        store.update_fn("x", {}),
        store.delete_fn("x"),
        store.create_trigger(trigger_body(app.id, "x", "t2", "http", "/t2")),
    ]:
        await raises(NotFoundError, "Fn not found", call)
    for call in [
        store.get_trigger("x"),
        store.update_trigger("x", {}),
        store.delete_trigger("x"),
        store.get_trigger_by_source(app.id, "http", "/nope"),
    ]:
        await raises(NotFoundError, "Trigger not found", call)


async def case_a_trigger_must_point_at_a_fn_of_its_app(store: Store) -> None:
    app, _, _ = await app_fn_trigger(store)
    _, other_fn, _ = await app_fn_trigger(store, "2")
    await raises(
        InvalidInputError,
        "Invalid Fn ID - not owned by specified app",
        store.create_trigger(trigger_body(app.id, other_fn.id, "x", "http", "/x")),
    )


async def case_validation_comes_first_with_fns_messages(store: Store) -> None:
    # Fn validates the body before it looks the app up.
    cases: list[tuple[Awaitable[Any], str]] = [
        (store.create_app(app_body("")), "Missing Name"),
        (store.create_app(app_body("a" * 256)), "App name must be 255 characters or less"),
        (store.create_app(app_body("in valid")), "Invalid app name"),
        (store.create_app(app_body("a", annotations={"k": ""})), m.MSG_ANNOTATION_VALUE),
        (store.create_fn(fn_body("", "f", "fnproject/hello")), "Missing AppID on Fn"),
        (store.create_fn(fn_body("nope", "f", "")), "Missing image on Fn"),
        (store.create_fn(fn_body("nope", " ", "fnproject/hello")), "name must be a valid string"),
        (store.create_fn(fn_body("nope", "f", "i", timeout=3601)), m.MSG_FN_INVALID_TIMEOUT),
        (
            store.create_trigger(trigger_body("nope", "f", "t", "http", "src")),
            "Missing Trigger Source Prefix '/'",
        ),
        (
            store.create_trigger(trigger_body("nope", "f", "t", "cron", "/src")),
            "Trigger Type Not Supported",
        ),
        (
            store.create_trigger(trigger_body("nope", "f", "&&%@!#$#@$", "http", "/s")),
            "Invalid name for Trigger",
        ),
    ]
    for call, message in cases:
        error = await raises(InvalidInputError, message, call)
        assert error.status == 400
    await raises(InvalidInputError, "Missing AppID on Fn", store.list_fns(app_id=""))
    await raises(InvalidInputError, "Missing App ID on Trigger", store.list_triggers(app_id=""))


async def case_ids_in_create_bodies_are_refused(store: Store) -> None:
    # Fn checks the id before anything else; "" or null is no id (Go's zero value).
    await raises(
        InvalidInputError,
        "App ID cannot be supplied on create",
        store.create_app(app_body("a", id="mine")),
    )
    app = await store.create_app(app_body("a", id=""))
    await raises(
        InvalidInputError,
        "ID cannot be provided for Fn creation",
        store.create_fn(fn_body(app.id, "", "", id="mine")),
    )
    fn = await store.create_fn(fn_body(app.id, "f", "fnproject/hello", id=None))
    await raises(
        InvalidInputError,
        "ID cannot be provided for Trigger creation",
        store.create_trigger(trigger_body(app.id, fn.id, "t", "http", "/t", id=fn.id)),
    )
    assert await store.list_apps() == ([app], None)
    assert await store.list_fns(app_id=app.id) == ([fn], None)
    assert await store.list_triggers(app_id=app.id) == ([], None)


# --- updates ----------------------------------------------------------------------------------


async def case_app_update_merges(store: Store) -> None:
    app = await store.create_app(
        app_body("app", config={"A": "1", "B": "2"}, annotations={"x": 1, "y": 2})
    )
    same = await store.update_app(app.id, {"name": "app", "config": {}, "annotations": None})
    assert same == app  # nothing changed: updated_at too
    updated = await store.update_app(
        app.id,
        {
            "config": {"A": "", "C": "3"},
            "annotations": {"x": "", "y": None, "z": [1]},
            "syslog_url": "udp://l:514",
        },
    )
    assert updated.config == {"B": "2", "C": "3"}
    assert updated.annotations == {"z": [1]}
    assert updated.syslog_url == "udp://l:514"
    assert updated.updated_at > app.updated_at and updated.created_at == app.created_at
    assert await store.get_app(app.id) == updated
    assert (await store.update_app(app.id, {"syslog_url": ""})).syslog_url is None
    error = await raises(
        ConflictError,
        "Could not update - name is immutable",
        store.update_app(app.id, {"name": "b"}),
    )
    assert error.status == 409
    await raises(
        InvalidInputError,
        "App ID in path does not match ID in body",
        store.update_app(app.id, {"id": "other"}),
    )


async def case_fn_update_merges(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    fn = await store.create_fn(
        fn_body(app.id, "fn", "fnproject/hello", memory=256, config={"A": "1"})
    )
    zeros = {"image": "", "memory": 0, "timeout": 0, "idle_timeout": 0, "name": "fn"}
    assert await store.update_fn(fn.id, {**zeros, "app_id": app.id}) == fn
    updated = await store.update_fn(
        fn.id, {"timeout": 10, "config": {"A": "", "B": "b"}, "annotations": {"k": "v"}}
    )
    assert (updated.memory, updated.timeout, updated.config) == (256, 10, {"B": "b"})
    assert updated.annotations == {"k": "v"} and updated.updated_at > fn.updated_at
    assert await store.get_fn(fn.id) == updated
    for body in [{"name": "other"}, {"app_id": "other"}]:
        await raises(
            InvalidInputError, "Fn names and IDs cannot be modified", store.update_fn(fn.id, body)
        )
    await raises(
        InvalidInputError, m.MSG_FN_INVALID_MEMORY, store.update_fn(fn.id, {"memory": 9000})
    )
    assert await store.get_fn(fn.id) == updated  # a refused update stores nothing


async def case_trigger_update_merges(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    assert await store.update_trigger(trigger.id, {"name": "t", "type": "http"}) == trigger
    updated = await store.update_trigger(
        trigger.id, {"name": "renamed", "source": "/new", "annotations": {"a": 1}}
    )
    assert (updated.name, updated.source, updated.annotations) == ("renamed", "/new", {"a": 1})
    assert await store.find_http_trigger("app", "/new") == (app, fn, updated)
    await raises(NotFoundError, "Trigger not found", store.find_http_trigger("app", "/t"))
    await raises(
        InvalidInputError,
        "Trigger app_id, fn_id and type cannot be modified",
        store.update_trigger(trigger.id, {"fn_id": "another"}),
    )


# --- lists ------------------------------------------------------------------------------------


async def collect(
    page: Callable[[str | None], Awaitable[tuple[list[Any], str | None]]],
) -> tuple[list[Any], int]:
    """Every item, following cursors; and how many pages that took."""
    items: list[Any] = []
    cursor: str | None = None
    for pages in itertools.count(1):
        batch, cursor = await page(cursor)
        items.extend(batch)
        if cursor is None:
            return items, pages
    raise AssertionError("unreachable")


def list_apps_page(
    store: Store, per_page: int, cursor: str | None
) -> Awaitable[tuple[list[App], str | None]]:
    return store.list_apps(cursor=cursor, per_page=per_page)


async def case_apps_page_by_name_with_cursors(store: Store) -> None:
    names = [f"app-{i:03d}" for i in range(250)]
    random.Random(7).shuffle(names)
    for name in names:
        await store.create_app(app_body(name))
    for per_page, pages in [(100, 3), (7, 36), (250, 3), (1000, 3), (0, 9), (-1, 9), (30, 9)]:
        items, used = await collect(functools.partial(list_apps_page, store, per_page))
        assert [a.name for a in items] == sorted(names), per_page  # ordered, none lost, no dup
        assert used == pages, per_page
    first, cursor = await store.list_apps()
    assert len(first) == 30 and cursor == encode_cursor("app-029")
    assert decode_cursor(cursor) == "app-029"
    only, cursor = await store.list_apps(name="app-123")
    assert [a.name for a in only] == ["app-123"] and cursor is None
    assert await store.list_apps(cursor=encode_cursor("app-249")) == ([], None)
    await raises(InvalidInputError, "invalid cursor '%%%'", store.list_apps(cursor="%%%"))


async def case_fns_and_triggers_page_within_their_app(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    other = await store.create_app(app_body("other"))
    first = await store.create_fn(fn_body(app.id, "aaa", "fnproject/hello"))
    await store.create_fn(fn_body(other.id, "stranger", "fnproject/hello"))
    for i in range(120):
        fn = await store.create_fn(fn_body(app.id, f"fn{i:03d}", "fnproject/hello"))
        await store.create_trigger(trigger_body(app.id, fn.id, f"t{i:03d}", "http", f"/t/{i}"))
    await store.create_trigger(trigger_body(app.id, first.id, "t-first", "http", "/first"))
    fns, _ = await collect(lambda c: store.list_fns(app_id=app.id, cursor=c, per_page=50))
    assert [f.name for f in fns] == ["aaa"] + [f"fn{i:03d}" for i in range(120)]
    triggers, pages = await collect(lambda c: store.list_triggers(app_id=app.id, cursor=c))
    assert len(triggers) == 121 and pages == 5
    assert [t.name for t in triggers] == sorted(t.name for t in triggers)
    by_fn, _ = await store.list_triggers(app_id=app.id, fn_id=first.id)
    assert [t.name for t in by_fn] == ["t-first"]
    named, _ = await store.list_triggers(app_id=app.id, name="t007")
    assert [t.source for t in named] == ["/t/7"]
    assert await store.list_fns(app_id="no-such-app") == ([], None)
    assert [f.name for f in (await store.list_fns(app_id=other.id))[0]] == ["stranger"]


# --- deletes ----------------------------------------------------------------------------------


async def case_deleting_a_fn_deletes_its_triggers(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    keep = await store.create_fn(fn_body(app.id, "keep", "fnproject/hello"))
    kept = await store.create_trigger(trigger_body(app.id, keep.id, "kept", "http", "/kept"))
    await store.delete_fn(fn.id)
    await raises(NotFoundError, "Fn not found", store.get_fn(fn.id))
    await raises(NotFoundError, "Trigger not found", store.get_trigger(trigger.id))
    assert await store.list_triggers(app_id=app.id) == ([kept], None)


async def case_deleting_an_app_deletes_its_fns_and_triggers(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    other = await app_fn_trigger(store, "2")
    await store.delete_app(app.id)
    await raises(NotFoundError, "App not found", store.get_app(app.id))
    await raises(NotFoundError, "Fn not found", store.get_fn(fn.id))
    await raises(NotFoundError, "Trigger not found", store.get_trigger(trigger.id))
    assert await store.list_fns(app_id=app.id) == ([], None)
    assert await store.find_http_trigger("app2", "/t2") == other
    # The name is free again.
    await store.create_app(app_body("app"))


async def case_delete_trigger(store: Store) -> None:
    app, fn, trigger = await app_fn_trigger(store)
    await store.delete_trigger(trigger.id)
    await raises(NotFoundError, "Trigger not found", store.delete_trigger(trigger.id))
    assert await store.get_fn(fn.id) == fn


# --- concurrency ------------------------------------------------------------------------------


async def case_concurrent_creates_lose_and_duplicate_nothing(store: Store) -> None:
    outcomes: list[str] = []
    app = await store.create_app(app_body("shared"))

    async def create(i: int) -> None:
        try:
            await store.create_app(app_body(f"app-{i % 25}"))
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")
        await store.create_fn(fn_body(app.id, f"fn-{i}", "fnproject/hello"))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(create, i)
    assert sorted(outcomes) == ["conflict"] * 25 + ["created"] * 25
    apps, _ = await store.list_apps(per_page=100)
    assert sorted(a.name for a in apps) == sorted([f"app-{i}" for i in range(25)] + ["shared"])
    fns, _ = await store.list_fns(app_id=app.id, per_page=100)
    assert sorted(f.name for f in fns) == sorted(f"fn-{i}" for i in range(50))
    assert len({f.id for f in fns}) == 50


# --- secrets ----------------------------------------------------------------------------------


def names_secrets(*names: str) -> dict[str, Any]:
    """The annotations of a fn that names ``names``."""
    return {SECRETS_ANNOTATION: list(names)}


async def case_secrets_put_list_read_and_replace(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    other = await store.create_app(app_body("other"))
    first = await store.put_secret(app.id, "db.password", b"sealed-1")
    assert (first.app_id, first.name) == (app.id, "db.password")
    assert first.created_at == first.updated_at
    await store.put_secret(app.id, "api_key-2", b"sealed-2")
    await store.put_secret(other.id, "db.password", b"other-sealed")
    replaced = await store.put_secret(app.id, "db.password", b"sealed-3")
    assert replaced.created_at == first.created_at
    assert replaced.updated_at > first.updated_at

    listed, cursor = await store.list_secrets(app_id=app.id)
    assert [s.name for s in listed] == ["api_key-2", "db.password"]
    assert cursor is None
    assert listed[1] == replaced
    assert "sealed" not in listed[1].to_json()

    sealed = await store.get_sealed_secrets(app.id, ["db.password", "missing", "api_key-2"])
    assert [(s.name, s.sealed) for s in sealed] == [
        ("db.password", b"sealed-3"),
        ("api_key-2", b"sealed-2"),
    ]
    assert await store.get_sealed_secrets(app.id, []) == []
    theirs = await store.get_sealed_secrets(other.id, ["db.password"])
    assert [s.sealed for s in theirs] == [b"other-sealed"]
    assert await store.any_sealed_secret() is not None


async def case_secrets_page_by_name(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    names = [f"s{i:02d}" for i in range(7)]
    for name in reversed(names):
        await store.put_secret(app.id, name, b"x")
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list_secrets(app_id=app.id, cursor=cursor, per_page=3)
        seen.extend(s.name for s in page)
        if cursor is None:
            break
    assert seen == names


async def case_secret_names_and_missing_things(store: Store) -> None:
    assert await store.any_sealed_secret() is None
    app = await store.create_app(app_body("app"))
    for bad in ("", ".", "..", "a/b", "x" * 65, "sp ace", "é", "a\nb"):
        await raises(InvalidInputError, MSG_SECRET_NAME, store.put_secret(app.id, bad, b"x"))
    await store.put_secret(app.id, "x" * 64, b"x")
    await raises(NotFoundError, "App not found", store.put_secret("nope", "name", b"x"))
    await raises(NotFoundError, "App not found", store.list_secrets(app_id="nope"))
    await raises(NotFoundError, "App not found", store.delete_secret("nope", "name"))
    await raises(NotFoundError, "Secret not found", store.delete_secret(app.id, "name"))
    assert await store.get_sealed_secrets("nope", ["name"]) == []


async def case_fns_may_name_only_their_apps_secrets(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    other = await store.create_app(app_body("other"))
    await store.put_secret(other.id, "token", b"x")
    missing = (
        'Secret "token" named in fnagent.io/secrets does not exist in app "app": create it first'
    )
    body = fn_body(app.id, "fn", "fnproject/hello", annotations=names_secrets("token"))
    await raises(InvalidInputError, missing, store.create_fn(body))
    for bad in (["../x"], "not json", {"a": 1}, [1], '"token"'):
        bad_body = fn_body(app.id, "fn", "fnproject/hello", annotations={SECRETS_ANNOTATION: bad})
        with pytest.raises(InvalidInputError) as raised:
            await store.create_fn(bad_body)
        assert raised.value.message.startswith(MSG_SECRETS_ANNOTATION)
    await store.put_secret(app.id, "token", b"x")
    fn = await store.create_fn(body)
    assert fn.annotations == names_secrets("token")
    # A string holding the list, as a client that does not parse JSON values sends it.
    text = {SECRETS_ANNOTATION: '["token"]'}
    await store.create_fn(fn_body(app.id, "fn2", "fnproject/hello", annotations=text))

    plain = await store.create_fn(fn_body(app.id, "plain", "fnproject/hello"))
    missing_other = missing.replace('"token"', '"other"')
    await raises(
        InvalidInputError,
        missing_other,
        store.update_fn(plain.id, {"annotations": names_secrets("token", "other")}),
    )
    assert await store.get_fn(plain.id) == plain
    updated = await store.update_fn(plain.id, {"annotations": names_secrets("token")})
    assert updated.annotations == names_secrets("token")


async def case_a_named_secret_cannot_be_deleted(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    await store.put_secret(app.id, "token", b"x")
    await store.put_secret(app.id, "spare", b"y")
    annotations = names_secrets("token")
    fn = await store.create_fn(fn_body(app.id, "b-fn", "fnproject/hello", annotations=annotations))
    await store.create_fn(fn_body(app.id, "a-fn", "fnproject/hello", annotations=annotations))
    in_use = (
        'Secret "token" is still named by fns "a-fn", "b-fn" (fnagent.io/secrets): '
        "remove it there first"
    )
    await raises(ConflictError, in_use, store.delete_secret(app.id, "token"))
    await store.delete_secret(app.id, "spare")
    await raises(NotFoundError, "Secret not found", store.delete_secret(app.id, "spare"))
    await store.delete_fn(fn.id)
    in_use_one = 'Secret "token" is still named by fn "a-fn" (fnagent.io/secrets): '
    await raises(
        ConflictError, in_use_one + "remove it there first", store.delete_secret(app.id, "token")
    )


async def case_deleting_an_app_deletes_its_secrets(store: Store) -> None:
    app = await store.create_app(app_body("app"))
    await store.put_secret(app.id, "token", b"x")
    await store.create_fn(
        fn_body(app.id, "fn", "fnproject/hello", annotations=names_secrets("token"))
    )
    await store.delete_app(app.id)
    assert await store.any_sealed_secret() is None
    again = await store.create_app(app_body("app"))
    listed, _ = await store.list_secrets(app_id=again.id)
    assert listed == []


CASES: list[Case] = [
    case_every_field_round_trips,
    case_find_http_trigger,
    case_unique_constraints_conflict,
    case_missing_things_are_404_with_fns_messages,
    case_a_trigger_must_point_at_a_fn_of_its_app,
    case_validation_comes_first_with_fns_messages,
    case_ids_in_create_bodies_are_refused,
    case_app_update_merges,
    case_fn_update_merges,
    case_trigger_update_merges,
    case_apps_page_by_name_with_cursors,
    case_fns_and_triggers_page_within_their_app,
    case_deleting_a_fn_deletes_its_triggers,
    case_deleting_an_app_deletes_its_fns_and_triggers,
    case_delete_trigger,
    case_concurrent_creates_lose_and_duplicate_nothing,
    case_secrets_put_list_read_and_replace,
    case_secrets_page_by_name,
    case_secret_names_and_missing_things,
    case_fns_may_name_only_their_apps_secrets,
    case_a_named_secret_cannot_be_deleted,
    case_deleting_an_app_deletes_its_secrets,
]
