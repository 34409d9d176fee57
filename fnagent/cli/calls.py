"""The call record commands of ``fnagent``: ``calls list``, ``calls get`` and ``logs``.

They find the app and fn by name or id, as the other client commands do, then read the fn's
call records (``GET /v2/fns/{fn_id}/calls...``). ``logs`` prints a call's log as it was stored,
byte for byte, on stdout.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from fnagent.cli.commands import (
    _ApiCommand,
    _ApiGroup,
    _client,
    _client_options,
    _page_options,
    _show,
    _show_list,
    follow_fn_logs,
)

if TYPE_CHECKING:
    from fnagent.client import ApiClient, JSONObject

CALL_STATUSES = ("queued", "running", "success", "error", "timeout", "cancelled")


def find_fn(client: ApiClient, app: str, fn: str) -> JSONObject:
    """The fn named (or with the id) ``fn`` in the app named (or with the id) ``app``."""
    return client.find_fn(client.find_app(app), fn)


def _duration_ms(call: JSONObject) -> str:
    timings = call.get("timings")
    if not isinstance(timings, dict):
        return ""
    parts = [timings.get(key) for key in ("queued_ms", "start_ms", "exec_ms")]
    known = [part for part in parts if isinstance(part, int | float)]
    return f"{sum(known):.1f}" if known else ""


@click.group(cls=_ApiGroup)
@_client_options()
def calls() -> None:
    """A fn's call records: list them or show one."""


@calls.command("list")
@click.argument("app")
@click.argument("fn")
@click.option("--status", type=click.Choice(CALL_STATUSES), help="Only calls in this state.")
@click.option(
    "--from-time",
    type=click.IntRange(min=0),
    metavar="UNIX_S",
    help="Only calls created at or after this time (Unix seconds).",
)
@click.option(
    "--to-time",
    type=click.IntRange(min=0),
    metavar="UNIX_S",
    help="Only calls created at or before this time (Unix seconds).",
)
@_page_options
@_client_options()
def calls_list(
    app: str,
    fn: str,
    status: str | None,
    from_time: int | None,
    to_time: int | None,
    all_pages: bool,
    cursor: str | None,
    per_page: int | None,
) -> None:
    """List the calls of FN in APP, newest first."""
    client = _client()
    found = find_fn(client, app, fn)
    _show_list(
        client,
        client.calls_path(str(found["id"])),
        client.calls_query(status=status, from_time=from_time, to_time=to_time),
        all_pages=all_pages,
        cursor=cursor,
        per_page=per_page,
        headers=("ID", "STATUS", "HTTP", "START", "CREATED_AT", "MS"),
        row=lambda call: (
            call.get("id"),
            call.get("status"),
            call.get("http_status"),
            call.get("start"),
            call.get("created_at"),
            _duration_ms(call),
        ),
    )


@calls.command("get")
@click.argument("app")
@click.argument("fn")
@click.argument("call_id")
@_client_options()
def calls_get(app: str, fn: str, call_id: str) -> None:
    """Show the record of call CALL_ID of FN in APP."""
    client = _client()
    _show(client.get_call(str(find_fn(client, app, fn)["id"]), call_id))


def print_call_log(client: ApiClient, fn: JSONObject, call_id: str) -> None:
    """Write the stored log of ``call_id`` to stdout as it is (bytes)."""
    sys.stdout.buffer.write(client.get_call_log(str(fn["id"]), call_id))
    sys.stdout.flush()


@click.command("logs", cls=_ApiCommand)
@click.argument("app")
@click.argument("fn")
@click.argument("call_id", required=False)
@click.option(
    "--follow", "-f", is_flag=True, help="Print FN's log lines as they come, until Ctrl-C."
)
@_client_options()
def logs_command(app: str, fn: str, call_id: str | None, follow: bool) -> None:
    """Print the log (stdout and stderr, as stored) of call CALL_ID of FN in APP; or, with
    --follow and no CALL_ID, FN's log lines as they come, as '<call id> <stream> <line>' ('-'
    for a line printed between calls; --json prints each event's JSON)."""
    if follow == (call_id is not None):
        raise click.UsageError(
            "give CALL_ID (a call's stored log) or --follow (FN's lines as they come)"
        )
    client = _client()
    found = find_fn(client, app, fn)
    if call_id is None:
        follow_fn_logs(client, found)
    else:
        print_call_log(client, found, call_id)


def register(group: click.Group) -> None:
    """Add ``calls`` and ``logs`` to ``group``."""
    for command in (calls, logs_command):
        group.add_command(command)
