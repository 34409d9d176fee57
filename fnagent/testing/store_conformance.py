"""Store conformance: cases every ``Store`` backend must pass, SQLite today and PostgreSQL
later (the model is Fn's ``api/datastore/datastoretest``).

Each case is a plain ``async def case_*(store)`` listed in ``CASES`` (this module is not a test
module, so pytest collects nothing here). A case uses only the ``fnagent.store.base.Store``
protocol and the records' public fields; it asserts Fn's messages and statuses exactly.

Runner contract (``tests/unit/test_store_conformance.py``): hand each case a fresh, empty,
open store whose clock is a ``FakeClock`` (so every write has a distinct, later timestamp),
and close it afterwards. The ``shared_case_*`` in ``SHARED_CASES`` take several open stores on
one fresh, empty database (several agents sharing it), for backends whose database can be
shared.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import pytest

from fnagent.errors import FnAgentError, InvalidInputError
from fnagent.ids import new_id
from fnagent.store import App, ConflictError, FnRecord, NotFoundError, Store, Trigger
from fnagent.store import models as m
from fnagent.store import queue as q
from fnagent.store.calls import CallFilter, CallRecord
from fnagent.store.models import MAX_PER_PAGE, decode_cursor, encode_cursor
from fnagent.store.queue import QueuedCall
from fnagent.store.secrets import MSG_SECRET_NAME, MSG_SECRETS_ANNOTATION, SECRETS_ANNOTATION

T = TypeVar("T")

Case = Callable[[Store], Awaitable[None]]
SharedCase = Callable[[list[Store]], Awaitable[None]]


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


async def raises(
    kind: type[FnAgentError], message: str, call: Awaitable[T], *, match: str | None = None
) -> FnAgentError:
    """Await ``call``; it must raise ``kind`` with exactly Fn's ``message`` (or, given
    ``match``, a message that contains it)."""
    with pytest.raises(kind) as raised:
        await call
    if match is None:
        assert raised.value.message == message
    else:
        assert match in raised.value.message, raised.value.message
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


async def case_nul_characters_are_refused_in_every_text_field(store: Store) -> None:
    # PostgreSQL's text cannot hold NUL: every backend refuses it up front, the same way.
    # (config and annotations are JSON text, where NUL is escaped, and names have own rules.)
    app = await store.create_app(app_body("app"))
    fn = await store.create_fn(fn_body(app.id, "fn", "fnproject/hello"))
    for call in [
        store.create_app(app_body("nul", syslog_url="tcp://logs\x00:514")),
        store.update_app(app.id, {"syslog_url": "udp://\x00"}),
        store.create_fn(fn_body(app.id, "nul", "fnproject/hello\x00")),
        store.update_fn(fn.id, {"image": "fnproject/\x00hello"}),
    ]:
        error = await raises(InvalidInputError, "", call, match="NUL")
        assert error.status == 400
    assert await store.list_apps() == ([app], None)
    assert await store.get_fn(fn.id) == fn


async def case_keys_holding_nul_name_nothing(store: Store) -> None:
    # A client can send %00 in a path or query. No stored id or name holds NUL (every write
    # refuses it), so such a key names nothing: the usual 404 or an empty list, on every
    # backend (PostgreSQL's text cannot even take it as a parameter).
    app, fn, trigger = await app_fn_trigger(store)
    nul = "x\x00"
    not_found: list[tuple[str, Awaitable[Any]]] = [
        ("App not found", store.get_app(nul)),
        ("App not found", store.get_app_by_name(nul)),
        ("App not found", store.update_app(nul, {})),
        ("App not found", store.delete_app(nul)),
        ("App not found", store.create_fn(fn_body(nul, "f", "fnproject/hello"))),
        ("App not found", store.create_trigger(trigger_body(nul, fn.id, "t2", "http", "/t2"))),
        ("App not found", store.find_http_trigger(nul, "/t")),
        ("App not found", store.put_secret(nul, "name", b"x")),
        ("App not found", store.list_secrets(app_id=nul)),
        ("App not found", store.delete_secret(nul, "name")),
        ("Fn not found", store.get_fn(nul)),
        ("Fn not found", store.update_fn(nul, {})),
        ("Fn not found", store.delete_fn(nul)),
        ("Fn not found", store.create_trigger(trigger_body(app.id, nul, "t2", "http", "/t2"))),
        ("Fn not found", store.get_call(nul, "c")),
        ("Fn not found", store.list_calls(nul)),
        ("Fn not found", store.get_call_log(nul, "c")),
        ("Trigger not found", store.get_trigger(nul)),
        ("Trigger not found", store.update_trigger(nul, {})),
        ("Trigger not found", store.delete_trigger(nul)),
        ("Trigger not found", store.get_trigger_by_source(app.id, "http", "/\x00")),
        ("Call not found", store.get_call(fn.id, nul)),
        ("Call not found", store.get_queued_call(nul)),
        ("Call log not found", store.get_call_log(fn.id, nul)),
        ("Secret not found", store.delete_secret(app.id, nul)),
    ]
    for message, call in not_found:
        await raises(NotFoundError, message, call)
    assert await store.list_apps(name=nul) == ([], None)
    assert await store.list_fns(app_id=nul) == ([], None)
    assert await store.list_fns(app_id=app.id, name=nul) == ([], None)
    assert await store.list_triggers(app_id=nul) == ([], None)
    assert await store.list_triggers(app_id=app.id, fn_id=nul) == ([], None)
    assert await store.list_triggers(app_id=app.id, name=nul) == ([], None)
    assert await store.get_sealed_secrets(nul, ["name"]) == []
    assert await store.get_sealed_secrets(app.id, [nul]) == []
    # A cursor is ours to hand out, and none holds NUL.
    await raises(InvalidInputError, "", store.list_apps(cursor=encode_cursor(nul)), match="cursor")
    assert await store.get_trigger(trigger.id) == trigger


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


async def case_cancelled_calls_leave_the_store_usable(store: Store) -> None:
    created: list[App] = []

    async def create(i: int) -> None:
        created.append(await store.create_app(app_body(f"app-{i:02d}")))
        if len(created) == 3:
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
    apps, _ = await store.list_apps(per_page=100)
    # A cancelled call commits or rolls back as a whole: every app read back is whole.
    assert {a.name for a in created} <= {a.name for a in apps} and len(apps) < 20
    for app in apps:
        assert await store.get_app(app.id) == app
    for i in range(12):  # more calls than a pool holds: none was lost to the cancellations
        await store.create_app(app_body(f"after-{i:02d}"))


# --- detached calls: the queue ----------------------------------------------------------------


def queued_call(call_id: str, *, at: float = 1000.0, **fields: Any) -> QueuedCall:
    """A detached call as the invoke path stores it, created at ``at``."""
    return QueuedCall(
        id=call_id,
        fn_id=fields.pop("fn_id", "fn1"),
        app_id=fields.pop("app_id", "app1"),
        trigger=fields.pop("trigger", False),
        method=fields.pop("method", "POST"),
        url=fields.pop("url", f"http://127.0.0.1:8080/invoke/{call_id}"),
        headers=fields.pop("headers", (("Content-Type", "text/plain"), ("X-Ünï", "v"))),
        body=fields.pop("body", b"\x00body\xff"),
        created_at=at,
        **fields,
    )


async def case_a_queued_call_round_trips_and_is_leased_once(store: Store) -> None:
    call = queued_call("c1", callback_url="http://127.0.0.1:9/cb", trigger=True)
    await store.enqueue_call(call)
    assert await store.get_queued_call("c1") == replace(call, not_before=call.created_at)
    assert await store.count_queued() == 1
    [leased] = await store.lease_calls(owner="a", limit=5, now=1001.0, lease_s=30)
    assert leased == replace(
        call,
        status=q.RUNNING,
        attempts=1,
        not_before=1000.0,
        lease_owner="a",
        lease_expires=1031.0,
        started_at=1001.0,
    )
    assert await store.count_queued() == 0
    # Leased: nobody else gets it, not even its owner again, until the lease expires.
    assert await store.lease_calls(owner="b", limit=5, now=1030.0, lease_s=30) == []
    # Finished: the call leaves the queue, once.
    assert await store.finish_call("c1", owner="a")
    await raises(NotFoundError, "Call not found", store.get_queued_call("c1"))
    assert not await store.finish_call("c1", owner="a")
    assert await store.lease_calls(owner="b", limit=5, now=5000.0, lease_s=30) == []
    assert await store.count_queued() == 0


async def case_calls_are_leased_oldest_due_first_up_to_the_limit(store: Store) -> None:
    for i, due in enumerate((1003.0, 1001.0, 1002.0, 2000.0)):
        await store.enqueue_call(queued_call(f"c{i}", not_before=due))
    leased = await store.lease_calls(owner="a", limit=2, now=1500.0, lease_s=30)
    assert [c.id for c in leased] == ["c1", "c2"]
    leased = await store.lease_calls(owner="a", limit=5, now=1500.0, lease_s=30)
    assert [c.id for c in leased] == ["c0"]  # c3 is not due yet
    assert await store.count_queued() == 1
    assert await store.lease_calls(owner="a", limit=0, now=3000.0, lease_s=30) == []


async def case_a_lease_takes_calls_of_hot_fns_at_once_and_others_after_a_delay(
    store: Store,
) -> None:
    """``hot`` fns' calls are runnable when due; the others' once due by ``cold_due``."""
    await store.enqueue_call(queued_call("cold", fn_id="fn1", not_before=1000.0))
    await store.enqueue_call(queued_call("hot", fn_id="fn2", not_before=1000.5))
    leased = await store.lease_calls(
        owner="a", limit=5, now=1000.6, lease_s=30, hot=["fn2"], cold_due=999.6
    )
    assert [c.id for c in leased] == ["hot"]
    # Another agent, with nothing hot, takes the cold one once it has waited the delay.
    assert await store.lease_calls(owner="b", limit=5, now=1000.9, lease_s=30, cold_due=999.9) == []
    [late] = await store.lease_calls(owner="b", limit=5, now=1001.0, lease_s=30, cold_due=1000.0)
    assert late.id == "cold"
    # An expired lease waits for no one.
    [again] = await store.lease_calls(owner="c", limit=5, now=1030.8, lease_s=30, cold_due=0.0)
    assert (again.id, again.attempts) == ("hot", 2)


async def case_an_expired_lease_makes_the_call_runnable_again(store: Store) -> None:
    await store.enqueue_call(queued_call("c1"))
    await store.lease_calls(owner="dead", limit=1, now=1000.0, lease_s=10)
    assert await store.renew_leases(owner="dead", call_ids=["c1"], now=1005.0, lease_s=10) == {"c1"}
    assert await store.lease_calls(owner="b", limit=1, now=1014.0, lease_s=10) == []
    [again] = await store.lease_calls(owner="b", limit=1, now=1015.0, lease_s=10)
    assert (again.attempts, again.lease_owner, again.lease_expires) == (2, "b", 1025.0)
    # The dead owner lost it: it can neither renew, requeue nor finish it.
    assert await store.renew_leases(owner="dead", call_ids=["c1"], now=1016, lease_s=10) == set()
    assert not await store.requeue_call("c1", owner="dead", not_before=0, error="x")
    assert not await store.finish_call("c1", owner="dead")
    assert (await store.get_queued_call("c1")).lease_owner == "b"


async def case_a_requeued_call_waits_for_its_time_and_keeps_the_reason(store: Store) -> None:
    await store.enqueue_call(queued_call("c1"))
    await store.lease_calls(owner="a", limit=1, now=1000.0, lease_s=30)
    assert await store.requeue_call("c1", owner="a", not_before=1010.0, error="too busy")
    waiting = await store.get_queued_call("c1")
    assert (waiting.status, waiting.not_before) == (q.QUEUED, 1010.0)
    assert waiting.last_error == "too busy"
    assert waiting.lease_owner is None and await store.count_queued() == 1
    assert await store.lease_calls(owner="a", limit=1, now=1009.9, lease_s=30) == []
    [again] = await store.lease_calls(owner="a", limit=1, now=1010.0, lease_s=30)
    assert (again.attempts, again.last_error) == (2, "too busy")
    # A requeued call is not its owner's any more: only a lease makes it finishable.
    await store.enqueue_call(queued_call("c2"))
    await store.lease_calls(owner="a", limit=1, now=1000.0, lease_s=30)
    assert await store.requeue_call("c2", owner="a", not_before=2000.0, error="later")
    assert not await store.finish_call("c2", owner="a")
    assert (await store.get_queued_call("c2")).status == q.QUEUED


async def case_a_restarted_owner_takes_its_calls_back_at_once(store: Store) -> None:
    for call_id in ("c1", "c2", "c3"):
        await store.enqueue_call(queued_call(call_id))
    await store.lease_calls(owner="me", limit=2, now=1000.0, lease_s=300)
    await store.lease_calls(owner="other", limit=1, now=1000.0, lease_s=300)
    assert await store.release_leases("me", now=1001.0) == 2
    assert await store.count_queued() == 2
    leased = await store.lease_calls(owner="me", limit=5, now=1001.0, lease_s=300)
    assert sorted((c.id, c.attempts) for c in leased) == [("c1", 2), ("c2", 2)]
    assert (await store.get_queued_call("c3")).lease_owner == "other"


async def case_concurrent_enqueues_all_commit_and_lease_once(store: Store) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(store.enqueue_call, queued_call(f"c{i:02}", at=1000.0 + i))
    assert await store.count_queued() == 40
    leased: list[QueuedCall] = []

    async def lease(owner: str) -> None:
        leased.extend(await store.lease_calls(owner=owner, limit=7, now=2000.0, lease_s=30))

    async with anyio.create_task_group() as tg:
        for owner in "abcdefgh":
            tg.start_soon(lease, owner)
    assert sorted(c.id for c in leased) == [f"c{i:02}" for i in range(40)]


# --- call records and logs -------------------------------------------------------------------

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def call_record(fn: FnRecord, n: int, **fields: Any) -> CallRecord:
    """The ``n``-th call of ``fn``: created ``n`` seconds after T0, its id sorting the same."""
    created = T0 + timedelta(seconds=n)
    values: dict[str, Any] = dict(
        id=new_id(int(created.timestamp() * 1000)),
        fn_id=fn.id,
        app_id=fn.app_id,
        status="success",
        created_at=created,
        started_at=created + timedelta(milliseconds=3),
        completed_at=created + timedelta(milliseconds=10),
        http_status=200,
        start="hot",
        queued_ms=1.5,
        start_ms=1.5,
        exec_ms=7.0,
    )
    values.update(fields)
    return CallRecord(**values)


def queued_record(fn: FnRecord, n: int) -> CallRecord:
    """The ``n``-th call of ``fn`` as a detached call waiting for its first attempt."""
    return call_record(
        fn,
        n,
        status="queued",
        started_at=None,
        completed_at=None,
        http_status=None,
        start=None,
        detached=True,
        attempts=0,
        queued_ms=None,
        start_ms=None,
        exec_ms=None,
    )


async def case_call_records_round_trip_and_upsert(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    queued = queued_record(fn, 1)
    assert await store.put_calls([queued], {}) == 1
    assert await store.get_call(fn.id, queued.id) == queued
    await raises(NotFoundError, "Call log not found", store.get_call_log(fn.id, queued.id))
    # A later state replaces the earlier one, the log comes with it; nothing is added.
    done = CallRecord(
        **{
            **queued.__dict__,
            "status": "error",
            "http_status": 502,
            "error": "function failed",
            "start": "cold",
            "attempts": 2,
            "started_at": queued.created_at + timedelta(seconds=1),
            "completed_at": queued.created_at + timedelta(seconds=2),
            "queued_ms": 0.25,
            "start_ms": 180.125,
            "exec_ms": 4.0,
        }
    )
    assert await store.put_calls([done], {done.id: b"line 1\nline \xff 2\n"}) == 1
    assert await store.get_call(fn.id, done.id) == done
    assert await store.get_call_log(fn.id, done.id) == b"line 1\nline \xff 2\n"
    await store.put_calls([done], {done.id: b"replaced\n"})
    assert await store.get_call_log(fn.id, done.id) == b"replaced\n"
    assert await store.list_calls(fn.id) == ([done], None)


async def case_a_call_record_never_goes_back(store: Store) -> None:
    # On a shared store one call's records come from two agents, each written behind: the
    # accepting agent's "queued" may arrive after the running agent's outcome.
    app, fn, _ = await app_fn_trigger(store)
    queued = queued_record(fn, 1)
    running = replace(queued, status="running", attempts=1, started_at=queued.created_at)
    done = replace(running, status="success", http_status=200, completed_at=queued.created_at)
    await store.put_calls([done], {})
    assert await store.put_calls([queued], {}) == 1  # written: the fn exists; not applied
    await store.put_calls([running], {})
    assert await store.get_call(fn.id, done.id) == done
    # A retry: queued again after attempt 1 is ahead of attempt 1 and behind attempt 2.
    requeued = replace(queued, attempts=1, error="busy")
    await store.put_calls([running], {})
    await store.put_calls([requeued], {})
    assert await store.get_call(fn.id, queued.id) == requeued
    await store.put_calls([running], {})
    assert await store.get_call(fn.id, queued.id) == requeued
    second = replace(running, attempts=2)
    await store.put_calls([second], {})
    assert await store.get_call(fn.id, queued.id) == second


async def case_a_large_batch_of_call_records_is_written_whole(store: Store) -> None:
    # A store may write a batch in several statements (SQLite: up to 64 rows an INSERT): each
    # record and log is in, and within one batch too a call's record never goes back.
    app, fn, _ = await app_fn_trigger(store)
    calls = [call_record(fn, n) for n in range(150)]
    logs = {call.id: f"log {n}\n".encode() for n, call in enumerate(calls) if n % 2}
    # calls[3] queued again, behind its outcome in the same batch: not applied.
    again = replace(
        queued_record(fn, 3), id=calls[3].id, created_at=calls[3].created_at, attempts=0
    )
    assert await store.put_calls([*calls, again], logs) == len(calls) + 1
    listed: list[CallRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_calls(fn.id, cursor=cursor, per_page=MAX_PER_PAGE)
        listed.extend(page)
        if cursor is None:
            break
    assert listed == calls[::-1]
    for n in (0, 1, 63, 64, 65, 127, 128, 149):
        expected = logs.get(calls[n].id)
        if expected is None:
            await raises(
                NotFoundError, "Call log not found", store.get_call_log(fn.id, calls[n].id)
            )
        else:
            assert await store.get_call_log(fn.id, calls[n].id) == expected


async def case_call_records_404s(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    other = await store.create_fn(fn_body(app.id, "other", "fnproject/hello"))
    call = call_record(fn, 1)
    await store.put_calls([call], {call.id: b"x"})
    await raises(NotFoundError, "Call not found", store.get_call(fn.id, "nope"))
    # A call is only found under its own fn.
    await raises(NotFoundError, "Call not found", store.get_call(other.id, call.id))
    await raises(NotFoundError, "Call log not found", store.get_call_log(other.id, call.id))
    await raises(NotFoundError, "Call log not found", store.get_call_log(fn.id, "nope"))
    await raises(NotFoundError, "Fn not found", store.get_call("nope", call.id))
    await raises(NotFoundError, "Fn not found", store.get_call_log("nope", call.id))
    await raises(NotFoundError, "Fn not found", store.list_calls("nope"))
    await raises(InvalidInputError, "invalid cursor '%%%'", store.list_calls(fn.id, cursor="%%%"))


async def case_call_records_of_a_deleted_fn_are_skipped(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    gone = await store.create_fn(fn_body(app.id, "gone", "fnproject/hello"))
    await store.delete_fn(gone.id)
    kept, skipped = call_record(fn, 1), call_record(gone, 2)
    written = await store.put_calls([kept, skipped], {kept.id: b"a", skipped.id: b"b"})
    assert written == 1
    assert await store.list_calls(fn.id) == ([kept], None)
    assert await store.put_calls([], {}) == 0


async def case_calls_list_newest_first_with_filters(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    other = await store.create_fn(fn_body(app.id, "other", "fnproject/hello"))
    statuses = ["success", "error", "timeout", "cancelled", "running"]
    calls = [call_record(fn, n, status=statuses[n % 5]) for n in range(75)]
    random.Random(3).shuffle(calls)
    await store.put_calls(calls, {})
    await store.put_calls([call_record(other, 5)], {})
    newest_first = sorted(calls, key=lambda c: c.created_at, reverse=True)
    items, pages = await collect(lambda c: store.list_calls(fn.id, cursor=c, per_page=20))
    assert items == newest_first and pages == 4
    first, cursor = await store.list_calls(fn.id)
    assert first == newest_first[:30] and cursor is not None
    errors, _ = await store.list_calls(fn.id, where=CallFilter(status="error"), per_page=100)
    assert errors == [c for c in newest_first if c.status == "error"] and len(errors) == 15
    window = CallFilter(from_time=T0 + timedelta(seconds=10), to_time=T0 + timedelta(seconds=19))
    inside, _ = await store.list_calls(fn.id, where=window, per_page=100)
    assert [c.created_at for c in inside] == [T0 + timedelta(seconds=n) for n in range(19, 9, -1)]
    both = CallFilter(status="success", from_time=T0 + timedelta(seconds=50))
    assert [c.created_at for c in (await store.list_calls(fn.id, where=both))[0]] == [
        T0 + timedelta(seconds=n) for n in (70, 65, 60, 55, 50)
    ]


async def case_retention_keeps_the_newest_per_fn_and_drops_old_ones(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    other = await store.create_fn(fn_body(app.id, "other", "fnproject/hello"))
    mine = [call_record(fn, n) for n in range(10)]
    theirs = [call_record(other, n) for n in range(3)]
    await store.put_calls(mine + theirs, {c.id: b"log" for c in mine + theirs})
    assert await store.prune_calls(keep_per_fn=4, before=T0) == 6
    assert (await store.list_calls(fn.id))[0] == mine[:-5:-1]
    assert (await store.list_calls(other.id))[0] == theirs[::-1]
    await raises(NotFoundError, "Call log not found", store.get_call_log(fn.id, mine[0].id))
    # Age: calls created before the bound go, whatever the count.
    assert await store.prune_calls(keep_per_fn=100, before=T0 + timedelta(seconds=8)) == 5
    assert (await store.list_calls(fn.id))[0] == [mine[9], mine[8]]
    assert (await store.list_calls(other.id))[0] == []
    assert await store.get_call_log(fn.id, mine[9].id) == b"log"
    assert await store.prune_calls(keep_per_fn=100, before=T0) == 0


async def case_retention_deletes_at_most_max_rows_a_transaction_oldest_first(
    store: Store,
) -> None:
    app, fn, _ = await app_fn_trigger(store)
    other = await store.create_fn(fn_body(app.id, "other", "fnproject/hello"))
    mine = [call_record(fn, n) for n in range(10)]
    theirs = [call_record(other, n) for n in range(10, 16)]
    await store.put_calls(mine + theirs, {c.id: b"log" for c in mine + theirs})
    # Too old: mine[0:3]; beyond the 4 newest: mine[3:6] and theirs[0:2].
    before = T0 + timedelta(seconds=3)
    assert await store.prune_calls(keep_per_fn=4, before=before, max_rows=2) == 2
    assert (await store.list_calls(fn.id))[0] == mine[:1:-1]  # the oldest two went first
    assert await store.prune_calls(keep_per_fn=4, before=before, max_rows=3) == 3
    assert await store.prune_calls(keep_per_fn=4, before=before, max_rows=3) == 3
    assert await store.prune_calls(keep_per_fn=4, before=before, max_rows=3) == 0
    assert (await store.list_calls(fn.id))[0] == mine[:-5:-1]
    assert (await store.list_calls(other.id))[0] == theirs[:-5:-1]
    await raises(NotFoundError, "Call log not found", store.get_call_log(fn.id, mine[5].id))


async def case_deleting_a_fn_or_app_deletes_its_calls_and_logs(store: Store) -> None:
    app, fn, _ = await app_fn_trigger(store)
    keep = await store.create_fn(fn_body(app.id, "keep", "fnproject/hello"))
    gone, kept = call_record(fn, 1), call_record(keep, 2)
    await store.put_calls([gone, kept], {gone.id: b"a", kept.id: b"b"})
    await store.delete_fn(fn.id)
    assert await store.get_call(keep.id, kept.id) == kept
    # The same fn name again starts with no calls, and the old call's id is free.
    again = await store.create_fn(fn_body(app.id, "fn", "fnproject/hello"))
    assert await store.list_calls(again.id) == ([], None)
    reborn = CallRecord(**{**gone.__dict__, "fn_id": again.id})
    await store.put_calls([reborn], {})
    await raises(NotFoundError, "Call log not found", store.get_call_log(again.id, gone.id))
    await store.delete_app(app.id)
    other_app, other_fn, _ = await app_fn_trigger(store, "2")
    assert await store.put_calls([kept], {kept.id: b"b"}) == 0  # its fn went with the app
    await raises(NotFoundError, "Fn not found", store.get_call(keep.id, kept.id))
    assert await store.list_calls(other_fn.id) == ([], None)


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
    case_keys_holding_nul_name_nothing,
    case_nul_characters_are_refused_in_every_text_field,
    case_app_update_merges,
    case_fn_update_merges,
    case_trigger_update_merges,
    case_apps_page_by_name_with_cursors,
    case_fns_and_triggers_page_within_their_app,
    case_deleting_a_fn_deletes_its_triggers,
    case_deleting_an_app_deletes_its_fns_and_triggers,
    case_delete_trigger,
    case_concurrent_creates_lose_and_duplicate_nothing,
    case_cancelled_calls_leave_the_store_usable,
    case_a_queued_call_round_trips_and_is_leased_once,
    case_calls_are_leased_oldest_due_first_up_to_the_limit,
    case_a_lease_takes_calls_of_hot_fns_at_once_and_others_after_a_delay,
    case_an_expired_lease_makes_the_call_runnable_again,
    case_a_requeued_call_waits_for_its_time_and_keeps_the_reason,
    case_a_restarted_owner_takes_its_calls_back_at_once,
    case_concurrent_enqueues_all_commit_and_lease_once,
    case_call_records_round_trip_and_upsert,
    case_a_call_record_never_goes_back,
    case_a_large_batch_of_call_records_is_written_whole,
    case_call_records_404s,
    case_call_records_of_a_deleted_fn_are_skipped,
    case_calls_list_newest_first_with_filters,
    case_retention_keeps_the_newest_per_fn_and_drops_old_ones,
    case_retention_deletes_at_most_max_rows_a_transaction_oldest_first,
    case_deleting_a_fn_or_app_deletes_its_calls_and_logs,
    case_secrets_put_list_read_and_replace,
    case_secrets_page_by_name,
    case_secret_names_and_missing_things,
    case_fns_may_name_only_their_apps_secrets,
    case_a_named_secret_cannot_be_deleted,
    case_deleting_an_app_deletes_its_secrets,
]


# --- several stores on one database (several agents) ------------------------------------------


async def race(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the calls at once; each one's result, or the FnAgentError it raised."""
    outcomes: list[Any] = [None] * len(calls)

    async def run(i: int) -> None:
        try:
            outcomes[i] = await calls[i]()
        except FnAgentError as exc:
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(run, i)
    return outcomes


def one_winner(outcomes: list[Any], message: str) -> Any:
    """Exactly one outcome is a record; every other is Fn's 409 with ``message``."""
    errors = [o for o in outcomes if isinstance(o, FnAgentError)]
    assert len(outcomes) - len(errors) == 1, outcomes
    assert [(e.status, e.message) for e in errors] == [(409, message)] * len(errors)
    return next(o for o in outcomes if not isinstance(o, FnAgentError))


async def shared_case_uniqueness_holds_across_stores(stores: list[Store]) -> None:
    racers = stores * 2
    app = one_winner(
        await race([functools.partial(s.create_app, app_body("app")) for s in racers]),
        "App already exists",
    )
    fn = one_winner(
        await race(
            [
                functools.partial(s.create_fn, fn_body(app.id, "fn", "fnproject/hello"))
                for s in racers
            ]
        ),
        "Fn with specified name already exists",
    )
    by_source = [
        functools.partial(s.create_trigger, trigger_body(app.id, fn.id, f"t{i}", "http", "/same"))
        for i, s in enumerate(racers)
    ]
    one_winner(await race(by_source), "Trigger with the same type and source exists on this app")
    by_name = [
        functools.partial(s.create_trigger, trigger_body(app.id, fn.id, "same", "http", f"/{i}"))
        for i, s in enumerate(racers)
    ]
    one_winner(await race(by_name), "Trigger already exists")
    for store in stores:  # every store sees the same registry
        assert await store.get_app_by_name("app") == app
        triggers, _ = await store.list_triggers(app_id=app.id)
        assert len(triggers) == 2


async def shared_case_a_write_through_one_store_is_read_through_another(
    stores: list[Store],
) -> None:
    first, second = stores[0], stores[1]
    app, fn, trigger = await app_fn_trigger(first)
    updated = await second.update_fn(fn.id, {"image": "fnproject/hello:2"})
    assert await first.get_fn(fn.id) == updated
    assert await first.find_http_trigger("app", "/t") == (app, updated, trigger)
    await second.delete_app(app.id)
    await raises(NotFoundError, "Fn not found", first.get_fn(fn.id))


async def shared_case_agents_leasing_at_once_lease_each_call_once(stores: list[Store]) -> None:
    # Several agents share one queue (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED): two
    # leasers per store, together able to take twice the calls, race for them.
    total = 8 * len(stores)
    for i in range(total):
        await stores[i % len(stores)].enqueue_call(queued_call(f"c{i:03}", at=1000.0 + i))
    leased: list[tuple[str, QueuedCall]] = []

    async def lease(owner: str, store: Store) -> None:
        for _ in range(4):
            batch = await store.lease_calls(owner=owner, limit=2, now=2000.0, lease_s=30)
            leased.extend((owner, call) for call in batch)

    async with anyio.create_task_group() as tg:
        for i, store in enumerate(stores * 2):
            tg.start_soon(lease, f"agent{i}", store)
    # A lease returns fewer than asked only when the rest is taken: every call went, once.
    assert sorted(call.id for _, call in leased) == [f"c{i:03}" for i in range(total)]
    for owner, call in leased:
        assert (call.lease_owner, call.attempts, call.status) == (owner, 1, q.RUNNING)
        assert (await stores[0].get_queued_call(call.id)).lease_owner == owner
    assert await stores[-1].count_queued() == 0


async def shared_case_a_secret_named_while_deleted_is_either_kept_or_not_named(
    stores: list[Store],
) -> None:
    # One agent names a secret in a fn while another deletes the secret: one of the two must
    # lose (400 missing secret, or 409 in use), never both win.
    app = await stores[0].create_app(app_body("app"))
    pairs = 12
    fns = []
    for i in range(pairs):
        await stores[i % len(stores)].put_secret(app.id, f"s{i}", b"x")
        fns.append(await stores[0].create_fn(fn_body(app.id, f"fn{i}", "fnproject/hello")))
    calls: list[Callable[[], Awaitable[Any]]] = []
    for i, fn in enumerate(fns):
        namer, deleter = stores[i % len(stores)], stores[(i + 1) % len(stores)]
        patch = {"annotations": names_secrets(f"s{i}")}
        calls.append(functools.partial(namer.update_fn, fn.id, patch))
        calls.append(functools.partial(deleter.delete_secret, app.id, f"s{i}"))
    outcomes = await race(calls)
    kept = {s.name for s in (await stores[0].list_secrets(app_id=app.id, per_page=100))[0]}
    for i, fn in enumerate(fns):
        named, deleted = outcomes[2 * i], outcomes[2 * i + 1]
        if isinstance(named, FnAgentError):
            assert (named.status, deleted) == (400, None), (named, deleted)
            assert f"s{i}" not in kept
            assert (await stores[0].get_fn(fn.id)).annotations == {}
        else:
            assert isinstance(deleted, ConflictError), deleted
            assert f"s{i}" in kept


async def shared_case_records_written_while_their_fn_is_deleted(stores: list[Store]) -> None:
    # One agent writes call records while another deletes their fn: the write succeeds (the
    # records of a fn gone first are skipped), the delete too, and nothing of the fn stays.
    app = await stores[0].create_app(app_body("app"))
    fns = [
        await stores[0].create_fn(fn_body(app.id, f"fn{i}", "fnproject/hello")) for i in range(12)
    ]
    calls: list[Callable[[], Awaitable[Any]]] = []
    for i, fn in enumerate(fns):
        writer, deleter = stores[i % len(stores)], stores[(i + 1) % len(stores)]
        records = [call_record(fn, n) for n in range(20)]
        calls.append(functools.partial(writer.put_calls, records, {records[0].id: b"log"}))
        calls.append(functools.partial(deleter.delete_fn, fn.id))
    outcomes = await race(calls)
    assert not [o for o in outcomes if isinstance(o, FnAgentError)], outcomes
    assert all(written in (0, 20) for written in outcomes[::2]), outcomes
    assert await stores[0].list_fns(app_id=app.id) == ([], None)
    assert await stores[0].prune_calls(keep_per_fn=0, before=T0 + timedelta(days=1)) == 0


SHARED_CASES: list[SharedCase] = [
    shared_case_uniqueness_holds_across_stores,
    shared_case_a_write_through_one_store_is_read_through_another,
    shared_case_agents_leasing_at_once_lease_each_call_once,
    shared_case_a_secret_named_while_deleted_is_either_kept_or_not_named,
    shared_case_records_written_while_their_fn_is_deleted,
]
