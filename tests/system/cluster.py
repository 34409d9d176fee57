"""Several ``fnagent serve`` agents on one PostgreSQL database behind nginx, for system tests.

``running_cluster`` starts N agents on a database (tests/system/agents.py's ``start_agent``)
and nginx in front (scripts/cluster.py's ``Nginx``: deploy/nginx.conf with
the agents and a loopback port, in the foreground with a temporary prefix, never the
system's nginx), and stops everything at the end.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from fnagent.agent.agent import FN_LABEL
from scripts.cluster import Nginx
from tests.helpers import wait_for
from tests.system.agents import instance_of, start_agent
from tests.system.helpers import free_port, function_containers, instance_containers
from tests.system.server import Server


@dataclass
class Cluster:
    agents: list[Server]
    nginx: Nginx
    front: Server
    """The front door, for its ``request``: a Server whose port is nginx's (no process)."""
    env: dict[str, str]

    def serving_agents(self, api: docker.APIClient, fn_id: str) -> list[int]:
        """The indexes of the agents that have containers of ``fn_id``."""
        return [
            k
            for k in range(len(self.agents))
            if any(
                c["Labels"].get(FN_LABEL) == fn_id
                for c in function_containers(api, instance_of(self.agents[k]))
            )
        ]


@contextmanager
def running_cluster(
    root: Path, env: dict[str, str], db_url: str, count: int = 3, **settings: str
) -> Iterator[Cluster]:
    """``count`` agents on ``db_url`` (no prefork pools, FN_PUBLIC_LB_URL naming the front
    door, ``settings`` added to their environment) and nginx in front on 127.0.0.1. At the
    end nginx stops, then each agent still running (it must exit 0)."""
    port = free_port()
    env = {
        **env,
        "FN_SECRETS_KEY_FILE": str(root / "secrets-key"),
        "FN_PUBLIC_LB_URL": f"http://127.0.0.1:{port}",
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "0",
        **settings,
    }
    agents: list[Server] = []
    nginx: Nginx | None = None
    try:
        # The first agent migrates the schema and writes the secrets key; then the others.
        for k in range(count):
            agents.append(start_agent(k, root, env, db_url))
        nginx = Nginx(root / "nginx", [f"127.0.0.1:{a.port}" for a in agents], f"127.0.0.1:{port}")
        nginx.start()
        front = Server(port=port, db_path=root / "none", env={}, log_path=nginx.log)

        def front_answers() -> bool:
            assert nginx is not None and nginx.process is not None
            assert nginx.process.poll() is None, nginx.log.read_text()[-2000:]
            try:
                return front.request("GET", "/version", timeout=5).status == 200
            except OSError:
                return False

        wait_for(front_answers, f"nginx on port {port}", timeout_s=30)
        yield Cluster(agents=agents, nginx=nginx, front=front, env=env)
    finally:
        if nginx is not None:
            nginx.stop()
        for agent in agents:
            if agent.process is not None:
                assert agent.stop() == 0, agent.log_path.read_text()[-3000:]


def kill_agent(cluster: Cluster, k: int) -> None:
    """SIGKILL agent k. What it leaves (containers, socket dir mounts) its restart removes:
    ``restart_agent`` before the test ends."""
    cluster.agents[k].stop(signal.SIGKILL)


def restart_agent(cluster: Cluster, k: int, api: docker.APIClient) -> None:
    """Start the killed agent k again on its address; wait until it removed what its
    predecessor left (it runs no prefork pool: none of its containers is left)."""
    agent = cluster.agents[k].start()
    instance = instance_of(agent)
    wait_for(lambda: not instance_containers(api, instance), f"{instance}'s orphans removed")
    iofs = agent.env["FN_IOFS_PATH"]
    wait_for(
        lambda: iofs not in Path("/proc/mounts").read_text(),
        f"the socket dirs under {iofs} unmounted",
    )


def answered(cluster: Cluster, fn: dict[str, Any], body: dict[str, Any]) -> tuple[int, bytes]:
    """(status, body) of one invoke through the front door."""
    answer = cluster.front.request("POST", f"/invoke/{fn['id']}", body)
    return answer.status, answer.body
