"""Several ``fnagent serve`` agents on one PostgreSQL database, for system tests and benches.

``start_agent(k, ...)`` starts agent k: its own directory (``<root>/agent-<k>``: log, socket
dirs), its own port and its own instance id (so each keeps and sweeps its own containers), the
shared secrets key file every agent on one database needs. ``Agents`` starts N of them and
stops them all (a killed one is restarted first, which removes what it left)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import TracebackType

from tests.system.helpers import new_instance_id
from tests.system.server import Server, make_server


def start_agent(k: int, root: Path, env: dict[str, str], db_url: str, *extra_args: str) -> Server:
    """Agent ``k`` on ``db_url``, started and answering. ``env`` is the test's (``cli_env``
    plus settings); the instance id is the test's own plus ``-a<k>`` so the session's leak
    check covers it."""
    home = root / f"agent-{k}"
    home.mkdir(parents=True, exist_ok=True)
    instance = f"{env.get('FNAGENT_INSTANCE_ID') or new_instance_id()}-a{k}"
    server = make_server(
        home,
        {
            "FN_SECRETS_KEY_FILE": str(root / "secrets-key"),
            **env,
            "FNAGENT_INSTANCE_ID": instance,
        },
        *extra_args,
    )
    server.db_url = db_url
    return server.start()


def instance_of(server: Server) -> str:
    return server.env["FNAGENT_INSTANCE_ID"]


class Agents:
    """``count`` agents on ``db_url`` (``with Agents(...) as agents``); leaving restarts any the
    test killed (a restart removes what its killed predecessor left) and stops each with
    SIGTERM (exit status 0 expected)."""

    def __init__(
        self, count: int, root: Path, env: dict[str, str], db_url: str, *extra_args: str
    ) -> None:
        self.count, self.root, self.env, self.db_url = count, root, env, db_url
        self.extra_args = extra_args
        self.servers: list[Server] = []
        self.killed: list[Server] = []

    def __enter__(self) -> list[Server]:
        try:
            for k in range(self.count):
                self.servers.append(
                    start_agent(k, self.root, self.env, self.db_url, *self.extra_args)
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.servers

    def add(self) -> Server:
        """Start one more agent (the next k)."""
        server = start_agent(len(self.servers), self.root, self.env, self.db_url, *self.extra_args)
        self.servers.append(server)
        return server

    def kill(self, server: Server) -> None:
        """SIGKILL ``server``: its calls and containers are left as a crash leaves them."""
        server.stop(signal.SIGKILL)
        self.killed.append(server)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A killed agent's containers and socket mounts are removed by its own restart (same
        # address and instance), as in production.
        for server in self.killed:
            server.start()
        codes = {}
        for server in self.servers:
            if server.process is not None:
                codes[server.port] = (server.stop(), server.log_path)
        if kind is None:
            for code, log in codes.values():
                assert code == 0, log.read_text()[-3000:]
