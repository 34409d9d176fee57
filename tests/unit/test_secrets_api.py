"""The secrets routes in process: write-only answers, 400/404/409 rules, what the agent gets,
a change rolling the fns that name the secret forward, and the key checks at start."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fnagent.errors import SecretKeyError
from fnagent.secretbox import SecretBox
from fnagent.server import openapi
from fnagent.server.invoke import fn_by_id
from fnagent.server.secrets import default_key_file, open_secretbox
from fnagent.server.state import ServerState
from fnagent.store import SQLiteStore
from tests.apitest import Client, StubAgent, make_state

pytestmark = pytest.mark.anyio

VALUE = "s3cr3t-\u2713-value"
ANNOTATION = "fnagent.io/secrets"


@pytest.fixture
async def agent() -> StubAgent:
    return StubAgent()


@pytest.fixture
async def state(anyio_backend: str, agent: StubAgent) -> AsyncIterator[ServerState]:
    async with SQLiteStore(":memory:") as store:
        yield make_state(store, agent)


@pytest.fixture
def client(state: ServerState) -> Client:
    return Client(state)


async def answer(client: Client, method: str, path: str, document: Any = None) -> tuple[int, Any]:
    if document is None:
        return await client.send(method, path)
    return await client.json(method, path, document)


async def make_app(client: Client, name: str = "app") -> str:
    status, app = await answer(client, "POST", "/v2/apps", {"name": name})
    assert status == 200, app
    return str(app["id"])


async def make_fn(client: Client, app_id: str, name: str, *secrets: str) -> dict[str, Any]:
    body: dict[str, Any] = {"app_id": app_id, "name": name, "image": "fnproject/hello"}
    if secrets:
        body["annotations"] = {ANNOTATION: list(secrets)}
    status, fn = await answer(client, "POST", "/v2/fns", body)
    assert status == 200, fn
    return dict(fn)


async def test_put_list_delete_never_show_the_value(client: Client, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    app_id = await make_app(client)
    path = f"/v2/apps/{app_id}/secrets/db.password"
    status, body = await answer(client, "PUT", path, {"value": VALUE})
    assert status == 200
    assert set(body) == {"name", "created_at", "updated_at"}
    assert body["name"] == "db.password"
    status, listed = await answer(client, "GET", f"/v2/apps/{app_id}/secrets")
    assert status == 200
    assert [item["name"] for item in listed["items"]] == ["db.password"]
    status, app = await answer(client, "GET", f"/v2/apps/{app_id}")
    status, _ = await answer(client, "GET", path)
    assert status == 405  # no route reads a secret back
    everything = json.dumps([body, listed, app]) + caplog.text
    assert "s3cr3t" not in everything
    status, _ = await answer(client, "DELETE", path)
    assert status == 204
    status, listed = await answer(client, "GET", f"/v2/apps/{app_id}/secrets")
    assert listed == {"items": []}


async def test_bad_input_is_400_with_a_message_without_the_value(client: Client) -> None:
    app_id = await make_app(client)
    base = f"/v2/apps/{app_id}/secrets"
    too_long = "s3cr3t" * 11_000
    for path, document in (
        (f"{base}/..", {"value": "s3cr3t"}),
        (f"{base}/{'x' * 65}", {"value": "s3cr3t"}),
        (f"{base}/ok", {}),
        (f"{base}/ok", {"value": ""}),
        (f"{base}/ok", {"value": ["s3cr3t"]}),
        (f"{base}/ok", {"value": too_long}),
    ):
        status, body = await answer(client, "PUT", path, document)
        assert status == 400, (path, body)
        assert set(body) == {"message"} and "s3cr3t" not in body["message"]
    status, body = await client.send("PUT", f"{base}/ok", body=b"not json s3cr3t")
    assert status == 400 and "s3cr3t" not in body["message"]
    status, body = await answer(client, "PUT", "/v2/apps/nope/secrets/ok", {"value": "x"})
    assert (status, body["message"]) == (404, "App not found")
    status, body = await answer(client, "DELETE", f"{base}/ok")
    assert (status, body["message"]) == (404, "Secret not found")


async def test_fns_name_secrets_400_and_409(client: Client) -> None:
    app_id = await make_app(client)
    body = {
        "app_id": app_id,
        "name": "fn",
        "image": "fnproject/hello",
        "annotations": {ANNOTATION: ["token"]},
    }
    status, refused = await answer(client, "POST", "/v2/fns", body)
    assert status == 400 and '"token"' in refused["message"], refused
    malformed = {**body, "annotations": {ANNOTATION: "token"}}
    status, refused = await answer(client, "POST", "/v2/fns", malformed)
    assert status == 400 and ANNOTATION in refused["message"], refused
    await answer(client, "PUT", f"/v2/apps/{app_id}/secrets/token", {"value": VALUE})
    fn = await make_fn(client, app_id, "fn", "token")
    status, refused = await answer(client, "DELETE", f"/v2/apps/{app_id}/secrets/token")
    assert status == 409 and '"fn"' in refused["message"], refused
    # Unnamed, it can go.
    status, _ = await answer(
        client, "PUT", f"/v2/fns/{fn['id']}", {"annotations": {ANNOTATION: ""}}
    )
    assert status == 200
    status, _ = await answer(client, "DELETE", f"/v2/apps/{app_id}/secrets/token")
    assert status == 204


async def test_the_agent_gets_the_value_and_a_change_makes_a_new_version(
    client: Client, state: ServerState, agent: StubAgent
) -> None:
    app_id = await make_app(client)
    secrets = f"/v2/apps/{app_id}/secrets"
    await answer(client, "PUT", f"{secrets}/token", {"value": VALUE})
    await answer(client, "PUT", f"{secrets}/other", {"value": "unrelated"})
    fn = await make_fn(client, app_id, "fn", "token")
    plain = await make_fn(client, app_id, "plain")
    loaded = await fn_by_id(state, fn["id"])
    assert [(s.name, s.value) for s in loaded.secrets] == [("token", VALUE.encode())]
    assert "s3cr3t" not in repr(loaded)
    assert (await fn_by_id(state, plain["id"])).secrets == ()

    # A new value: the fn that names it rolls forward (a new version); others are untouched.
    agent.running.update({fn["id"]: app_id, plain["id"]: app_id})  # as after calls
    agent.updated.clear()
    await answer(client, "PUT", f"{secrets}/token", {"value": "new value"})
    assert [f.id for f in agent.updated] == [fn["id"]]
    assert agent.updated[0].version_key != loaded.version_key
    assert agent.updated[0].secrets[0].value == b"new value"
    again = await fn_by_id(state, fn["id"])  # the invoke cache was dropped
    assert again.version_key == agent.updated[0].version_key
    agent.updated.clear()
    await answer(client, "PUT", f"{secrets}/other", {"value": "changed"})
    assert agent.updated == []


async def test_deleting_the_app_deletes_its_secrets(client: Client, state: ServerState) -> None:
    app_id = await make_app(client)
    await answer(client, "PUT", f"/v2/apps/{app_id}/secrets/token", {"value": VALUE})
    await make_fn(client, app_id, "fn", "token")
    status, _ = await answer(client, "DELETE", f"/v2/apps/{app_id}")
    assert status == 204
    assert await state.store.any_sealed_secret() is None


async def test_the_store_holds_only_sealed_values(state: ServerState, client: Client) -> None:
    app_id = await make_app(client)
    await answer(client, "PUT", f"/v2/apps/{app_id}/secrets/token", {"value": VALUE})
    sealed = await state.store.any_sealed_secret()
    assert sealed is not None and VALUE.encode() not in sealed.sealed
    assert state.secretbox.open(app_id, "token", sealed.sealed) == VALUE.encode()


def test_openapi_documents_the_routes_without_values_in_answers() -> None:
    paths = openapi.document()["paths"]
    assert set(paths["/v2/apps/{app_id}/secrets/{name}"]) == {"put", "delete"}
    assert set(paths["/v2/apps/{app_id}/secrets"]) == {"get"}
    answer_schema = json.dumps(paths["/v2/apps/{app_id}/secrets/{name}"]["put"]["responses"])
    assert '"value"' not in answer_schema


# --- the key at start -------------------------------------------------------------------------


async def test_the_key_file_is_made_once_and_checked(anyio_backend: str, tmp_path: Path) -> None:
    db = tmp_path / "fn.db"
    key_file = default_key_file(str(db))
    assert key_file == f"{db}.secrets-key"
    assert default_key_file(":memory:") is None
    async with SQLiteStore(db) as store:
        box = await open_secretbox(store, key_file)
        assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
        app = await store.create_app({"name": "app"})
        await store.put_secret(app.id, "token", box.seal(app.id, "token", b"v"))
        # The same key opens it again at the next start.
        again = await open_secretbox(store, key_file)
        sealed = await store.any_sealed_secret()
        assert sealed is not None and again.open(app.id, "token", sealed.sealed) == b"v"

        os.rename(key_file, f"{key_file}.away")
        with pytest.raises(SecretKeyError, match="is missing, and the store holds secrets"):
            await open_secretbox(store, key_file)
        assert "fn.db.secrets-key" not in os.listdir(tmp_path)  # no new key over theirs
        other = tmp_path / "other.key"
        async with SQLiteStore(":memory:") as empty:
            await open_secretbox(empty, None)  # in memory: a fresh key, fine
        with pytest.raises(SecretKeyError, match="does not open the store's secrets"):
            await _with_new_key(store, str(other))
        with pytest.raises(SecretKeyError, match="set FN_SECRETS_KEY_FILE"):
            await open_secretbox(store, None)


async def _with_new_key(store: SQLiteStore, path: str) -> SecretBox:
    from fnagent.secretbox import create_key

    create_key(path)
    return await open_secretbox(store, path)
