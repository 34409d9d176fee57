"""The page at ``/ui``: one static HTML page and its plain JavaScript, which read and change
everything through the JSON API with the management token as a bearer token.

Assets are files of this package, read once. ``/ui`` is the login form and a loader
(``login.js``); the dashboard's own script is served only to a request carrying the token (when
one is configured), so a browser without it gets the login form and nothing else. Asset URLs
carry a digest of the content (``?v=``), so they are cached for a year; the page itself is
revalidated on every load. No inline script runs (the Content-Security-Policy forbids it), so
text a function answered can never run as code on the page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fnagent.server.state import ServerState, check_token, error_response

HERE = Path(__file__).parent

SECURITY_HEADERS = {
    # blob: for the dashboard script, which login.js fetches with the token and runs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' blob:; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
YEAR_S = 365 * 24 * 3600


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    gated: bool
    """Served only with the management token (when one is configured)."""

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:16]


ASSET_FILES = {
    "login.js": ("text/javascript; charset=utf-8", False),
    "ui.css": ("text/css; charset=utf-8", False),
    "dashboard.js": ("text/javascript; charset=utf-8", True),
}


@cache
def assets() -> dict[str, Asset]:
    return {
        name: Asset((HERE / name).read_bytes(), media_type, gated)
        for name, (media_type, gated) in ASSET_FILES.items()
    }


@cache
def index_html() -> bytes:
    """The page, with each asset's URL carrying its digest."""
    text = (HERE / "index.html").read_text()
    for name, asset in assets().items():
        text = text.replace("{{" + name + "}}", f"/ui/static/{name}?v={asset.etag}")
    return text.encode()


async def page(state: ServerState, request: Request) -> Response:
    return Response(
        index_html(),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def asset(state: ServerState, request: Request) -> Response:
    """An asset by name (only the known ones); 304 when the client holds this version."""
    found = assets().get(request.path_params["name"])
    if found is None:
        return error_response(404, "Path not found")
    if found.gated:
        check_token(state, request)
    etag = f'"{found.etag}"'
    scope = "private" if found.gated else "public"
    headers = {
        **SECURITY_HEADERS,
        "ETag": etag,
        "Cache-Control": f"{scope}, max-age={YEAR_S}, immutable",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def routes(state: ServerState) -> list[Route]:
    return [
        Route("/ui", partial(page, state), methods=["GET"]),
        Route("/ui/", partial(page, state), methods=["GET"]),
        Route("/ui/static/{name}", partial(asset, state), methods=["GET"]),
    ]
