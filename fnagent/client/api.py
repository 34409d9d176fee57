"""A small synchronous client for the Fn v2 HTTP API that ``fnagent serve`` speaks.

Standard library only (http.client), one connection per request: the CLI makes a handful of
calls per command, so keep-alive would buy nothing worth a dependency or an import. Every
failure surfaces as one :class:`ApiError` carrying the server's ``{"message": ...}``, or, when no
answer came back, the connection error with the URL that was tried.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:
    # Imported where a request is made: http.client loads email and ssl (~10 ms), and
    # `fnagent run`, which imports this package for the run frames, sends no request with it.
    import http.client

from fnagent.client import DEFAULT_API_URL

DEFAULT_TIMEOUT_S = 60.0
# Fn's longest function timeout is 300 s; a call may also queue and start a container first.
DEFAULT_INVOKE_TIMEOUT_S = 600.0
FOLLOW_IDLE_TIMEOUT_S = 60.0
"""Following logs: the server sends something at least every 15 s; silence this long is an
error."""
# A server that keeps answering with new cursors is broken; stop rather than loop forever.
MAX_PAGES = 10_000
MAX_MESSAGE_CHARS = 500

INVOKE_ENDPOINT_ANNOTATION = "fnproject.io/fn/invokeEndpoint"
TRIGGER_ENDPOINT_ANNOTATION = "fnproject.io/trigger/httpEndpoint"

JSONObject = dict[str, Any]


class ApiError(Exception):
    """The API said no, or could not be reached.

    ``status`` is the HTTP status the server answered; 404 also when no app, fn or trigger
    matches a name or id, 409 when a name matches several triggers; None when no HTTP answer
    came back (connection refused, DNS, timeout). ``message`` is the server's
    ``{"message": ...}``, else its raw body, else a description of what failed.
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.status!r}, {self.message!r})"


@dataclass(frozen=True, kw_only=True)
class RawResponse:
    """One HTTP answer as it came: body bytes untouched, headers in order, repeats kept."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of a list; ``next_cursor`` is "" on the last page."""

    items: list[JSONObject]
    next_cursor: str
    document: JSONObject


def error_message(response: RawResponse) -> str:
    """What the server said went wrong: Fn's ``{"message": ...}`` (or the v1-style
    ``{"error": {"message": ...}}``), else the raw body, else the status line. A container that
    failed to start adds its last stderr lines (``"stderr"``) after the message."""
    text = response.body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        message = document.get("message")
        if isinstance(message, str) and message:
            stderr = document.get("stderr")
            if isinstance(stderr, str) and stderr.strip():
                return f"{message}\nthe container's last stderr lines:\n{stderr.rstrip()}"
            return message
        nested = document.get("error")
        if isinstance(nested, dict) and isinstance(nested.get("message"), str):
            return str(nested["message"])
    if text:
        return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."
    return f"HTTP {response.status} {response.reason}".rstrip()


def _events(response: http.client.HTTPResponse) -> Iterator[tuple[str, JSONObject]]:
    """Server-sent events with JSON data, as (event name, data); comments are skipped."""
    name, data = "message", ""
    while True:
        raw = response.readline()
        if not raw:
            return
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                document = json.loads(data)
                if isinstance(document, dict):
                    yield name, document
            name, data = "message", ""
        elif text.startswith("event:"):
            name = text[len("event:") :].strip()
        elif text.startswith("data:"):
            data += text[len("data:") :].strip()


def _segment(value: str) -> str:
    return quote(value, safe="")


class ApiClient:
    """Calls one Fn v2 API server. Holds no connection: every call opens and closes its own."""

    def __init__(
        self, base_url: str, *, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """``base_url`` is ``http(s)://host[:port][/prefix]``; a trailing ``/v2`` is dropped
        (the client adds it). Raises ValueError for anything else."""
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{base_url!r} is not an API URL: use http://host:port or https://host:port"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{base_url!r}: an API URL takes no query or fragment")
        try:
            self._port = parts.port
        except ValueError as exc:
            raise ValueError(f"{base_url!r}: {exc}") from None
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v2"):
            prefix = prefix[: -len("/v2")]
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._prefix = prefix
        self._token = token or None
        self._timeout_s = timeout_s
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.base_url = f"{parts.scheme}://{netloc}{prefix}"

    @classmethod
    def from_options(
        cls, api_url: str | None, token: str | None, environ: Mapping[str, str]
    ) -> ApiClient:
        """Flags first, then FN_API_URL / FN_TOKEN from ``environ``, then the defaults."""
        return cls(
            api_url or environ.get("FN_API_URL") or DEFAULT_API_URL,
            token=token or environ.get("FN_TOKEN") or None,
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r}, token={'set' if self._token else 'none'})"

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """The absolute URL for ``path`` (which starts with "/") on this server."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"{self.base_url}{path}{tail}"

    # -- transport ------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> RawResponse:
        """One request; returns whatever status came back. Raises ApiError(None, ...) only
        when there was no HTTP answer."""
        target = f"{self._prefix}{path}" + (f"?{urlencode(query)}" if query else "")
        sent: dict[str, str] = {"User-Agent": "fnagent-cli", "Accept": "*/*"}
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        sent.update(headers or {})
        timeout = self._timeout_s if timeout_s is None else timeout_s
        import http.client

        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, target, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(None, self._unreachable(method, path, query, exc, timeout)) from exc
        finally:
            connection.close()
        return RawResponse(
            status=response.status,
            reason=response.reason,
            http_version="HTTP/1.0" if response.version == 10 else "HTTP/1.1",
            headers=response.getheaders(),
            body=data,
        )

    def _unreachable(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        exc: BaseException,
        timeout_s: float,
    ) -> str:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout_s:g} s"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = str(exc) or type(exc).__name__
        return (
            f"cannot reach the API at {self.url(path, query)} ({method}): {reason}. "
            f"Is `fnagent serve` running there? Point --api-url or FN_API_URL at it."
        )

    def request_json(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        """A JSON call: the decoded answer (None for an empty body, e.g. 204). Raises ApiError
        on any non-2xx status with the server's message."""
        headers = {"Accept": "application/json"}
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        response = self.send(method, path, query=query, body=body, headers=headers)
        if not response.ok:
            raise ApiError(response.status, error_message(response))
        if not response.body.strip():
            return None
        try:
            return json.loads(response.body)
        except ValueError:
            raise ApiError(
                response.status,
                f"{method} {self.url(path, query)} answered {response.status} with a body "
                f"that is not JSON: {error_message(response)}",
            ) from None

    def _object(self, method: str, path: str, json_body: Any = None) -> JSONObject:
        document = self.request_json(method, path, json_body=json_body)
        if not isinstance(document, dict):
            raise ApiError(None, f"{method} {self.url(path)}: expected a JSON object")
        return document

    # -- lists ------------------------------------------------------------------------------

    def list_page(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
    ) -> Page:
        """One page of ``{"items": [...], "next_cursor": "..."}``."""
        params = dict(query or {})
        if cursor:
            params["cursor"] = cursor
        if per_page is not None:
            params["per_page"] = str(per_page)
        document = self.request_json("GET", path, query=params)
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(items, list):
            raise ApiError(None, f'GET {self.url(path, params)}: expected {{"items": [...]}}')
        next_cursor = document.get("next_cursor") or ""
        return Page(
            items=[item for item in items if isinstance(item, dict)],
            next_cursor=str(next_cursor),
            document=document,
        )

    def iter_all(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
    ) -> Iterator[JSONObject]:
        """Every item (after ``cursor``, if given), following ``next_cursor`` page after page."""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self.list_page(path, query, cursor=cursor, per_page=per_page)
            yield from page.items
            if not page.next_cursor:
                return
            if page.next_cursor in seen:
                raise ApiError(
                    None,
                    f"GET {self.url(path, query)}: the server repeated the cursor "
                    f"{page.next_cursor!r}; stopping",
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        raise ApiError(None, f"GET {self.url(path, query)}: more than {MAX_PAGES} pages")

    def list_all(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
    ) -> list[JSONObject]:
        return list(self.iter_all(path, query, cursor=cursor, per_page=per_page))

    # -- apps -------------------------------------------------------------------------------

    def create_app(self, body: JSONObject) -> JSONObject:
        return self._object("POST", "/v2/apps", body)

    def get_app(self, app_id: str) -> JSONObject:
        return self._object("GET", f"/v2/apps/{_segment(app_id)}")

    def update_app(self, app_id: str, body: JSONObject) -> JSONObject:
        return self._object("PUT", f"/v2/apps/{_segment(app_id)}", body)

    def delete_app(self, app_id: str) -> None:
        self.request_json("DELETE", f"/v2/apps/{_segment(app_id)}")

    def app_named(self, name: str) -> JSONObject | None:
        """The app with exactly this name, or None. Filters client-side as well, so a server
        that matched loosely cannot hand back the wrong app."""
        return next(
            (app for app in self.iter_all("/v2/apps", {"name": name}) if app.get("name") == name),
            None,
        )

    def find_app(self, ref: str) -> JSONObject:
        """The app named ``ref``, else the app whose id is ``ref``; ApiError 404 if neither."""
        app = self.app_named(ref)
        if app is not None:
            return app
        try:
            return self.get_app(ref)
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(
                    404, f"{exc.message} (no app is named or has the id {ref!r})"
                ) from None
            raise

    # -- secrets (write-only: no call reads a value back) ---------------------------------

    def put_secret(self, app_id: str, name: str, value: str) -> JSONObject:
        """Create or replace the app's secret ``name``; the answer has its name and times."""
        path = f"/v2/apps/{_segment(app_id)}/secrets/{_segment(name)}"
        return self._object("PUT", path, {"value": value})

    def list_secrets(self, app_id: str) -> list[JSONObject]:
        """Every secret of the app: names and times, never values."""
        return self.list_all(f"/v2/apps/{_segment(app_id)}/secrets")

    def delete_secret(self, app_id: str, name: str) -> None:
        self.request_json("DELETE", f"/v2/apps/{_segment(app_id)}/secrets/{_segment(name)}")

    # -- fns --------------------------------------------------------------------------------

    def create_fn(self, body: JSONObject) -> JSONObject:
        return self._object("POST", "/v2/fns", body)

    def get_fn(self, fn_id: str) -> JSONObject:
        return self._object("GET", f"/v2/fns/{_segment(fn_id)}")

    def update_fn(self, fn_id: str, body: JSONObject) -> JSONObject:
        return self._object("PUT", f"/v2/fns/{_segment(fn_id)}", body)

    def delete_fn(self, fn_id: str) -> None:
        self.request_json("DELETE", f"/v2/fns/{_segment(fn_id)}")

    def fn_named(self, app_id: str, name: str) -> JSONObject | None:
        query = {"app_id": app_id, "name": name}
        return next((fn for fn in self.iter_all("/v2/fns", query) if fn.get("name") == name), None)

    def find_fn(self, app: JSONObject, ref: str) -> JSONObject:
        """The fn of ``app`` named ``ref``, else the fn of ``app`` whose id is ``ref``."""
        fn = self.fn_named(str(app["id"]), ref)
        if fn is not None:
            return fn
        not_found = f"no fn in app {app.get('name')!r} is named or has the id {ref!r}"
        try:
            fn = self.get_fn(ref)
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, f"{exc.message} ({not_found})") from None
            raise
        if fn.get("app_id") != app["id"]:
            raise ApiError(404, f"Fn not found ({not_found})")
        return fn

    def get_scale(self, fn_id: str) -> JSONObject:
        """fnagent's ``GET /v2/fns/{id}/scale``: running, frozen, starting, min_hot."""
        return self._object("GET", f"/v2/fns/{_segment(fn_id)}/scale")

    def set_scale(self, fn_id: str, *, min_hot: int) -> JSONObject:
        """fnagent's ``PUT /v2/fns/{id}/scale``; the counts after the change."""
        path = f"/v2/fns/{_segment(fn_id)}/scale"
        document = self.request_json("PUT", path, json_body={"min_hot": min_hot})
        return document if isinstance(document, dict) else self.get_scale(fn_id)

    # -- triggers ---------------------------------------------------------------------------

    def create_trigger(self, body: JSONObject) -> JSONObject:
        return self._object("POST", "/v2/triggers", body)

    def get_trigger(self, trigger_id: str) -> JSONObject:
        return self._object("GET", f"/v2/triggers/{_segment(trigger_id)}")

    def update_trigger(self, trigger_id: str, body: JSONObject) -> JSONObject:
        return self._object("PUT", f"/v2/triggers/{_segment(trigger_id)}", body)

    def delete_trigger(self, trigger_id: str) -> None:
        self.request_json("DELETE", f"/v2/triggers/{_segment(trigger_id)}")

    def find_trigger(self, app: JSONObject, ref: str) -> JSONObject:
        """The trigger of ``app`` named ``ref`` (ApiError 409 if several fns have one by that
        name), else the trigger of ``app`` whose id is ``ref``."""
        query = {"app_id": str(app["id"]), "name": ref}
        named = [t for t in self.iter_all("/v2/triggers", query) if t.get("name") == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(str(t.get("id")) for t in named)
            raise ApiError(
                409,
                f"{len(named)} triggers in app {app.get('name')!r} are named {ref!r} "
                f"(ids {ids}): give the trigger's id instead",
            )
        not_found = f"no trigger in app {app.get('name')!r} is named or has the id {ref!r}"
        try:
            trigger = self.get_trigger(ref)
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, f"{exc.message} ({not_found})") from None
            raise
        if trigger.get("app_id") != app["id"]:
            raise ApiError(404, f"Trigger not found ({not_found})")
        return trigger

    # -- calls ------------------------------------------------------------------------------

    def invoke(
        self,
        fn_id: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        detached: bool = False,
        callback_url: str | None = None,
        timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S,
    ) -> RawResponse:
        """``POST /invoke/{fn_id}``: the answer as it came, whatever its status. ``detached``
        sends ``Fn-Invoke-Type: detached`` (the server answers 202 with ``Fn-Call-Id`` once
        the call is queued), with ``Fn-Callback-Url`` when ``callback_url`` is given."""
        sent = dict(headers or {})
        if detached:
            sent["Fn-Invoke-Type"] = "detached"
            if callback_url is not None:
                sent["Fn-Callback-Url"] = callback_url
        return self.send(
            "POST", f"/invoke/{_segment(fn_id)}", body=body, headers=sent, timeout_s=timeout_s
        )

    # -- call records -----------------------------------------------------------------------

    def list_calls(
        self,
        fn_id: str,
        *,
        cursor: str | None = None,
        per_page: int | None = None,
        status: str | None = None,
        from_time: int | None = None,
        to_time: int | None = None,
    ) -> Page:
        """One page of ``GET /v2/fns/{fn_id}/calls``, newest first; ``from_time`` and
        ``to_time`` are Unix seconds."""
        return self.list_page(
            self.calls_path(fn_id),
            self.calls_query(status=status, from_time=from_time, to_time=to_time),
            cursor=cursor,
            per_page=per_page,
        )

    def calls_path(self, fn_id: str) -> str:
        return f"/v2/fns/{_segment(fn_id)}/calls"

    @staticmethod
    def calls_query(
        *, status: str | None = None, from_time: int | None = None, to_time: int | None = None
    ) -> dict[str, str]:
        """The filters of the calls list as query parameters (unset ones left out)."""
        query = {"status": status, "from_time": from_time, "to_time": to_time}
        return {key: str(value) for key, value in query.items() if value is not None}

    def get_call(self, fn_id: str, call_id: str) -> JSONObject:
        """``GET /v2/fns/{fn_id}/calls/{call_id}``: one call's record."""
        return self._object("GET", f"{self.calls_path(fn_id)}/{_segment(call_id)}")

    def get_call_log(self, fn_id: str, call_id: str) -> bytes:
        """``GET /v2/fns/{fn_id}/calls/{call_id}/log``: the call's stdout and stderr, as
        stored (bytes: a function may print anything)."""
        path = f"{self.calls_path(fn_id)}/{_segment(call_id)}/log"
        response = self.send("GET", path, headers={"Accept": "text/plain"})
        if not response.ok:
            raise ApiError(response.status, error_message(response))
        return response.body

    # -- logs -------------------------------------------------------------------------------

    def follow_logs(
        self, fn_id: str, *, idle_timeout_s: float = FOLLOW_IDLE_TIMEOUT_S
    ) -> Iterator[tuple[str, JSONObject]]:
        """``GET /v2/fns/{fn_id}/logs?follow=true``: each server-sent event as it comes, as
        (event name, its JSON data): ``("line", {"call_id", "stream", "line", "container"})``
        or ``("dropped", {"dropped": n})``. Without end; ApiError when the answer is not 200
        or the server goes quiet for ``idle_timeout_s`` (it sends a keep-alive every 15 s)."""
        path = f"/v2/fns/{_segment(fn_id)}/logs"
        query = {"follow": "true"}
        target = f"{self._prefix}{path}?{urlencode(query)}"
        headers = {"User-Agent": "fnagent-cli", "Accept": "text/event-stream"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        import http.client

        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=idle_timeout_s)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=idle_timeout_s)
        try:
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                if response.status != 200:
                    raise ApiError(
                        response.status,
                        error_message(
                            RawResponse(
                                status=response.status,
                                reason=response.reason,
                                http_version="HTTP/1.1",
                                headers=response.getheaders(),
                                body=response.read(),
                            )
                        ),
                    )
                yield from _events(response)
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(
                    None, self._unreachable("GET", path, query, exc, idle_timeout_s)
                ) from exc
        finally:
            connection.close()

    # -- endpoints --------------------------------------------------------------------------

    def invoke_endpoint(self, fn: JSONObject) -> str:
        """Where the server says ``fn`` is invoked, else ``<api-url>/invoke/<id>``."""
        annotations = fn.get("annotations")
        if isinstance(annotations, dict):
            endpoint = annotations.get(INVOKE_ENDPOINT_ANNOTATION)
            if isinstance(endpoint, str) and endpoint:
                return endpoint
        return f"{self.base_url}/invoke/{_segment(str(fn.get('id', '')))}"

    def trigger_endpoint(self, trigger: JSONObject, app: JSONObject) -> str:
        """Where the server says an HTTP trigger answers, else ``<api-url>/t/<app><source>``."""
        annotations = trigger.get("annotations")
        if isinstance(annotations, dict):
            endpoint = annotations.get(TRIGGER_ENDPOINT_ANNOTATION)
            if isinstance(endpoint, str) and endpoint:
                return endpoint
        source = str(trigger.get("source", ""))
        if not source.startswith("/"):
            source = "/" + source
        return f"{self.base_url}/t/{_segment(str(app.get('name', '')))}{quote(source)}"
