"""Keeping a server in step with its registry: one path for every change, whichever agent
made it.

``apply_changes`` is what a change to apps, fns, triggers or secrets does on this server: the
invoke cache is dropped (``ServerState.changed``), and the agent's versions follow (a fn
updated, its app updated or a secret it names put: the fn's new definition is read and handed
to ``Agent.update``, which pre-pulls and switches; a fn or its app deleted: ``Agent.forget``
drains and removes its containers). Only fns this agent runs are read again: for the others the
dropped cache is enough. The management routes call it once their write committed; with a
shared store (PostgreSQL) ``follow`` calls it for every change another agent tells of.

The safety net: ``resync`` reads again the definition of every fn the agent runs and every
cached one, and applies what it read (the agent's versions updated, or forgotten for a fn gone;
the cache's entries replaced), every ``resync_s`` (FN_DB_RESYNC_MSECS, 10 s) and each time the
change listener (re)starts (it may have missed changes). It reads first and changes nothing
unless every read succeeded: with the database down, invokes keep being served from the cached
definitions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

import anyio

from fnagent.config import DEFAULT_DB_RESYNC_S
from fnagent.errors import FnAgentError, NotFoundError, StorageError
from fnagent.models import Fn
from fnagent.server.invoke import load_fn, read_cached
from fnagent.server.state import ServerState
from fnagent.store.changes import QUEUE_TABLE, Change, ChangeFeed
from fnagent.store.secrets import secret_names

logger = logging.getLogger(__name__)


async def apply_changes(state: ServerState, changes: Sequence[Change]) -> None:
    """Do what ``changes`` (committed) mean for this server: see the module's docstring.
    Raises the store's errors of the reads (the cache is dropped already)."""
    state.changed()
    for change in changes:
        await _apply(state, change)


async def _apply(state: ServerState, change: Change) -> None:
    running = state.agent.fn_apps()
    if change.table == "fns" and change.op == "delete":
        state.agent.forget(change.id)
    elif change.table == "fns" and change.id in running:
        await _refresh(state, [change.id])
    elif change.table in ("apps", "secrets"):
        of_app = [fn_id for fn_id, app_id in running.items() if app_id == change.app_id]
        if change.table == "secrets":
            if change.op != "delete":
                await _refresh(state, of_app, secret=change.id)
        elif change.op == "delete":
            for fn_id in of_app:
                state.agent.forget(fn_id)
        else:
            await _refresh(state, of_app)


async def _refresh(state: ServerState, fn_ids: Sequence[str], *, secret: str = "") -> None:
    """Hand the agent each fn's definition now (those naming ``secret`` only, when given);
    a fn gone meanwhile is forgotten."""
    for fn_id in fn_ids:
        try:
            fn = await _read(state, fn_id, secret)
        except NotFoundError:
            state.agent.forget(fn_id)
            continue
        if fn is not None:
            await state.agent.update(fn)


async def _read(state: ServerState, fn_id: str, secret: str = "") -> Fn | None:
    """``fn_id``'s definition as the agent runs it; None when ``secret`` is given and the fn
    does not name it."""
    record = await state.store.get_fn(fn_id)
    if secret and secret not in secret_names(record.annotations):
        return None
    return await load_fn(state, await state.store.get_app(record.app_id), record)


async def resync(state: ServerState) -> bool:
    """Read again every fn the agent runs and every cached definition; then replace the cache
    with what was read (an entry gone from the store is left out) and hand the agent each fn's
    definition (an update, or a delete for a fn gone). False, with nothing changed, when the
    store failed (the cached definitions keep serving; the next resync tries again) or a change
    came while it read (that change's own path applied it). A definition that does not load (a
    secret that does not open) leaves its fn's version running and its entry out of the cache
    (the next lookup answers the error)."""
    writes = state.writes
    running: dict[str, Fn | None] = {}
    cache: dict[str, Fn] = {}
    try:
        for fn_id in state.agent.fn_apps():
            loaded, fn = await _reread(fn_id, _read(state, fn_id))
            if loaded:
                running[fn_id] = fn
        for key in list(state.cache):
            _, fn = await _reread(key, read_cached(state, key))
            if fn is not None:
                cache[key] = fn
    except StorageError as exc:
        logger.warning("cannot read the registry; serving cached fns", extra={"error": exc.message})
        return False
    if state.writes != writes:
        return False
    state.cache.clear()
    state.cache.update(cache)
    for fn_id, fn in running.items():
        if fn is None:
            state.agent.forget(fn_id)
        else:
            await state.agent.update(fn)
    return True


async def _reread(what: str, read: Awaitable[Fn | None]) -> tuple[bool, Fn | None]:
    """(True, the definition) read; (True, None) when it is gone; (False, None) when it does
    not load. A store failure (StorageError) is raised."""
    try:
        return True, await read
    except NotFoundError:
        return True, None
    except StorageError:
        raise
    except FnAgentError as exc:
        logger.warning("cannot load a fn", extra={"what": what, "error": exc.message})
        return False, None


async def follow(
    state: ServerState, feed: ChangeFeed, *, resync_s: float = DEFAULT_DB_RESYNC_S
) -> None:
    """Until cancelled: apply every change ``feed`` tells of, and ``resync`` each time its
    listener (re)starts and every ``resync_s``."""

    async def on_change(change: Change) -> None:
        if change.table == QUEUE_TABLE:  # not the registry: the cache stays
            if state.dispatcher is not None:
                state.dispatcher.notify()
            return
        try:
            await apply_changes(state, [change])
        except FnAgentError as exc:  # the next resync makes up for it
            logger.warning(
                "cannot apply a change", extra={"change": change.payload(), "error": exc.message}
            )

    async def on_listening() -> None:
        await resync(state)

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.follow_changes, on_change, on_listening)
        while True:
            await anyio.sleep(resync_s)
            await resync(state)
