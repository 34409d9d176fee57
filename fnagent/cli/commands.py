"""The API client commands of ``fnagent``: apps, fns, triggers, secrets, invoke and deploy;
``fnagent logs --follow``'s printing (the ``logs`` command is fnagent/cli/calls.py's).

They talk to ``fnagent serve`` (or any Fn v2 server) through :mod:`fnagent.client`, which
loads inside the commands so ``fnagent --help`` stays fast. ``--json`` prints the server's JSON;
otherwise lists are aligned tables and one object is ``key: value`` lines. An API failure is one
``fnagent: <message>`` line on stderr and exit status 1; a usage mistake is a click usage error,
which ``fnagent.cli.entry`` turns into exit status 125.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from fnagent.client import ApiClient, JSONObject

EXIT_API_ERROR = 1

# ctx.meta is shared by a group's context and its command's, so an option given on either
# lands here; the command's own, parsed later, wins.
_SETTINGS = "fnagent.cli.commands"

_F = TypeVar("_F", bound=Callable[..., Any])

# Single objects print these first, in this order; other fields follow alphabetically.
_FIELD_ORDER = (
    "id",
    "name",
    "app_id",
    "fn_id",
    "image",
    "memory",
    "timeout",
    "idle_timeout",
    "type",
    "source",
    "shape",
    "syslog_url",
    "running",
    "frozen",
    "starting",
    "min_hot",
    "config",
    "annotations",
    "created_at",
    "updated_at",
)


class _ApiCommand(click.Command):
    """A client command: an ApiError becomes one line on stderr and exit status 1.

    sys.exit, not click's Exit: ``entry()`` runs click with standalone_mode=False, where an
    Exit's code is returned and lost."""

    def invoke(self, ctx: click.Context) -> Any:
        from fnagent.client import ApiError

        try:
            return super().invoke(ctx)
        except ApiError as exc:
            click.echo(f"fnagent: {exc.message}", err=True)
            sys.exit(EXIT_API_ERROR)


class _ApiGroup(click.Group):
    command_class = _ApiCommand


# -- options ---------------------------------------------------------------------------------


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False and param.name:
        ctx.meta.setdefault(_SETTINGS, {})[param.name] = value
    return value


def _client_options(*, json_flag: bool = True) -> Callable[[_F], _F]:
    """--api-url, --token and (usually) --json, accepted on a group and on its commands."""
    options = [
        click.option(
            "--api-url",
            metavar="URL",
            expose_value=False,
            callback=_remember,
            help="The Fn API server [default: $FN_API_URL, else http://127.0.0.1:8080].",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            expose_value=False,
            callback=_remember,
            help="Sent as 'Authorization: Bearer TOKEN' [default: $FN_TOKEN].",
        ),
    ]
    if json_flag:
        options.append(
            click.option(
                "--json",
                "json_output",
                is_flag=True,
                expose_value=False,
                callback=_remember,
                help="Print the server's JSON.",
            )
        )

    def decorate(f: _F) -> _F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _parse_config(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise click.BadParameter(
                f"{item!r}: use KEY=VALUE (an empty VALUE deletes KEY on update)",
                ctx=ctx,
                param=param,
            )
        config[key] = value
    return config


def _parse_annotations(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    annotations: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise click.BadParameter(
                f"{item!r}: use KEY=JSON (an empty value deletes KEY on update)",
                ctx=ctx,
                param=param,
            )
        if not raw:
            annotations[key] = ""  # Fn's marker for "remove this key" in an update
            continue
        try:
            annotations[key] = json.loads(raw)
        except ValueError as exc:
            raise click.BadParameter(
                f"{item!r}: the value is not JSON ({exc}); a string is written '\"text\"'",
                ctx=ctx,
                param=param,
            ) from None
    return annotations


def _parse_headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() or ord(c) > 126 for c in name):
            raise click.BadParameter(f"{item!r}: use 'Name: value'", ctx=ctx, param=param)
        headers[name] = value.strip()
    return headers


def _config_option(help_text: str) -> Callable[[_F], _F]:
    return click.option(
        "--config",
        "-c",
        "config",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_parse_config,
        help=help_text,
    )


def _annotation_option(f: _F) -> _F:
    return click.option(
        "--annotation",
        "-a",
        "annotations",
        multiple=True,
        metavar="KEY=JSON",
        callback=_parse_annotations,
        help="An annotation; the value is JSON (repeatable).",
    )(f)


def _parse_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from fnagent.errors import InvalidInputError
    from fnagent.units import parse_memory_mb

    if value is None:
        return None
    try:
        return parse_memory_mb(value)
    except InvalidInputError as exc:
        raise click.BadParameter(exc.message) from None


def _fn_limit_options(f: _F) -> _F:
    for option in reversed(
        [
            click.option(
                "--memory",
                "-m",
                callback=_parse_memory,
                metavar="SIZE",
                help="Memory limit: MiB (128) or with a unit k, m, g (128m, 1g); at least 6m.",
            ),
            click.option(
                "--timeout",
                "-t",
                type=click.IntRange(min=0),
                metavar="S",
                help="Call timeout in seconds.",
            ),
            click.option(
                "--idle-timeout",
                type=click.IntRange(min=0),
                metavar="S",
                help="Seconds a hot container may stay idle.",
            ),
        ]
    ):
        f = option(f)
    return f


def _page_options(f: _F) -> _F:
    for option in reversed(
        [
            click.option(
                "--all", "all_pages", is_flag=True, help="Follow next_cursor and list everything."
            ),
            click.option("--cursor", metavar="CURSOR", help="Start after this next_cursor."),
            click.option(
                "--per-page",
                type=click.IntRange(min=1),
                metavar="N",
                help="Items per page (the server's default is 30).",
            ),
        ]
    ):
        f = option(f)
    return f


# -- settings and output --------------------------------------------------------------------


def _client() -> ApiClient:
    from fnagent.client import ApiClient

    ctx = click.get_current_context()
    settings = ctx.meta.get(_SETTINGS, {})
    try:
        return ApiClient.from_options(settings.get("api_url"), settings.get("token"), os.environ)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="'--api-url' / FN_API_URL") from None


def _json_output() -> bool:
    return bool(click.get_current_context().meta.get(_SETTINGS, {}).get("json_output"))


def _echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def format_object(obj: Mapping[str, Any]) -> list[str]:
    """``key: value`` lines; a non-empty map (config, annotations) as indented lines below."""
    keys = [k for k in _FIELD_ORDER if k in obj] + sorted(k for k in obj if k not in _FIELD_ORDER)
    lines: list[str] = []
    for key in keys:
        value = obj[key]
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines.extend(f"  {sub}: {_text(value[sub])}".rstrip() for sub in sorted(value))
        else:
            lines.append(f"{key}: {_text(value)}".rstrip())
    return lines


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]


def _show(obj: JSONObject) -> None:
    if _json_output():
        _echo_json(obj)
    else:
        for line in format_object(obj):
            click.echo(line)


def _show_deleted(kind: str, obj: JSONObject) -> None:
    if not _json_output():  # the server answers 204 with no JSON to pass on
        click.echo(f"deleted {kind} {obj.get('name')} ({obj.get('id')})")


def _show_list(
    client: ApiClient,
    path: str,
    query: Mapping[str, str],
    *,
    all_pages: bool,
    cursor: str | None,
    per_page: int | None,
    headers: Sequence[str],
    row: Callable[[JSONObject], Sequence[Any]],
) -> None:
    if all_pages:
        items = client.list_all(path, query, cursor=cursor, per_page=per_page)
        document: JSONObject = {"items": items}
        next_cursor = ""
    else:
        page = client.list_page(path, query, cursor=cursor, per_page=per_page)
        items, document, next_cursor = page.items, page.document, page.next_cursor
    if _json_output():
        _echo_json(document)
        return
    for line in format_table(headers, [[_text(cell) for cell in row(item)] for item in items]):
        click.echo(line)
    if next_cursor:
        click.echo(f"(more: --cursor {next_cursor} for the next page, or --all)", err=True)


def _source(value: str) -> str:
    return value if value.startswith("/") else "/" + value


# -- apps ------------------------------------------------------------------------------------


@click.group(cls=_ApiGroup)
@_client_options()
def apps() -> None:
    """Create, list, show, change and delete apps. APP is a name or an id."""


_SYSLOG_HELP = (
    "Send the app's function output to syslog: tcp://, udp:// or tls:// host[:port], "
    'comma-separated; "" removes it.'
)


@apps.command("create")
@click.argument("name")
@_config_option("Config for every fn of the app, KEY=VALUE (repeatable).")
@_annotation_option
@click.option("--syslog-url", help=_SYSLOG_HELP)
@_client_options()
def apps_create(
    name: str, config: dict[str, str], annotations: dict[str, Any], syslog_url: str | None
) -> None:
    """Create the app NAME."""
    body: JSONObject = {"name": name}
    if config:
        body["config"] = config
    if annotations:
        body["annotations"] = annotations
    if syslog_url:
        body["syslog_url"] = syslog_url
    _show(_client().create_app(body))


@apps.command("list")
@_page_options
@_client_options()
def apps_list(all_pages: bool, cursor: str | None, per_page: int | None) -> None:
    """List apps by name."""
    _show_list(
        _client(),
        "/v2/apps",
        {},
        all_pages=all_pages,
        cursor=cursor,
        per_page=per_page,
        headers=("NAME", "ID"),
        row=lambda app: (app.get("name"), app.get("id")),
    )


@apps.command("get")
@click.argument("app")
@_client_options()
def apps_get(app: str) -> None:
    """Show APP."""
    _show(_client().find_app(app))


@apps.command("update")
@click.argument("app")
@_config_option("Set KEY to VALUE; KEY= deletes KEY (repeatable).")
@_annotation_option
@click.option("--syslog-url", help=_SYSLOG_HELP)
@_client_options()
def apps_update(
    app: str, config: dict[str, str], annotations: dict[str, Any], syslog_url: str | None
) -> None:
    """Merge config and annotations into APP; set or remove its syslog URL."""
    if not config and not annotations and syslog_url is None:
        raise click.UsageError("nothing to update: give --config, --annotation or --syslog-url")
    client = _client()
    found = client.find_app(app)
    body: JSONObject = {}
    if config:
        body["config"] = config
    if annotations:
        body["annotations"] = annotations
    if syslog_url is not None:
        body["syslog_url"] = syslog_url
    _show(client.update_app(str(found["id"]), body))


@apps.command("delete")
@click.argument("app")
@_client_options()
def apps_delete(app: str) -> None:
    """Delete APP."""
    client = _client()
    found = client.find_app(app)
    client.delete_app(str(found["id"]))
    _show_deleted("app", found)


# -- fns -------------------------------------------------------------------------------------


@click.group(cls=_ApiGroup)
@_client_options()
def fns() -> None:
    """Create, list, show, change, scale and delete the fns of an app. FN is a name or an id."""


def _fn_fields(
    image: str | None, memory: int | None, timeout: int | None, idle_timeout: int | None
) -> JSONObject:
    fields = {"image": image, "memory": memory, "timeout": timeout, "idle_timeout": idle_timeout}
    return {key: value for key, value in fields.items() if value is not None}


@fns.command("create")
@click.argument("app")
@click.argument("name")
@click.argument("image")
@_fn_limit_options
@_config_option("Config for the fn, KEY=VALUE (repeatable).")
@_annotation_option
@_client_options()
def fns_create(
    app: str,
    name: str,
    image: str,
    memory: int | None,
    timeout: int | None,
    idle_timeout: int | None,
    config: dict[str, str],
    annotations: dict[str, Any],
) -> None:
    """Create the fn NAME in APP, running IMAGE."""
    client = _client()
    found = client.find_app(app)
    body: JSONObject = {
        "name": name,
        "app_id": found["id"],
        **_fn_fields(image, memory, timeout, idle_timeout),
    }
    if config:
        body["config"] = config
    if annotations:
        body["annotations"] = annotations
    _show(client.create_fn(body))


@fns.command("list")
@click.argument("app")
@_page_options
@_client_options()
def fns_list(app: str, all_pages: bool, cursor: str | None, per_page: int | None) -> None:
    """List the fns of APP by name."""
    client = _client()
    found = client.find_app(app)
    _show_list(
        client,
        "/v2/fns",
        {"app_id": str(found["id"])},
        all_pages=all_pages,
        cursor=cursor,
        per_page=per_page,
        headers=("NAME", "IMAGE", "ID"),
        row=lambda fn: (fn.get("name"), fn.get("image"), fn.get("id")),
    )


@fns.command("get")
@click.argument("app")
@click.argument("fn")
@_client_options()
def fns_get(app: str, fn: str) -> None:
    """Show FN of APP."""
    client = _client()
    _show(client.find_fn(client.find_app(app), fn))


@fns.command("update")
@click.argument("app")
@click.argument("fn")
@click.option("--image", "-i", metavar="IMAGE", help="Run this image from now on.")
@_fn_limit_options
@_config_option("Set KEY to VALUE; KEY= deletes KEY (repeatable).")
@_annotation_option
@_client_options()
def fns_update(
    app: str,
    fn: str,
    image: str | None,
    memory: int | None,
    timeout: int | None,
    idle_timeout: int | None,
    config: dict[str, str],
    annotations: dict[str, Any],
) -> None:
    """Change FN of APP: only the fields given change; config and annotations merge."""
    body: JSONObject = _fn_fields(image, memory, timeout, idle_timeout)
    if config:
        body["config"] = config
    if annotations:
        body["annotations"] = annotations
    if not body:
        raise click.UsageError(
            "nothing to update: give --image, --memory, --timeout, --idle-timeout, --config "
            "or --annotation"
        )
    client = _client()
    found = client.find_fn(client.find_app(app), fn)
    _show(client.update_fn(str(found["id"]), body))


@fns.command("delete")
@click.argument("app")
@click.argument("fn")
@_client_options()
def fns_delete(app: str, fn: str) -> None:
    """Delete FN of APP."""
    client = _client()
    found = client.find_fn(client.find_app(app), fn)
    client.delete_fn(str(found["id"]))
    _show_deleted("fn", found)


@fns.command("scale")
@click.argument("app")
@click.argument("fn")
@click.option(
    "--min-hot",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep at least N hot containers of FN.",
)
@_client_options()
def fns_scale(app: str, fn: str, min_hot: int | None) -> None:
    """Show FN's containers (running, frozen, starting, min_hot) and its keep-alive (per
    version, and the next pre-warm); --min-hot sets the floor."""
    client = _client()
    fn_id = str(client.find_fn(client.find_app(app), fn)["id"])
    if min_hot is None:
        _show(client.get_scale(fn_id))
    else:
        _show(client.set_scale(fn_id, min_hot=min_hot))


# -- triggers --------------------------------------------------------------------------------


@click.group(cls=_ApiGroup)
@_client_options()
def triggers() -> None:
    """Create, list, show, change and delete triggers. TRIGGER is a name or an id."""


@triggers.command("create")
@click.argument("app")
@click.argument("fn")
@click.argument("name")
@click.option(
    "--source", "-s", required=True, metavar="/PATH", help="The path under /t/APP that calls FN."
)
@click.option(
    "--type", "trigger_type", default="http", show_default=True, help="The trigger's type."
)
@_annotation_option
@_client_options()
def triggers_create(
    app: str, fn: str, name: str, source: str, trigger_type: str, annotations: dict[str, Any]
) -> None:
    """Create the trigger NAME for FN of APP."""
    client = _client()
    found_app = client.find_app(app)
    found_fn = client.find_fn(found_app, fn)
    body: JSONObject = {
        "name": name,
        "app_id": found_app["id"],
        "fn_id": found_fn["id"],
        "type": trigger_type,
        "source": _source(source),
    }
    if annotations:
        body["annotations"] = annotations
    _show(client.create_trigger(body))


@triggers.command("list")
@click.argument("app")
@click.option("--fn", "fn_ref", metavar="FN", help="Only the triggers of this fn.")
@_page_options
@_client_options()
def triggers_list(
    app: str, fn_ref: str | None, all_pages: bool, cursor: str | None, per_page: int | None
) -> None:
    """List the triggers of APP (or of one of its fns) by name."""
    client = _client()
    found_app = client.find_app(app)
    query = {"app_id": str(found_app["id"])}
    fn_names: dict[str, str] = {}
    if fn_ref is not None:
        found_fn = client.find_fn(found_app, fn_ref)
        query["fn_id"] = str(found_fn["id"])
        fn_names[str(found_fn["id"])] = str(found_fn.get("name"))

    def fn_name(fn_id: str) -> str:
        if not fn_names:
            fn_names.update(
                (str(f.get("id")), str(f.get("name")))
                for f in client.iter_all("/v2/fns", {"app_id": query["app_id"]})
            )
        return fn_names.get(fn_id, fn_id)

    def row(trigger: JSONObject) -> Sequence[Any]:
        return (
            fn_name(str(trigger.get("fn_id"))),
            trigger.get("name"),
            trigger.get("type"),
            trigger.get("source"),
            client.trigger_endpoint(trigger, found_app),
            trigger.get("id"),
        )

    _show_list(
        client,
        "/v2/triggers",
        query,
        all_pages=all_pages,
        cursor=cursor,
        per_page=per_page,
        headers=("FUNCTION", "NAME", "TYPE", "SOURCE", "ENDPOINT", "ID"),
        row=row,
    )


@triggers.command("get")
@click.argument("app")
@click.argument("trigger")
@_client_options()
def triggers_get(app: str, trigger: str) -> None:
    """Show TRIGGER of APP."""
    client = _client()
    _show(client.find_trigger(client.find_app(app), trigger))


@triggers.command("update")
@click.argument("app")
@click.argument("trigger")
@click.option("--source", "-s", metavar="/PATH", help="The new path under /t/APP.")
@_annotation_option
@_client_options()
def triggers_update(
    app: str, trigger: str, source: str | None, annotations: dict[str, Any]
) -> None:
    """Change TRIGGER of APP: its source, and annotations merged."""
    body: JSONObject = {}
    if source is not None:
        body["source"] = _source(source)
    if annotations:
        body["annotations"] = annotations
    if not body:
        raise click.UsageError("nothing to update: give --source or --annotation")
    client = _client()
    found = client.find_trigger(client.find_app(app), trigger)
    _show(client.update_trigger(str(found["id"]), body))


@triggers.command("delete")
@click.argument("app")
@click.argument("trigger")
@_client_options()
def triggers_delete(app: str, trigger: str) -> None:
    """Delete TRIGGER of APP."""
    client = _client()
    found = client.find_trigger(client.find_app(app), trigger)
    client.delete_trigger(str(found["id"]))
    _show_deleted("trigger", found)


# -- invoke and deploy -----------------------------------------------------------------------


@click.command("invoke", cls=_ApiCommand)
@click.argument("app")
@click.argument("fn")
@click.option("--content-type", metavar="TYPE", help="The request body's Content-Type.")
@click.option(
    "--header",
    "-H",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    callback=_parse_headers,
    help="A request header (repeatable).",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also print the response's status line and headers to stderr.",
)
@click.option(
    "--detached",
    is_flag=True,
    help="Queue the call and print its call id (Fn-Invoke-Type: detached); do not wait.",
)
@click.option(
    "--callback-url",
    metavar="URL",
    help="With --detached: where the server POSTs the call's result when it completes.",
)
@_client_options(json_flag=False)
def invoke_command(
    app: str,
    fn: str,
    content_type: str | None,
    headers: dict[str, str],
    verbose: bool,
    detached: bool,
    callback_url: str | None,
) -> None:
    """Call FN of APP: stdin is the request body (none from a terminal); the response body
    goes to stdout byte for byte. With --detached, the call is queued on the server and its
    call id goes to stdout instead.

    Exit status 0 on a 2xx answer; otherwise the server's message goes to stderr and the exit
    status is 1.
    """
    from fnagent.client import error_message

    client = _client()
    found = client.find_fn(client.find_app(app), fn)
    stdin = sys.stdin
    body = b"" if stdin is None or stdin.isatty() else stdin.buffer.read()
    if content_type is not None:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = content_type
    if callback_url is not None and not detached:
        raise click.UsageError("--callback-url needs --detached")
    response = client.invoke(
        str(found["id"]), body, headers, detached=detached, callback_url=callback_url
    )
    if verbose:
        click.echo(f"{response.http_version} {response.status} {response.reason}", err=True)
        for name, value in response.headers:
            click.echo(f"{name}: {value}", err=True)
        click.echo("", err=True)
    if not response.ok:
        click.echo(f"fnagent: {error_message(response)}", err=True)
        sys.exit(EXIT_API_ERROR)
    if detached:
        click.echo(response.header("Fn-Call-Id") or "")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(response.body)
    sys.stdout.buffer.flush()


@click.command("deploy", cls=_ApiCommand)
@click.argument("app")
@click.argument("name")
@click.option("--image", "-i", required=True, metavar="IMAGE", help="The image to run.")
@_fn_limit_options
@_config_option("Config for the fn, KEY=VALUE; KEY= deletes KEY (repeatable).")
@click.option(
    "--trigger",
    "trigger_source",
    metavar="/SOURCE",
    help="Also make an HTTP trigger, named NAME, at /t/APP/SOURCE.",
)
@_client_options()
def deploy_command(
    app: str,
    name: str,
    image: str,
    memory: int | None,
    timeout: int | None,
    idle_timeout: int | None,
    config: dict[str, str],
    trigger_source: str | None,
) -> None:
    """Make fn NAME of APP run IMAGE: creates APP if missing, creates or updates the fn, and
    the HTTP trigger when asked. Running it again with the same flags changes nothing.

    Prints the fn's invoke URL (and the trigger's URL) as the server reports them.
    """
    from fnagent.client import ApiError

    client = _client()
    actions: dict[str, str] = {}
    try:
        found_app = client.find_app(app)
        actions["app"] = "unchanged"
    except ApiError as exc:
        if exc.status != 404:
            raise
        found_app = client.create_app({"name": app})
        actions["app"] = "created"
    app_id = str(found_app["id"])

    wanted = _fn_fields(image, memory, timeout, idle_timeout)
    fn_changes: list[str] = []
    fn = client.fn_named(app_id, name)
    if fn is None:
        body: JSONObject = {"name": name, "app_id": app_id, **wanted}
        if kept := {k: v for k, v in config.items() if v != ""}:
            body["config"] = kept
        fn = client.create_fn(body)
        actions["fn"] = "created"
    else:
        delta: JSONObject = {k: v for k, v in wanted.items() if fn.get(k) != v}
        current = fn.get("config") or {}
        config_delta = {
            k: v for k, v in config.items() if (k in current if v == "" else current.get(k) != v)
        }
        if config_delta:
            delta["config"] = config_delta
        fn_changes = sorted(delta)
        if delta:
            fn = client.update_fn(str(fn["id"]), delta)
            actions["fn"] = "updated"
        else:
            actions["fn"] = "unchanged"
    fn_id = str(fn["id"])

    trigger: JSONObject | None = None
    if trigger_source is not None:
        source = _source(trigger_source)
        existing = client.list_all("/v2/triggers", {"app_id": app_id, "fn_id": fn_id})
        trigger = next(
            (t for t in existing if t.get("type") == "http" and t.get("source") == source), None
        )
        if trigger is not None:
            actions["trigger"] = "unchanged"
        elif (named := next((t for t in existing if t.get("name") == name), None)) is not None:
            trigger = client.update_trigger(str(named["id"]), {"source": source})
            actions["trigger"] = "updated"
        else:
            trigger = client.create_trigger(
                {"name": name, "app_id": app_id, "fn_id": fn_id, "type": "http", "source": source}
            )
            actions["trigger"] = "created"

    invoke_url = client.invoke_endpoint(fn)
    trigger_url = client.trigger_endpoint(trigger, found_app) if trigger is not None else None
    if _json_output():
        _echo_json(
            {
                "app": found_app,
                "fn": fn,
                "trigger": trigger,
                "actions": actions,
                "fn_changes": fn_changes,
                "invoke_endpoint": invoke_url,
                "trigger_endpoint": trigger_url,
            }
        )
        return
    click.echo(f"app: {found_app.get('name')} ({actions['app']})")
    changed = f": {', '.join(fn_changes)}" if fn_changes else ""
    click.echo(f"fn: {fn.get('name')} ({actions['fn']}{changed})")
    if trigger is not None:
        click.echo(f"trigger: {trigger.get('name')} {trigger.get('source')} ({actions['trigger']})")
    click.echo(f"invoke_endpoint: {invoke_url}")
    if trigger_url is not None:
        click.echo(f"trigger_endpoint: {trigger_url}")


# -- secrets ---------------------------------------------------------------------------------


@click.group(cls=_ApiGroup)
@_client_options()
def secrets() -> None:
    """Manage an app's secrets (write-only: values are never shown)."""


def _secret_value(name: str) -> str:
    """The value to set: typed (hidden, twice) at a terminal, else all of stdin as sent."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        value: str = click.prompt(
            f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True
        )
        return value
    raw = stdin.buffer.read() if stdin is not None else b""
    if not raw:
        raise click.UsageError(
            f"no value for secret {name!r} on stdin: pipe it in, e.g. "
            f"printf '%s' \"$VALUE\" | fnagent secrets set APP {name}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(f"the value of secret {name!r} is not UTF-8 text") from None


@secrets.command("set")
@click.argument("app")
@click.argument("name")
@_client_options()
def secrets_set(app: str, name: str) -> None:
    """Set secret NAME of APP to stdin's bytes, exactly (no trailing newline is dropped), or
    to a value typed at the terminal. Fns name it in the annotation fnagent.io/secrets and
    read it from /run/secrets/NAME."""
    value = _secret_value(name)
    client = _client()
    found = client.find_app(app)
    _show(client.put_secret(str(found["id"]), name, value))


@secrets.command("list")
@click.argument("app")
@_client_options()
def secrets_list(app: str) -> None:
    """List APP's secrets: names and times."""
    client = _client()
    found = client.find_app(app)
    items = client.list_secrets(str(found["id"]))
    if _json_output():
        _echo_json({"items": items})
        return
    rows = [
        [_text(i.get("name")), _text(i.get("created_at")), _text(i.get("updated_at"))]
        for i in items
    ]
    for line in format_table(["NAME", "CREATED", "UPDATED"], rows):
        click.echo(line)


@secrets.command("delete")
@click.argument("app")
@click.argument("name")
@_client_options()
def secrets_delete(app: str, name: str) -> None:
    """Delete secret NAME of APP (refused while a fn names it)."""
    client = _client()
    found = client.find_app(app)
    client.delete_secret(str(found["id"]), name)
    if not _json_output():
        click.echo(f"deleted secret {name} of app {found.get('name')}")


# -- logs ------------------------------------------------------------------------------------


def follow_fn_logs(client: ApiClient, fn: JSONObject) -> None:
    """Print ``fn``'s log lines as they come (``fnagent logs APP FN --follow``); lines lost
    because this reader was too slow are said on stderr."""
    as_json = _json_output()
    for name, data in client.follow_logs(str(fn["id"])):
        if as_json:
            click.echo(json.dumps({"event": name, **data}, ensure_ascii=False))
        elif name == "dropped":
            click.echo(
                f"fnagent: {data.get('dropped')} lines dropped (reading too slowly)", err=True
            )
        elif name == "line":
            click.echo(f"{data.get('call_id') or '-'} {data.get('stream')} {data.get('line')}")


def register(group: click.Group) -> None:
    """Add the client commands (apps, fns, triggers, secrets, invoke, deploy) to ``group``."""
    for command in (apps, fns, triggers, secrets, invoke_command, deploy_command):
        group.add_command(command)
