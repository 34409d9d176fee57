"""The HTTP client of Fn's v2 API (what ``fnagent serve`` speaks), usable without the CLI.

Standard library only; :mod:`fnagent.client.api` holds it. The CLI's client commands
(:mod:`fnagent.cli.commands`) are one user of it. :mod:`fnagent.client.runframes` is the wire
format of a run handed to an agent.

The client's names load on first use: ``fnagent run``, which imports the run frames and
``DEFAULT_API_URL`` from this package, makes no API request and does not pay for the client's
import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fnagent.client.api import (
        ApiClient,
        ApiError,
        JSONObject,
        Page,
        RawResponse,
        error_message,
    )

DEFAULT_API_URL = "http://127.0.0.1:8080"
"""Where the API is when FN_API_URL is unset (``fnagent serve``'s default address)."""

__all__ = [
    "DEFAULT_API_URL",
    "ApiClient",
    "ApiError",
    "JSONObject",
    "Page",
    "RawResponse",
    "error_message",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fnagent.client import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
