"""The one door to the Docker daemon: docker-py calls run off the event loop.

Every blocking docker-py call goes through ``DockerClient.call``, which runs it in a worker thread
under one ``CapacityLimiter`` and translates errors at the boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import docker

from drivers.docker.errors import map_docker_errors
from drivers.errors import ContainerGoneError, DockerAPIError, DockerUnavailableError

T = TypeVar("T")

DEFAULT_MAX_CONCURRENT_CALLS = 32
# docker-py's HTTP timeout must exceed any stop grace we ask the daemon for, since a cancelled
# thread call still waits for its thread (docs/design.md, Conventions).
DEFAULT_HTTP_TIMEOUT_S = 120.0


class _APIClient(docker.APIClient):  # type: ignore[misc]  # docker-py is untyped
    """docker-py's client, negotiating the API version the way the docker CLI does."""

    def _retrieve_server_version(self) -> str:
        # /_ping names the daemon's API version in a header; /version, which docker-py asks,
        # answers in ~6 ms instead of ~0.3 ms (it gathers kernel and component versions), and
        # every `fnagent run` pays it before its first container.
        try:
            response = self._get(self._url("/_ping", versioned_api=False))
            self._raise_for_status(response)
            return str(response.headers["Api-Version"])
        except KeyError as exc:
            self.close()
            raise docker.errors.DockerException(
                "Invalid response from docker daemon: no Api-Version header on /_ping"
            ) from exc
        except Exception as exc:
            # The constructor fails with this, so nobody else can close the session's socket.
            self.close()
            raise docker.errors.DockerException(
                f"Error while fetching server API version: {exc}"
            ) from exc


class DockerClient:
    """A docker-py ``APIClient`` plus the limiter its calls share."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS,
        http_timeout_s: float = DEFAULT_HTTP_TIMEOUT_S,
    ) -> None:
        self._base_url = base_url
        self._http_timeout_s = http_timeout_s
        self._max = max_concurrent_calls
        self.limiter = anyio.CapacityLimiter(max_concurrent_calls)
        # Health checks get threads of their own: they must see the daemon, not our own queue
        # of calls, and checks of a hung daemon must not pile up.
        self._ping_limiter = anyio.CapacityLimiter(2)
        self._api: docker.APIClient | None = None
        self._connect_lock = anyio.Lock()

    async def api(self) -> docker.APIClient:
        """The docker-py client, connected on first use (its version probe is a request)."""
        if self._api is None:
            async with self._connect_lock:
                if self._api is None:
                    self._api = await self.call_sync("connect to the Docker daemon", self._connect)
        return self._api

    def _connect(self) -> docker.APIClient:
        if self._base_url is None:
            params: dict[str, Any] = docker.utils.kwargs_from_env()
        else:
            params = {"base_url": self._base_url}
        params.setdefault("base_url", docker.constants.DEFAULT_UNIX_SOCKET)
        scheme, _, path = str(params["base_url"]).partition("://")
        if scheme in ("unix", "http+unix") and not os.path.exists(path):
            # Said here: docker-py's failed connect would leave its socket to the collector.
            raise DockerUnavailableError(
                f"cannot connect to the Docker daemon (no socket at {path}); is it running?"
            )
        return _APIClient(
            version="auto",
            timeout=self._http_timeout_s,
            max_pool_size=self._max,
            **params,
        )

    async def call_sync(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread; errors mapped, ``what`` names the step.

        Cancellation abandons the thread (it finishes on its own within the HTTP timeout), so a
        cancelled caller is never held by a slow daemon.
        """
        with map_docker_errors(what):
            return await anyio.to_thread.run_sync(
                partial(fn, *args, **kwargs), limiter=self.limiter, abandon_on_cancel=True
            )

    async def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the docker-py ``APIClient`` method named ``method``."""
        api = await self.api()
        return await self.call_sync(what, getattr(api, method), *args, **kwargs)

    async def remove_container(self, container_id: str, what: str = "remove container") -> None:
        """Force-remove the container and its anonymous volumes. One already gone, or being
        removed by someone else, counts as removed; other errors are raised (mapped)."""
        try:
            await self.call(what, "remove_container", container_id, force=True, v=True)
        except ContainerGoneError:
            pass
        except DockerAPIError as exc:
            if "already in progress" not in exc.message:
                raise

    async def ping(self, timeout_s: float) -> None:
        """One ``GET /_ping`` that gives up after ``timeout_s``, outside the calls' limiter."""
        api = await self.api()

        def ping() -> None:
            response = api.get(f"{api.base_url}/_ping", timeout=timeout_s)
            response.raise_for_status()

        with map_docker_errors("ping the Docker daemon"):
            await anyio.to_thread.run_sync(ping, limiter=self._ping_limiter, abandon_on_cancel=True)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
