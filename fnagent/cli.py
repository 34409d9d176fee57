"""The ``fnagent`` command. Imports stay lean here: docker-py, anyio and the server load inside
the commands that need them, so ``fnagent --help`` and the start of ``fnagent run`` stay fast."""

from __future__ import annotations

import sys

import click

EXIT_AGENT_FAILURE = 125
EXIT_CANCELLED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fnagent", prog_name="fnagent")
def main() -> None:
    """Run container images as functions on a Docker host."""


@main.command(context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--memory", "-m", default="128m", show_default=True,
              help="Memory limit (no swap): 64m, 1g, ...")
@click.option("--cpus", default=None, help="CPU limit: 0.5, 2, or milli-CPUs like 500m.")
@click.option("--timeout", "-t", default="30s", show_default=True,
              help="Kill the function after this long: 30, 1.5s, 250ms, 2m.")
@click.option("--env", "-e", multiple=True, help="NAME=value, or NAME to pass the host's value.")
@click.option("--format", "fmt", type=click.Choice(["cold", "http-stream"]), default="cold",
              show_default=True, help="cold: stdin/stdout; http-stream: one POST /call.")
@click.option("--header", "-H", multiple=True,
              help="http-stream only: a request header 'Name: value'.")
@click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
              show_default=True, help="When to pull the image.")
@click.option("--user", "-u", default="1000:1000", show_default=True,
              help="uid:gid to run as; 'image' keeps the image's own user.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result, timings and resource samples as JSON.")
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
) -> None:
    """Run IMAGE once as a function: stdin in, stdout out, like `docker run --rm -i`.

    Exit code: the function's exit code; 124 when it timed out; 125 when fnagent itself
    failed (bad flag, image not found, Docker unreachable); 1 when an http-stream function
    answered with a non-2xx status.
    """
    from fnagent.runcmd import run_command

    sys.exit(run_command(
        image=image, command=list(command) or None, memory=memory, cpus=cpus, timeout=timeout,
        env=env, fmt=fmt, headers=header, pull=pull, user=user, as_json=as_json,
    ))


def entry() -> None:
    """The console script: usage errors exit 125 (an agent-side failure, as with docker run),
    not click's 2."""
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
