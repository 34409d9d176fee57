"""The registry behind ``fnagent serve``: apps, fns and triggers with Fn's rules, in SQLite."""

from fnagent.errors import ConflictError, NotFoundError, StorageError
from fnagent.store.models import (
    App,
    FnRecord,
    Trigger,
    apply_app_patch,
    apply_fn_patch,
    apply_trigger_patch,
    format_timestamp,
    validate_annotations,
    validate_app_name,
    validate_fn_name,
    validate_trigger_name,
)
from fnagent.store.sqlite import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    MIGRATIONS,
    Migration,
    SQLiteStore,
    clamp_per_page,
)

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PER_PAGE",
    "MIGRATIONS",
    "App",
    "ConflictError",
    "FnRecord",
    "Migration",
    "NotFoundError",
    "SQLiteStore",
    "StorageError",
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
