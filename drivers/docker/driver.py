"""The Docker driver: ContainerTasks become containers through docker-py."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from drivers.base import ContainerTask, Cookie, Driver
from drivers.docker.client import DockerClient
from drivers.docker.config import DockerConfig, container_options
from drivers.docker.cookie import DockerCookie
from drivers.docker.pull import ImagePuller, PullProgress
from drivers.errors import ClosedError

logger = logging.getLogger(__name__)

BRIDGE = "default"


class DockerDriver(Driver):
    """Makes ``DockerCookie``s. Leaving the context removes every container still open.

    Subclass and override ``create_cookie`` (calling super) to edit
    ``cookie.container_options`` from ``task.extensions`` before ``prepare_cookie`` creates it.
    """

    def __init__(self, config: DockerConfig, *, client: DockerClient | None = None) -> None:
        self.config = config
        self.client = client or DockerClient(config.docker_host)
        self.puller = ImagePuller(
            self.client,
            policy=config.pull_policy,
            timeout_s=config.pull_timeout_s,
            docker_auth=config.docker_auth,
        )
        self._cookies: set[DockerCookie] = set()
        self._network_use: Counter[str] = Counter({name: 0 for name in config.networks})
        self._closed = False

    def __repr__(self) -> str:
        return f"<DockerDriver instance={self.config.instance_id} open={len(self._cookies)}>"

    def _pick_network(self, task: ContainerTask) -> str:
        if task.network_disabled or not self._network_use:
            return BRIDGE
        # least-used first; ties go to the order the networks were configured in
        name = min(self._network_use, key=lambda n: self._network_use[n])
        return name

    async def create_cookie(self, task: ContainerTask) -> DockerCookie:
        if self._closed:
            raise ClosedError("the Docker driver is closed")
        network = self._pick_network(task)
        cookie = DockerCookie(
            task,
            container_options(task, self.config, network),
            self.client,
            stats_interval_s=self.config.stats_interval_s,
            on_close=self._forget,
        )
        if network in self._network_use:
            self._network_use[network] += 1
        self._cookies.add(cookie)
        return cookie

    def _forget(self, cookie: DockerCookie) -> None:
        self._cookies.discard(cookie)
        network = cookie.container_options.get("HostConfig", {}).get("NetworkMode")
        if network in self._network_use:
            self._network_use[network] -= 1

    async def prepare_cookie(self, cookie: Cookie, *, progress: PullProgress | None = None) -> None:
        if not isinstance(cookie, DockerCookie):
            raise TypeError(f"not a Docker cookie: {cookie!r}")
        await self.puller.ensure(cookie.container_options["Image"], progress=progress)
        await cookie.create()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for cookie in list(self._cookies):
            await cookie.aclose()
        self.client.close()

    async def containers(self, **filters: Any) -> list[dict[str, Any]]:
        """This driver instance's containers as ``docker ps -a`` lists them."""
        labels = [f"fnagent.instance={self.config.instance_id}"]
        result: list[dict[str, Any]] = await self.client.call(
            "list containers", "containers", all=True, filters={"label": labels, **filters}
        )
        return result
