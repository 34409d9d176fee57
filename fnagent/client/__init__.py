"""The HTTP client of Fn's v2 API (what ``fnagent serve`` speaks), usable without the CLI.

Standard library only; :mod:`fnagent.client.api` holds it. The CLI's client commands
(:mod:`fnagent.cli.commands`) are one user of it.
"""

from fnagent.client.api import (
    DEFAULT_API_URL,
    ApiClient,
    ApiError,
    JSONObject,
    Page,
    RawResponse,
    error_message,
)

__all__ = [
    "DEFAULT_API_URL",
    "ApiClient",
    "ApiError",
    "JSONObject",
    "Page",
    "RawResponse",
    "error_message",
]
