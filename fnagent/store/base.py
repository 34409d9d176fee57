"""The ``Store`` protocol: what ``fnagent serve`` needs from a registry of apps, fns and
triggers, whatever keeps them (SQLite today; PostgreSQL when several agents share one).

Contracts every backend keeps (``fnagent/testing/store_conformance.py`` holds the cases each
one must pass):

- Bodies are JSON as a client sent it. Create methods take the POST body, update methods the
  PUT body; the rules in ``fnagent.store.models`` are the only validation either gets, so every
  backend answers with the same Fn messages. Ids and timestamps are the store's to assign: an
  ``id`` in a create body is ``InvalidInputError`` (400).
- Errors: ``InvalidInputError`` (400) for a body the rules refuse, a bad cursor or a missing
  ``app_id`` on a list, checked before anything is looked up; ``NotFoundError`` (404, "App not
  found", "Fn not found", "Trigger not found"); ``ConflictError`` (409) for a taken name or
  trigger source, and an app rename; ``StorageError`` (500) when the backend fails, with
  nothing half-written; ``ClosedError`` once closed.
- Lists are ordered by name and paged by cursor: ``per_page`` goes through
  ``models.clamp_per_page`` (Fn's 30 by default, at most 100) and the page comes with the
  cursor of the next one (``models.encode_cursor`` of its last name), None on the last page.
- Deleting an app deletes its fns, triggers and secrets; deleting a fn deletes its triggers;
  each in one transaction.
- Secrets (``fnagent.store.secrets``): the store keeps sealed values only and never needs the
  key. A fn created or updated to name (``fnagent.io/secrets``) a secret its app does not have
  is ``InvalidInputError`` (400) naming it; deleting a secret a fn still names is
  ``ConflictError`` (409) naming the fn. Both are checked in the write's own transaction.
- A store is an async context manager: ``__aenter__`` opens it (``open()``, idempotent) and
  ``__aexit__`` closes it (``aclose()``, idempotent); calls before opening or after closing
  raise ``ClosedError``. Calls may run concurrently; each is atomic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from fnagent.store.models import App, FnRecord, Trigger
from fnagent.store.secrets import SealedSecret, Secret


class Store(Protocol):
    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bring the schema up to date. Idempotent while open."""

    async def aclose(self) -> None:
        """Close after the running operations. Idempotent."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # --- apps -----------------------------------------------------------------------------

    async def create_app(self, body: Mapping[str, Any]) -> App:
        """A new app from a POST /v2/apps body. 400 for what the rules refuse; 409 "App
        already exists"."""
        ...

    async def get_app(self, app_id: str) -> App:
        """404 "App not found"."""
        ...

    async def get_app_by_name(self, name: str) -> App:
        """404 "App not found"."""
        ...

    async def update_app(self, app_id: str, patch: Mapping[str, Any]) -> App:
        """Merge a PUT body (``models.apply_app_patch``). 404; 409 for a new name."""
        ...

    async def delete_app(self, app_id: str) -> None:
        """Delete the app, its fns and their triggers. 404 "App not found"."""
        ...

    async def list_apps(
        self, *, cursor: str | None = None, per_page: int | None = None, name: str | None = None
    ) -> tuple[list[App], str | None]:
        """A page of apps by name after ``cursor``; ``name`` filters exactly."""
        ...

    # --- fns ------------------------------------------------------------------------------

    async def create_fn(self, body: Mapping[str, Any]) -> FnRecord:
        """A new fn from a POST /v2/fns body; without a ``shape`` it takes its app's. 400 for
        what the rules refuse (checked first); 404 "App not found"; 400 for a secret named in
        ``fnagent.io/secrets`` that the app does not have; 409 "Fn with specified name already
        exists"."""
        ...

    async def get_fn(self, fn_id: str) -> FnRecord:
        """404 "Fn not found"."""
        ...

    async def update_fn(self, fn_id: str, patch: Mapping[str, Any]) -> FnRecord:
        """Merge a PUT body (``models.apply_fn_patch``). 404 "Fn not found"; 400 for a named
        secret the app does not have."""
        ...

    async def delete_fn(self, fn_id: str) -> None:
        """Delete the fn and its triggers. 404 "Fn not found"."""
        ...

    async def list_fns(
        self,
        *,
        app_id: str,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[FnRecord], str | None]:
        """A page of the app's fns by name. 400 "Missing AppID on Fn" without ``app_id``; an
        unknown app has none (no 404, as in Fn)."""
        ...

    # --- triggers -------------------------------------------------------------------------

    async def create_trigger(self, body: Mapping[str, Any]) -> Trigger:
        """A new trigger from a POST /v2/triggers body. 400 for what the rules refuse and
        "Invalid Fn ID - not owned by specified app"; 404 for a missing app or fn; 409 for a
        taken type and source, or name, in the app."""
        ...

    async def get_trigger(self, trigger_id: str) -> Trigger:
        """404 "Trigger not found"."""
        ...

    async def update_trigger(self, trigger_id: str, patch: Mapping[str, Any]) -> Trigger:
        """Merge a PUT body (``models.apply_trigger_patch``). 404; 409 as on create."""
        ...

    async def delete_trigger(self, trigger_id: str) -> None:
        """404 "Trigger not found"."""
        ...

    async def list_triggers(
        self,
        *,
        app_id: str,
        fn_id: str | None = None,
        cursor: str | None = None,
        per_page: int | None = None,
        name: str | None = None,
    ) -> tuple[list[Trigger], str | None]:
        """A page of the app's triggers (``fn_id``: one fn's) by name. 400 "Missing App ID on
        Trigger" without ``app_id``."""
        ...

    async def get_trigger_by_source(self, app_id: str, type: str, source: str) -> Trigger:
        """Fn's GetTriggerBySource. 404 "Trigger not found"."""
        ...

    async def find_http_trigger(self, app_name: str, source: str) -> tuple[App, FnRecord, Trigger]:
        """What ``/t/{app_name}/{source}`` calls, read at once (``source`` gets a leading
        ``/`` when it lacks one). 404 "App not found" / "Trigger not found" / "Fn not
        found"."""
        ...

    # --- secrets --------------------------------------------------------------------------

    async def put_secret(self, app_id: str, name: str, sealed: bytes) -> Secret:
        """Create the app's secret ``name``, or replace its value (``created_at`` kept). 400
        for an invalid name (checked first); 404 "App not found"."""
        ...

    async def list_secrets(
        self, *, app_id: str, cursor: str | None = None, per_page: int | None = None
    ) -> tuple[list[Secret], str | None]:
        """A page of the app's secrets by name, without values. 404 "App not found"."""
        ...

    async def get_sealed_secrets(self, app_id: str, names: Sequence[str]) -> list[SealedSecret]:
        """The sealed values of the app's secrets among ``names``, in that order; a name the
        app does not have is left out."""
        ...

    async def delete_secret(self, app_id: str, name: str) -> None:
        """404 "App not found" / "Secret not found"; 409 naming the fn(s) that still name
        it."""
        ...

    async def any_sealed_secret(self) -> SealedSecret | None:
        """One stored secret of any app (None when there is none): the server checks its key
        against it at start."""
        ...
