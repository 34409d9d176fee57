"""The ``Store`` protocol: what ``fnagent serve`` needs from a registry of apps, fns and
triggers, whatever keeps them (``SQLiteStore`` embedded; ``PostgresStore`` when several agents
share one).

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
  nothing half-written, and its ``StoreUnavailableError`` (503) when a database server is down,
  unreachable or too slow; ``ClosedError`` once closed.
- Lists are ordered by name and paged by cursor: ``per_page`` goes through
  ``models.clamp_per_page`` (Fn's 30 by default, at most 100) and the page comes with the
  cursor of the next one (``models.encode_cursor`` of its last name), None on the last page.
- Deleting an app deletes its fns, triggers and secrets; deleting a fn deletes its triggers;
  each in one transaction. Deleting either also deletes their call records and call logs.
- Call records (``fnagent.store.calls``) are upserts by call id: a later state replaces an
  earlier one. ``put_calls`` writes a batch in one transaction and skips records of fns that
  no longer exist (a fn deleted while its calls waited to be written). Calls are listed newest
  first (by id: call ids sort by creation time), paged by cursor like the other lists.
- Detached calls (``fnagent.store.queue``) are a queue: enqueue is durable when it returns;
  a lease hands a call to one owner at a time; only the lease's owner may finish or requeue;
  a finished call is deleted.
- Secrets (``fnagent.store.secrets``): the store keeps sealed values only and never needs the
  key. A fn created or updated to name (``fnagent.io/secrets``) a secret its app does not have
  is ``InvalidInputError`` (400) naming it; deleting a secret a fn still names is
  ``ConflictError`` (409) naming the fn. Both are checked in the write's own transaction.
- A store is an async context manager: ``__aenter__`` opens it (``open()``, idempotent) and
  ``__aexit__`` closes it (``aclose()``, idempotent); calls before opening or after closing
  raise ``ClosedError``. Calls may run concurrently; each is atomic.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from fnagent.store.calls import CallFilter, CallRecord
from fnagent.store.models import App, FnRecord, Trigger
from fnagent.store.queue import QueuedCall
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

    # --- detached calls (fnagent.store.queue) ---------------------------------------------
    # Times are Unix seconds from the caller. Each method is one transaction; a backend shared
    # by several servers must hand a runnable call to one lease at a time (PostgreSQL: SELECT
    # ... FOR UPDATE SKIP LOCKED).

    async def enqueue_call(self, call: QueuedCall) -> None:
        """Store a new call (status queued). Returns once it is committed: durable."""
        ...

    async def lease_calls(
        self,
        *,
        owner: str,
        limit: int,
        now: float,
        lease_s: float,
        hot: Collection[str] = (),
        cold_due: float | None = None,
    ) -> list[QueuedCall]:
        """Take up to ``limit`` runnable calls, oldest ``not_before`` first: queued ones due
        by ``now`` (those of fns not in ``hot`` only when due by ``cold_due``, when given: an
        agent without the fn hot leaves its calls a moment to one that has it), and running
        ones whose lease expired. Each becomes running, owned by ``owner`` until
        ``now + lease_s``, with ``attempts`` + 1 (``started_at`` = now)."""
        ...

    async def renew_leases(
        self, *, owner: str, call_ids: Sequence[str], now: float, lease_s: float
    ) -> set[str]:
        """Extend to ``now + lease_s`` the leases ``owner`` still holds among ``call_ids``;
        returns those ids (a call missing from it was taken over or finished)."""
        ...

    async def requeue_call(
        self, call_id: str, *, owner: str, not_before: float, error: str | None
    ) -> bool:
        """Back to queued, runnable from ``not_before``, ``last_error`` = ``error``; only
        while ``owner`` holds the lease (else False and nothing changes)."""
        ...

    async def finish_call(self, call_id: str, *, owner: str) -> bool:
        """The call ran to its end: it leaves the queue (its outcome is its call record's),
        only while ``owner`` holds the lease (else False and nothing changes)."""
        ...

    async def release_leases(self, owner: str, *, now: float) -> int:
        """Every call ``owner`` runs goes back to queued, due at ``now``: what a restarted
        server does with what its dead run held (it does not wait for the leases to expire).
        Returns how many."""
        ...

    async def get_queued_call(self, call_id: str) -> QueuedCall:
        """404 "Call not found"."""
        ...

    async def count_queued(self) -> int:
        """Calls waiting to run (queued, due or in backoff): the queue's depth."""
        ...

    # --- call records and logs --------------------------------------------------------------

    async def put_calls(self, calls: Sequence[CallRecord], logs: Mapping[str, bytes]) -> int:
        """Upsert ``calls`` and the logs of some of them (call id -> log, replacing an earlier
        one) in one transaction; records of fns that no longer exist, and their logs, are
        skipped. Returns how many records were written."""
        ...

    async def get_call(self, fn_id: str, call_id: str) -> CallRecord:
        """404 "Fn not found" for an unknown fn; 404 "Call not found" for a call that is not
        the fn's."""
        ...

    async def list_calls(
        self,
        fn_id: str,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
        where: CallFilter | None = None,
    ) -> tuple[list[CallRecord], str | None]:
        """A page of the fn's calls, newest first, after ``cursor``, filtered by ``where``.
        404 "Fn not found"; 400 for a cursor not handed out."""
        ...

    async def get_call_log(self, fn_id: str, call_id: str) -> bytes:
        """The call's log. 404 "Fn not found"; 404 "Call log not found" when the fn's call
        has none (or there is no such call)."""
        ...

    async def prune_calls(
        self, *, keep_per_fn: int, before: datetime, max_rows: int | None = None
    ) -> int:
        """Retention: delete the calls (and logs) created before ``before``, and those of
        each fn beyond its ``keep_per_fn`` newest, at most ``max_rows`` of them (None: all)
        in this transaction, each fn's oldest first. Returns how many calls were deleted:
        ``max_rows`` when more may be left."""

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
