"""The store's errors, grafted onto the project's one error tree (drivers/errors.py).

Validation failures are ``drivers.errors.InvalidInputError`` (400); the store adds the three
outcomes a registry has that a driver does not::

    FnAgentError (500)
    ├── NotFoundError (404)      no app, fn or trigger with that id or name
    ├── ConflictError (409)      a unique name or trigger source is taken; an app rename
    └── StorageError (500)       the database failed (disk full, I/O error, corrupt file)

Messages are Fn's where Fn has one ("App not found", "App already exists", ...); see
``fnagent/store/models.py`` for the list and where ours differ.
"""

from __future__ import annotations

from drivers.errors import FnAgentError


class NotFoundError(FnAgentError):
    status = 404
    default_message = "not found"


class ConflictError(FnAgentError):
    status = 409
    default_message = "already exists"


class StorageError(FnAgentError):
    """Raised ``from`` the sqlite3 error, after the transaction was rolled back."""

    status = 500
    default_message = "storage failure"
