"""``fnagent run`` without click: the common command lines, parsed by hand.

click's import costs about as much as the rest of a run handed to an agent spends in this
process, so ``entry`` tries this first. It takes only the plain forms of ``run``'s flags
(``--memory 64m``, ``--memory=64m``, ``-m 64m``, the ``--json`` flag, ``--format`` with a
valid choice) and gives up (None) on anything else: help, ``--prefork``, ``--standalone``,
``--pull``, joined short options, ``--``, a value that looks like an option, an unknown
flag. click then parses the line as always, so every message and exit code stays its own.
Whatever this accepts, click parses to the same values (``tests/unit/test_quickrun.py``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# run's options that take one string value, by every name click knows them by.
_VALUES = {
    "--memory": "memory",
    "-m": "memory",
    "--cpus": "cpus",
    "--timeout": "timeout",
    "-t": "timeout",
    "--env": "env",
    "-e": "env",
    "--header": "header",
    "-H": "header",
    "--user": "user",
    "-u": "user",
    "--format": "fmt",
}
_MULTIPLE = frozenset(("env", "header"))
_FORMATS = frozenset(("cold", "http-stream"))


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """``run``'s parameters (click's names and defaults) from the words after ``fnagent``,
    or None when click must parse them."""
    if not args or args[0] != "run":
        return None
    params: dict[str, Any] = {
        "memory": "128m",
        "cpus": None,
        "timeout": "30s",
        "env": [],
        "fmt": "cold",
        "header": [],
        "user": "1000:1000",
        "as_json": False,
    }
    words = iter(args[1:])
    for word in words:
        if not word.startswith("-"):
            if not word:
                return None
            if params["fmt"] not in _FORMATS:
                return None
            params["env"], params["header"] = tuple(params["env"]), tuple(params["header"])
            return {**params, "image": word, "command": tuple(words)}
        if word == "--json":
            params["as_json"] = True
            continue
        name, equals, value = word.partition("=")
        if not name.startswith("--"):
            name, equals, value = word, "", ""  # -m64m and -m=64m: click's own
        key = _VALUES.get(name)
        if key is None:
            return None
        if not equals:
            value = next(words, "")
            if not value or value.startswith("-"):
                return None
        if key in _MULTIPLE:
            params[key].append(value)
        else:
            params[key] = value
    return None  # no image: click says so


def run_quickly(args: list[str]) -> None:
    """Run ``fnagent run`` as parsed by ``parse_run`` and end the process with its exit code;
    return (having done nothing) when click must parse ``args``."""
    params = parse_run(args)
    if params is None:
        return
    from fnagent.cli.run import run_command

    exit_now(
        run_command(
            image=params["image"],
            command=list(params["command"]) or None,
            memory=params["memory"],
            cpus=params["cpus"],
            timeout=params["timeout"],
            env=params["env"],
            fmt=params["fmt"],
            headers=params["header"],
            pull="missing",
            user=params["user"],
            as_json=params["as_json"],
        )
    )


def exit_now(code: int) -> None:
    """End the process with ``code`` without the interpreter's teardown (tens of ms freeing
    modules, a tenth of a short run): everything is done by now but flushing the output."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 120  # what the interpreter's own teardown exits with here
    os._exit(code)
