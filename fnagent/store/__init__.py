"""The registry behind ``fnagent serve``: apps, fns, triggers and call records with Fn's rules,
behind the ``Store`` protocol; ``SQLiteStore`` keeps them in SQLite."""

from fnagent.errors import ConflictError, NotFoundError, StorageError
from fnagent.store.base import Store
from fnagent.store.calls import CallFilter, CallRecord
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
from fnagent.store.sqlite import MIGRATIONS, Migration, SQLiteStore

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
    "validate_trigger_name",
]
