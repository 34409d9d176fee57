"""The command line, the top floor: nothing else in fnagent imports it.

- :mod:`fnagent.cli.main`: the ``fnagent`` click group, ``serve``, the ``run`` flags and
  ``entry`` (the console script);
- :mod:`fnagent.cli.run`: the body of ``fnagent run`` (flags to one run to an exit code);
- :mod:`fnagent.cli.commands`: the API client commands (apps, fns, triggers, invoke, deploy, logs),
  loaded only when one of them is asked for, over :mod:`fnagent.client`;
- :mod:`fnagent.cli.progress` and :mod:`fnagent.cli.stdio`: the pull progress bar and the
  CLI's own standard streams.

Imports stay lean: ``fnagent run``'s start-up is measured against ``docker run``.
"""

from fnagent.cli.main import entry, main

__all__ = ["entry", "main"]
