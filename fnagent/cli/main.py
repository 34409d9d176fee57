"""The ``fnagent`` command. Imports stay lean here: docker-py, anyio and the server load inside
the commands that need them, so ``fnagent --help`` and the start of ``fnagent run`` stay fast."""

from __future__ import annotations

import os
import sys

import click

from fnagent.cli.quickrun import exit_now
from fnagent.errors import EXIT_AGENT_FAILURE, EXIT_CANCELLED

# The API client commands live in fnagent.cli.commands, whose import costs about as much as
# click's: it loads only when one of them (or the command list) is asked for, not for `run`.
CLIENT_COMMANDS = ("apps", "calls", "deploy", "fns", "invoke", "logs", "secrets", "triggers")


class _Main(click.Group):
    """The top-level group: its own commands, plus the client commands loaded on demand."""

    def _load_client_commands(self) -> None:
        from fnagent.cli import calls
        from fnagent.cli.commands import register

        if CLIENT_COMMANDS[0] not in self.commands:
            register(self)
            calls.register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_client_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in CLIENT_COMMANDS:
            self._load_client_commands()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fnagent", prog_name="fnagent")
def main() -> None:
    """Run container images as functions on a Docker host."""


@main.command(context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--memory",
    "-m",
    default="128m",
    show_default=True,
    help="Memory limit, no swap: MiB (128) or with a unit k, m, g (64m, 1g); at least 6m.",
)
@click.option("--cpus", default=None, help="CPU limit: 0.5, 2, or milli-CPUs like 500m.")
@click.option(
    "--timeout",
    "-t",
    default="30s",
    show_default=True,
    help="Kill the function after this long: 30, 1.5s, 250ms, 2m.",
)
@click.option("--env", "-e", multiple=True, help="NAME=value, or NAME to pass the host's value.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cold", "http-stream"]),
    default="cold",
    show_default=True,
    help="cold: stdin/stdout; http-stream: one POST /call.",
)
@click.option(
    "--header", "-H", multiple=True, help="http-stream only: a request header 'Name: value'."
)
@click.option(
    "--pull",
    type=click.Choice(["missing", "always", "never"]),
    default="missing",
    show_default=True,
    help="When to pull the image.",
)
@click.option(
    "--user",
    "-u",
    default="1000:1000",
    show_default=True,
    help="uid:gid to run as; 'image' keeps the image's own user.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result, timings and resource samples as JSON.",
)
@click.option(
    "--prefork",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Start a prefork pool of N network namespaces first and join one "
    "(overrides FN_EXPERIMENTAL_PREFORK_POOL_SIZE; 0 = no pool).",
)
@click.option(
    "--standalone",
    is_flag=True,
    help="Run in this process even when an agent answers at FN_API_URL "
    "(--prefork and --pull always/never imply it).",
)
def run(
    image: str,
    command: tuple[str, ...],
    memory: str,
    cpus: str | None,
    timeout: str,
    env: tuple[str, ...],
    fmt: str,
    header: tuple[str, ...],
    pull: str,
    user: str,
    as_json: bool,
    prefork: int | None,
    standalone: bool,
) -> None:
    """Run IMAGE once as a function: stdin in, stdout out, like `docker run --rm -i`.

    When `fnagent serve` answers at FN_API_URL (default http://127.0.0.1:8080), the run is
    handed to it (its prefork pool and image cache, FN_TOKEN as for the client commands);
    otherwise it runs in this process.

    \b
    Exit code:
      the function's own exit code;
      124  it timed out (the container is killed);
      125  fnagent itself failed (bad flag, image not found, Docker unreachable);
      137  it ran out of memory (the message names the limit);
      130  interrupted (the container is removed first);
      1    an http-stream function answered with a non-2xx status.
    """
    from fnagent.cli.run import run_command

    _exit(
        run_command(
            image=image,
            command=list(command) or None,
            memory=memory,
            cpus=cpus,
            timeout=timeout,
            env=env,
            fmt=fmt,
            headers=header,
            pull=pull,
            user=user,
            as_json=as_json,
            prefork=prefork,
            standalone=standalone,
        )
    )


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port (default FN_PORT or 8080).",
)
@click.option(
    "--db-url",
    default=None,
    help="Store: sqlite3:///var/lib/fnagent/fn.db, or postgresql://user:password@host:port/db "
    "shared by several agents (default FN_DB_URL or ./data/fnagent.db).",
)
@click.option(
    "--token", default=None, help="Bearer token required on management routes (default FN_TOKEN)."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the token from this file (default FN_TOKEN_FILE).",
)
@click.option("--invoke-token", is_flag=True, help="Require the token on /invoke and /t too.")
@click.option(
    "--prefork",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Keep a prefork pool of N network namespaces for cold starts "
    "(overrides FN_EXPERIMENTAL_PREFORK_POOL_SIZE/_MIN/_MAX; 0 = no pool).",
)
def serve(
    host: str | None,
    port: int | None,
    db_url: str | None,
    token: str | None,
    token_file: str | None,
    invoke_token: bool,
    prefork: int | None,
) -> None:
    """Serve Fn's v2 API: apps, fns, triggers, /invoke and /t, on hot containers."""
    from fnagent.server.serve import run_serve

    sys.exit(
        run_serve(
            host=host,
            port=port,
            db_url=db_url,
            token=token,
            token_file=token_file,
            invoke_token=invoke_token,
            prefork=prefork,
            environ=os.environ,
        )
    )


_fast_exit = False


def _exit(code: int) -> None:
    """End a finished ``run``. From the console script, skip the interpreter's teardown (tens of
    ms freeing docker-py's and requests' modules, a tenth of a short run): everything is
    done and flushed by now. Called in-process (click's test runner), a plain sys.exit."""
    if _fast_exit:
        exit_now(code)
    sys.exit(code)


def entry() -> None:
    """The console script: usage errors exit 125 (an agent-side failure, as with docker run),
    not click's 2."""
    global _fast_exit
    _fast_exit = True
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
        sys.exit(0)
    except click.Abort:
        click.echo("fnagent: aborted", err=True)
        sys.exit(EXIT_CANCELLED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_AGENT_FAILURE)
