"""The registry behind ``fnagent serve``: apps, fns, triggers, call records and the detached
calls' queue with Fn's rules, behind the ``Store`` protocol; ``SQLiteStore`` keeps them in
SQLite, ``PostgresStore`` (``fnagent.store.postgres``, imported on demand: it loads psycopg) in
PostgreSQL; ``store_from_url`` picks one for ``FN_DB_URL``."""

from fnagent.errors import ConflictError, NotFoundError, StorageError
from fnagent.store.base import Store
from fnagent.store.calls import CallFilter, CallRecord
from fnagent.store.factory import store_from_url
from fnagent.store.migrations import Migration
from fnagent.store.models import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    App,
    FnRecord,
    Trigger,
    apply_app_patch,
    apply_fn_patch,
    apply_trigger_patch,
    clamp_per_page,
    format_timestamp,
    validate_annotations,
    validate_app_name,
    validate_fn_name,
    validate_trigger_name,
)
from fnagent.store.sqlite import MIGRATIONS, SQLiteStore

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PER_PAGE",
    "MIGRATIONS",
    "App",
    "CallFilter",
    "CallRecord",
    "ConflictError",
    "FnRecord",
    "Migration",
    "NotFoundError",
    "SQLiteStore",
    "StorageError",
    "Store",
    "Trigger",
    "apply_app_patch",
    "apply_fn_patch",
    "apply_trigger_patch",
    "clamp_per_page",
    "format_timestamp",
    "validate_annotations",
    "validate_app_name",
    "validate_fn_name",
    "store_from_url",
    "validate_trigger_name",
]
