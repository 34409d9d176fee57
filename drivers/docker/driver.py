"""The Docker driver: ContainerTasks become containers through docker-py."""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import TaskGroup

from drivers.backoff import backoff_s
from drivers.base import ContainerTask, Cookie, Driver, check_secret_names
from drivers.docker.client import DEFAULT_MAX_CONCURRENT_CALLS, DockerClient
from drivers.docker.config import (
    DockerConfig,
    PullPolicy,
    container_options,
    direct_output,
    secrets_root,
)
from drivers.docker.cookie import DockerCookie
from drivers.docker.freezer import thaw_leftover
from drivers.docker.pipes import OutputPipes, check_static_shell
from drivers.docker.pull import ImagePuller, PullProgress
from drivers.docker.secretfiles import SecretFiles, remove_all, remove_root_if_empty
from drivers.errors import (
    ClosedError,
    DockerUnavailableError,
    FnAgentError,
    ImageNotFoundError,
    PoolEmpty,
)

if TYPE_CHECKING:
    from drivers.docker.pool import PreforkPool

logger = logging.getLogger(__name__)

BRIDGE = "default"
PING_TIMEOUT_S = 2.0
SLOT_DIED = (
    "the prefork slot whose network namespace the container joined died, taking the "
    "container's network with it"
)


class DockerDriver(Driver):
    """Makes ``DockerCookie``s. Leaving the context removes every container still open.

    With ``config.pool`` set, entering the context starts the prefork pool in the driver's task
    group (without waiting for it to fill) and leaving removes its slots; a function container
    then joins a free slot's network namespace, or falls back to ``config.networks`` / the
    bridge when none is free. The pool's task group opens on entering, so enter and leave
    from the same task, nested like any task group (``async with``).

    Subclass and override ``create_cookie`` (calling super) to edit
    ``cookie.container_options`` from ``task.extensions`` before ``prepare_cookie`` creates it.
    """

    @property
    def iofs_mount(self) -> str:
        return self.config.iofs_mount

    def __init__(self, config: DockerConfig, *, client: DockerClient | None = None) -> None:
        self.config = config
        if client is None:
            # Each slot's nanny holds a worker thread in `wait` for the slot's whole life; give
            # those their own share of the limiter so they never starve the calls.
            extra = config.pool.max_size if config.pool is not None else 0
            client = DockerClient(
                config.docker_host, max_concurrent_calls=DEFAULT_MAX_CONCURRENT_CALLS + extra
            )
        self.client = client
        self.puller = ImagePuller(
            self.client,
            policy=config.pull_policy,
            timeout_s=config.pull_timeout_s,
            docker_auth=config.docker_auth,
        )
        self.pool: PreforkPool | None = None
        if config.pool is not None:
            # Imported here: a one-off `fnagent run` without a pool skips aiolimiter's import.
            from drivers.docker.pool import PreforkPool

            self.pool = PreforkPool(self.client, self.puller, config, config.pool)
            self.pool.on_lent_slot_died = self._slot_died
        self._cookies: set[DockerCookie] = set()
        self._slots: dict[DockerCookie, str] = {}
        self._network_use: Counter[str] = Counter({name: 0 for name in config.networks})
        self._left_behind: set[str] = set()
        """Containers whose removal failed because the daemon was down; retried."""
        self._left_behind_added = anyio.Event()
        self._closed = False
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None

    def __repr__(self) -> str:
        pool = f" pool={self.pool!r}" if self.pool is not None else ""
        return f"<DockerDriver instance={self.config.instance_id} open={len(self._cookies)}{pool}>"

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClosedError("the Docker driver is closed")
        if self._stack is None:
            if self.config.output_shell is not None:
                check_static_shell(self.config.output_shell)
            stack = AsyncExitStack()
            tg = await stack.enter_async_context(anyio.create_task_group())
            try:
                if self.config.function_network is not None:
                    from drivers.docker.network import ensure_function_network

                    await ensure_function_network(self.client, self.config.function_network)
                tg.start_soon(self._remove_left_behind)
                if self.pool is not None:
                    await tg.start(self.pool.run)
            except BaseException:
                tg.cancel_scope.cancel()  # the sweeper would keep the task group open
                await stack.aclose()
                self.client.close()
                raise
            self._stack, self._tg = stack, tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(exc_type, exc, tb)

    def _pick_network(self, task: ContainerTask) -> str:
        if task.network_disabled or not self._network_use:
            return BRIDGE
        # least-used first; ties go to the order the networks were configured in
        name = min(self._network_use, key=lambda n: self._network_use[n])
        return name

    async def create_cookie(self, task: ContainerTask) -> DockerCookie:
        if self._closed:
            raise ClosedError("the Docker driver is closed")
        check_secret_names(task.secrets)
        secret_files = SecretFiles.under(secrets_root(self.config)) if task.secrets else None
        slot: str | None = None
        if self.pool is not None and not task.network_disabled:
            try:
                slot = self.pool.alloc(grow=not task.background)
            except PoolEmpty:
                logger.debug("prefork pool empty; falling back", extra={"task": task.id})
        network = f"container:{slot}" if slot is not None else self._pick_network(task)
        secrets_dir = secret_files.path if secret_files is not None else None
        cookie = DockerCookie(
            task,
            container_options(task, self.config, network, secrets_dir),
            self.client,
            stats_interval_s=self.config.stats_interval_s,
            on_close=self._forget,
            freezer=self.config.freezer,
            secret_files=secret_files,
            pipes=OutputPipes(task.output_dir)
            if task.output_dir is not None and direct_output(task, self.config)
            else None,
        )
        if network in self._network_use:
            self._network_use[network] += 1
        self._cookies.add(cookie)
        if slot is not None:
            self._slots[cookie] = slot
            cookie.leave_namespace = self._leave_slot
        return cookie

    def _leave_slot(self, cookie: DockerCookie) -> str:
        """The cookie's slot died under it: free the slot, pick the fallback network."""
        slot = self._slots.pop(cookie, None)
        if slot is not None and self.pool is not None:
            self.pool.free(slot)
        network = self._pick_network(cookie.task)
        if network in self._network_use:
            self._network_use[network] += 1
        return network

    def _slot_died(self, slot_id: str) -> None:
        """A lent slot died: Docker tore its network down, so the containers that joined it
        cannot use theirs. They are killed (their calls fail with ``SLOT_DIED``) and
        replaced by whoever runs them; the pool replaces the slot."""
        for cookie, joined in list(self._slots.items()):
            if joined == slot_id and self._tg is not None:
                logger.warning(
                    "prefork slot died under a container; killing it",
                    extra={"task": cookie.task.id, "slot": slot_id},
                )
                self._tg.start_soon(cookie.lose, SLOT_DIED)

    def _forget(self, cookie: DockerCookie) -> None:
        if cookie.left_behind is not None:
            self._left_behind.add(cookie.left_behind)
            self._left_behind_added.set()
        self._cookies.discard(cookie)
        slot = self._slots.pop(cookie, None)
        if slot is not None and self.pool is not None:
            self.pool.free(slot)
        network = cookie.container_options.get("HostConfig", {}).get("NetworkMode")
        if network in self._network_use:
            self._network_use[network] -= 1

    async def prepare_cookie(self, cookie: Cookie, *, progress: PullProgress | None = None) -> None:
        """Create the container, ensuring its image by the pull policy first.

        Unless the policy is ``always``, the create goes first and the image is looked at only
        when the daemon answers "No such image" (as the docker CLI does): a present image, the
        usual case, costs no inspect round trip on the way to a start.
        """
        if not isinstance(cookie, DockerCookie):
            raise TypeError(f"not a Docker cookie: {cookie!r}")
        cookie.make_secret_files()
        image = cookie.container_options["Image"]
        if cookie.pipes is not None:
            # The wrapper runs the image's own command: it must be known before the create.
            cookie.wrap_output(await self._image_config(image, progress))
            await cookie.create()
            return
        if self.puller.policy is not PullPolicy.ALWAYS:
            try:
                await cookie.create()
                return
            except ImageNotFoundError:
                pass  # ensured below: pulled, or refused with the policy's own message
        await self.puller.ensure(image, progress=progress)
        await cookie.create()

    async def _image_config(self, image: str, progress: PullProgress | None) -> dict[str, Any]:
        """The image's config (Entrypoint, Cmd...), ensured by the pull policy first; as in
        ``prepare_cookie``, a present image is looked at without a pull unless the policy is
        ``always``."""
        if self.puller.policy is not PullPolicy.ALWAYS:
            try:
                return await self._inspect_config(image)
            except ImageNotFoundError:
                pass
        await self.puller.ensure(image, progress=progress)
        return await self._inspect_config(image)

    async def _inspect_config(self, image: str) -> dict[str, Any]:
        inspected = await self.client.call("inspect image", "inspect_image", image)
        config: dict[str, Any] = inspected.get("Config") or {}
        return config

    async def ensure_image(self, image: str) -> None:
        await self.puller.ensure(image)

    async def ping(self) -> None:
        # The bound also covers connecting, which a first ping may have to do.
        with anyio.move_on_after(PING_TIMEOUT_S):
            await self.client.ping(PING_TIMEOUT_S)
            return
        raise DockerUnavailableError(
            f"the Docker daemon did not answer a ping within {PING_TIMEOUT_S:g} s"
        )

    async def _remove_left_behind(self) -> None:
        """Remove the containers ``aclose`` could not, once the daemon answers again (after a
        restart they are stopped, not gone), backing off while it does not."""
        failures = 0
        while True:
            if not self._left_behind:
                await self._left_behind_added.wait()
                self._left_behind_added = anyio.Event()
                continue
            try:
                for container_id in list(self._left_behind):
                    await self._remove(container_id)
                    self._left_behind.discard(container_id)
                failures = 0
            except DockerUnavailableError:
                failures += 1
                await anyio.sleep(backoff_s(failures))

    async def remove_leftovers(self) -> int:
        """Remove the containers an earlier process with this instance label left behind
        (thawing any it left frozen first), and their secret files; returns how many
        containers were removed."""
        if not self._cookies:
            remove_all(secrets_root(self.config))
        removed = 0
        for container in await self.containers():
            await thaw_leftover(self.client, container["Id"])
            try:
                await self.client.remove_container(container["Id"], "remove a leftover container")
                removed += 1
            except FnAgentError as exc:
                logger.warning(
                    "could not remove a leftover container",
                    extra={"container": container["Id"], "error": exc.message},
                )
        return removed

    async def _remove(self, container_id: str) -> None:
        await thaw_leftover(self.client, container_id)
        try:
            await self.client.remove_container(container_id)
        except DockerUnavailableError:
            raise
        except FnAgentError as exc:
            logger.warning(
                "could not remove a container left behind",
                extra={"container": container_id, "error": exc.message},
            )
        else:
            logger.info("removed a container left behind", extra={"container": container_id})

    async def aclose(self) -> None:
        await self._shutdown(None, None, None)

    async def _shutdown(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for cookie in list(self._cookies):
                await cookie.aclose()
            if self.pool is not None:
                await self.pool.aclose()  # bounded by the pool's close_timeout_s
            if self._left_behind:
                with anyio.move_on_after(PING_TIMEOUT_S, shield=True):
                    for container_id in list(self._left_behind):
                        await self._remove(container_id)
            remove_root_if_empty(secrets_root(self.config))
        finally:
            if self._stack is not None and self._tg is not None:
                self._tg.cancel_scope.cancel()
                stack, self._stack, self._tg = self._stack, None, None
                # The task group sees a cancellation of the body, which may be its own (a crash
                # of the pool's tasks): they then come out as one error. Any other error of the
                # body propagates as it is, not wrapped in an exception group.
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    await stack.__aexit__(exc_type, exc, tb)
                else:
                    await stack.aclose()
            self.client.close()

    async def containers(self, **filters: Any) -> list[dict[str, Any]]:
        """This driver instance's containers as ``docker ps -a`` lists them."""
        labels = [f"fnagent.instance={self.config.instance_id}"]
        result: list[dict[str, Any]] = await self.client.call(
            "list containers", "containers", all=True, filters={"label": labels, **filters}
        )
        return result
