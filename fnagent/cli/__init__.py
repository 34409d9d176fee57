"""The command line, the top floor: nothing else in fnagent imports it.

- :mod:`fnagent.cli.main`: the ``fnagent`` click group, ``serve`` and the ``run`` flags;
  ``entry`` (the console script) runs a plain ``fnagent run`` line through
  :mod:`fnagent.cli.quickrun` without loading click, anything else through the group;
- :mod:`fnagent.cli.run`: the body of ``fnagent run`` (flags to one run to an exit code);
- :mod:`fnagent.cli.commands`: the API client commands (apps, fns, triggers, invoke, deploy, logs),
  loaded only when one of them is asked for, over :mod:`fnagent.client`;
- :mod:`fnagent.cli.progress` and :mod:`fnagent.cli.stdio`: the pull progress bar and the
  CLI's own standard streams.

Imports stay lean: ``fnagent run``'s start-up is measured against ``docker run``.
"""

from __future__ import annotations

import sys

__all__ = ["entry"]


def entry() -> None:
    """The console script: a plain ``fnagent run`` line runs without loading click
    (:mod:`fnagent.cli.quickrun`); everything else goes through the click group
    (``fnagent.cli.main.main``)."""
    from fnagent.cli.quickrun import run_quickly

    run_quickly(sys.argv[1:])
    from fnagent.cli.main import entry as click_entry

    click_entry()
