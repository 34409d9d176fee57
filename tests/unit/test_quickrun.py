"""``fnagent run`` parsed without click (fnagent/cli/quickrun.py): whatever it takes, click
parses to the same values; what it cannot take, it leaves to click."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnagent.cli.main import main
from fnagent.cli.quickrun import parse_run

WORDS = [
    "run",
    "img",
    "sh",
    "-c",
    "echo hi",
    "-m",
    "--memory",
    "--memory=64m",
    "-m64m",
    "-m=64m",
    "64m",
    "--cpus",
    "--cpus=0.5",
    "-t",
    "--timeout",
    "1s",
    "-e",
    "--env",
    "A=1",
    "--env=",
    "-H",
    "--header",
    "X: y",
    "-u",
    "--user",
    "image",
    "--json",
    "--json=1",
    "--format",
    "--format=http-stream",
    "cold",
    "http-stream",
    "bogus",
    "--pull",
    "always",
    "--prefork",
    "2",
    "--standalone",
    "--help",
    "-h",
    "--",
    "-",
    "",
    "--mem",
    "-x",
]


def click_params(args: list[str]) -> dict[str, Any]:
    run = main.commands["run"]
    with run.make_context("run", list(args[1:])) as ctx:
        return dict(ctx.params)


def same_as_click(args: list[str]) -> None:
    quick = parse_run(args)
    if quick is None:
        return
    params = click_params(args)
    assert params.pop("pull") == "missing"
    assert params.pop("prefork") is None
    assert params.pop("standalone") is False
    assert quick == params, args


@pytest.mark.parametrize(
    "args",
    [
        ["run", "img"],
        ["run", "fnagent/busybox", "true"],
        ["run", "-m", "64m", "--cpus", "0.5", "-t", "2s", "img", "sh", "-c", "exit 3"],
        ["run", "--memory=1g", "--timeout=1m", "--json", "img", "--json", "-m", "x"],
        ["run", "-e", "A=1", "--env", "B", "--env=C=3", "img", "--", "x"],
        ["run", "--format", "http-stream", "-H", "X-A: 1", "--header=X-B: 2", "img"],
        ["run", "-u", "image", "--user=0:0", "img", "id"],
        ["run", "--env=", "img"],
    ],
)
def test_common_lines_are_taken_as_click_takes_them(args: list[str]) -> None:
    assert parse_run(args) is not None
    same_as_click(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["apps", "list"],
        ["run"],
        ["run", "--help"],
        ["run", "-h", "img"],
        ["run", "--standalone", "img"],
        ["run", "--prefork", "2", "img"],
        ["run", "--pull", "always", "img"],
        ["run", "-m64m", "img"],
        ["run", "-m=64m", "img"],
        ["run", "--format", "bogus", "img"],
        ["run", "--json=1", "img"],
        ["run", "--", "img"],
        ["run", "-e", "-x", "img"],
        ["run", "-m"],
        ["run", "--mem", "64m", "img"],
        ["run", "", "img"],
    ],
)
def test_anything_else_is_left_to_click(args: list[str]) -> None:
    assert parse_run(args) is None


@given(st.lists(st.sampled_from(WORDS), max_size=8))
def test_whatever_is_taken_click_parses_the_same(words: list[str]) -> None:
    try:
        same_as_click(["run", *words])
    except click.ClickException as exc:
        raise AssertionError(f"taken, but click refuses {words}: {exc}") from exc


def test_a_plain_run_line_does_not_load_click() -> None:
    """A bad timeout fails in run_command before any agent or Docker is asked (exit 125)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fnagent", "run", "-t", "soon", "img"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 125
    assert "invalid duration" in done.stderr.splitlines()[-1]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "fnagent.cli.run" in imported
    assert "click" not in imported
