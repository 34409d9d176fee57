"""An app's secrets over HTTP (write-only), and the key the server seals them with.

``PUT /v2/apps/{app_id}/secrets/{name}`` with ``{"value": "..."}`` creates or replaces one (200
``{"name", "created_at", "updated_at"}``); ``GET /v2/apps/{app_id}/secrets`` lists names and
times (paged like every list); ``DELETE /v2/apps/{app_id}/secrets/{name}`` answers 204, 409 while
a fn names it. No answer, log line or error message carries a value: values are sealed here
(``fnagent.secretbox``) before the store sees them, and opened only for a launch
(``invoke.load_fn``). A changed value reaches the fns that name it as a config change does:
their next calls go to new containers, the old ones drain.

``open_secretbox`` is the server's start: the key file (FN_SECRETS_KEY_FILE, else
``<store file>.secrets-key``), created 0600 when missing and the store holds no secret; a
missing key for stored secrets, or a key that does not open them, stops the start with a
message.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fnagent.errors import SecretKeyError
from fnagent.secretbox import SecretBox, create_key, load_key
from fnagent.server.api import page_arguments
from fnagent.server.state import Handler, ServerState, check_token, read_json
from fnagent.server.sync import apply_changes
from fnagent.store.base import Store
from fnagent.store.changes import Change
from fnagent.store.secrets import secret_value_from_body, validate_secret_name

KEY_SUFFIX = ".secrets-key"


async def put_secret(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app_id, name = request.path_params["app_id"], request.path_params["name"]
    validate_secret_name(name)
    body = await read_json(request, state.config.max_api_body_bytes)
    value = secret_value_from_body(body)
    sealed = state.secretbox.seal(app_id, name, value.encode("utf-8"))
    secret = await state.store.put_secret(app_id, name, sealed)
    # The fns naming it roll forward to the new value.
    await apply_changes(state, [Change("secrets", "update", name, app_id)])
    return JSONResponse(secret.to_json())


async def list_secrets(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    paging = page_arguments(request)
    secrets, next_cursor = await state.store.list_secrets(
        app_id=request.path_params["app_id"], cursor=paging["cursor"], per_page=paging["per_page"]
    )
    body: dict[str, object] = {"items": [secret.to_json() for secret in secrets]}
    if next_cursor:
        body["next_cursor"] = next_cursor
    return JSONResponse(body)


async def delete_secret(state: ServerState, request: Request) -> Response:
    check_token(state, request)
    app_id, name = request.path_params["app_id"], request.path_params["name"]
    await state.store.delete_secret(app_id, name)
    await apply_changes(state, [Change("secrets", "delete", name, app_id)])
    return Response(status_code=204)


ROUTES: list[tuple[str, str, Handler]] = [
    ("/v2/apps/{app_id}/secrets", "GET", list_secrets),
    ("/v2/apps/{app_id}/secrets/{name}", "PUT", put_secret),
    ("/v2/apps/{app_id}/secrets/{name}", "DELETE", delete_secret),
]


def default_key_file(store_path: str | None) -> str | None:
    """``<store file>.secrets-key`` beside a SQLite file; None for a store in memory."""
    if not store_path or store_path == ":memory:":
        return None
    return store_path + KEY_SUFFIX


async def open_secretbox(store: Store, key_file: str | None) -> SecretBox:
    """The box sealing this server's secrets, its key checked against the store.

    ``key_file`` None: a new random key (a store in memory dies with the process). A missing
    file is created (0600) unless the store holds secrets, which only their key opens; a key
    that does not open a stored secret is refused. SecretKeyError says which and what to do."""
    sample = await store.any_sealed_secret()
    if key_file is None:
        if sample is not None:
            raise SecretKeyError("the store holds secrets: set FN_SECRETS_KEY_FILE to their key")
        return SecretBox.generate()
    try:
        key = load_key(key_file)
    except FileNotFoundError:
        if sample is not None:
            raise SecretKeyError(
                f"the secrets key file {key_file} is missing, and the store holds secrets "
                "sealed with it: restore the file (or point FN_SECRETS_KEY_FILE at it)"
            ) from None
        key = create_key(key_file)
    box = SecretBox(key)
    if sample is not None:
        try:
            box.open(sample.app_id, sample.name, sample.sealed)
        except SecretKeyError:
            raise SecretKeyError(
                f"the secrets key in {key_file} does not open the store's secrets: it is not "
                "the key they were sealed with (FN_SECRETS_KEY_FILE)"
            ) from None
    return box
