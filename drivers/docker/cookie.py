"""One Docker container's life: create, attach, start, wait, freeze/thaw, remove.

Freezing goes through the container's cgroup freezer (drivers/docker/freezer.py) unless the
driver's ``freezer`` setting says ``api``, or the cgroup cannot be found or written: then through
the Engine API (``docker pause``). A container frozen through its cgroup is one Docker believes
running (``State.Paused`` false), so the cookie owns that state: ``kill`` and ``aclose`` thaw it
first, and a closed cookie never leaves its container frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from drivers.base import ContainerTask, Cookie, RunResult, RunStatus, WaitResult
from drivers.docker.cpuwait import CpuWait, find_cpu_wait
from drivers.docker.freezer import CgroupFreezer, FreezerMode, locate
from drivers.docker.pipes import OutputPipes, command_of, wrap_command
from drivers.docker.streams import (
    AttachedStream,
    copy_output,
    feed_input,
    take_socket,
    wrap_socket,
)
from drivers.errors import (
    ClosedError,
    ContainerGoneError,
    DockerUnavailableError,
    FnAgentError,
    OutputPipesError,
)
from drivers.results import cancelled, exit_result, lost, out_of_memory, timed_out
from drivers.stats import Stat

if TYPE_CHECKING:
    from drivers.docker.client import DockerClient
    from drivers.docker.secretfiles import SecretFiles

logger = logging.getLogger(__name__)

# Removing a container must finish even when the caller is being cancelled, but a daemon that
# hangs must not hold the caller forever.
REMOVE_GRACE_S = 30.0
KILL_GRACE_S = 10.0


class DockerCookie(Cookie):
    """A container for one task. ``container_options`` is the Engine API create body."""

    def __init__(
        self,
        task: ContainerTask,
        options: dict[str, Any],
        client: DockerClient,
        *,
        stats_interval_s: float,
        on_close: Callable[[DockerCookie], None],
        freezer: FreezerMode = FreezerMode.CGROUP,
        secret_files: SecretFiles | None = None,
        pipes: OutputPipes | None = None,
    ) -> None:
        self.task = task
        self.pipes = pipes
        """The FIFOs the container's output is written to (drivers/docker/pipes.py); None:
        it is attached. Made at the first start, closed with the container."""
        self.secret_files = secret_files
        """The host side of the task's /run/secrets, made by ``make_secret_files`` and
        removed with the container."""
        self.container_options = options
        self._client = client
        self._stats_interval_s = stats_interval_s
        self._on_close = on_close
        self._freezer_mode = freezer
        self._freezer: CgroupFreezer | None = None
        self._frozen_by: FreezerMode | None = None
        self._cpu_wait: CpuWait | None = None
        self._id: str | None = None
        self._closed = False
        self.leave_namespace: Callable[[DockerCookie], str] | None = None
        """Set by the driver for a container joining a pool slot: frees the slot and returns
        the network to use instead, should the slot be found dead at start."""
        self._stream: AttachedStream | None = None
        self._started = False
        self.lost_reason: str | None = None
        """Why the driver killed the container (see ``lose``); its run then ends KILLED."""
        self.left_behind: str | None = None
        """The container's id when ``aclose`` could not remove it (daemon down): the driver
        retries the removal."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("created" if self._id else "new")
        return f"<DockerCookie task={self.task.id} container={(self._id or '-')[:12]} {state}>"

    @property
    def container_id(self) -> str | None:
        return self._id

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"container of task {self.task.id} was already closed")

    def _require_id(self) -> str:
        self._check_open()
        if self._id is None:
            raise ClosedError(f"container of task {self.task.id} was not prepared")
        return self._id

    def make_secret_files(self) -> None:
        """Write the task's secret files (once, before the container is created)."""
        self._check_open()
        files = self.secret_files
        if files is not None and not files.mounted:
            files.make(self.task.secrets, self.task.user)

    def wrap_output(self, image_config: dict[str, Any]) -> None:
        """Make the container's command write its output into ``pipes``: the command Docker
        would run (the create options' Entrypoint and Cmd over the image's ``image_config``)
        becomes the wrapper's arguments. A container with no command at all is left as it
        is: Docker refuses it with its own message."""
        if self.pipes is None:
            return
        argv = command_of(self.container_options, image_config)
        if argv:
            entrypoint, cmd = wrap_command(argv)
            self.container_options["Entrypoint"] = entrypoint
            self.container_options["Cmd"] = cmd

    async def create(self) -> None:
        """Create the container from ``container_options`` (called by prepare_cookie)."""
        self._check_open()
        if self._id is not None:
            return
        created = await self._client.call(
            f"create container for {self.task.image}",
            "create_container_from_config",
            self.container_options,
        )
        self._id = created["Id"]

    async def run(self) -> WaitResult:
        try:
            return await self._attach_and_start()
        except FnAgentError as exc:
            network = self.container_options.get("HostConfig", {}).get("NetworkMode", "")
            if self.leave_namespace is None or not network.startswith("container:"):
                raise
            # The pool slot whose namespace this container joined died after it was lent:
            # Docker accepts the create and refuses only the start. Re-create the container
            # on the driver's fallback network, once.
            logger.info(
                "joined namespace gone; re-creating on another network",
                extra={"task": self.task.id, "error": exc.message},
            )
            fallback, self.leave_namespace = self.leave_namespace, None
            await self._discard_container()
            self.container_options["HostConfig"]["NetworkMode"] = fallback(self)
            await self.create()
            return await self._attach_and_start()

    async def _discard_container(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None
        if self._id is not None:
            container, self._id = self._id, None
            await self._client.remove_container(container)

    async def _attach_and_start(self) -> WaitResult:
        cid = self._require_id()
        if self.pipes is not None:
            try:
                self.pipes.make()
            except OSError as exc:
                raise OutputPipesError(
                    f"cannot make the container's output pipes in {self.pipes.directory}: {exc}"
                ) from None
        attached = await self._client.call(
            "attach to container",
            "attach_socket",
            cid,
            params={
                "stdin": int(self.task.input is not None),
                "stdout": 1,
                "stderr": 1,
                "stream": 1,
            },
        )
        self._stream = await wrap_socket(take_socket(attached))
        await self._client.call("start container", "start", cid)
        self._started = True
        return DockerWaitResult(self, self._stream)

    @property
    def frozen_by(self) -> FreezerMode | None:
        """How the container is frozen now (None: it is not)."""
        return self._frozen_by

    async def freeze(self) -> None:
        """Freeze through the cgroup freezer, or the Engine API when the setting says so or
        the cgroup cannot be found or written (that container then stays on the API)."""
        cid = self._require_id()
        if self._freezer_mode is FreezerMode.CGROUP:
            freezer = await self._cgroup_freezer(cid)
            if freezer is not None:
                try:
                    await freezer.freeze()
                    self._frozen_by = FreezerMode.CGROUP
                    return
                except OSError as exc:
                    self._use_api(f"cannot write the cgroup freezer: {exc}")
        await self._client.call("pause container", "pause", cid)
        self._frozen_by = FreezerMode.API

    async def unfreeze(self) -> None:
        """Thaw the way the container was frozen."""
        cid = self._require_id()
        if self._frozen_by is FreezerMode.CGROUP and self._freezer is not None:
            try:
                await self._freezer.thaw()
            except OSError as exc:
                raise ContainerGoneError(f"cannot thaw the container: {exc}") from exc
        else:
            await self._client.call("unpause container", "unpause", cid)
        self._frozen_by = None

    async def _cgroup_freezer(self, cid: str) -> CgroupFreezer | None:
        if self._freezer is None:
            self._freezer = await locate(self._client, cid)
            if self._freezer is None:
                self._use_api("no cgroup freezer found for the container")
        return self._freezer

    def _use_api(self, why: str) -> None:
        logger.info("freezing through the Engine API", extra={"task": self.task.id, "reason": why})
        self._freezer_mode, self._freezer = FreezerMode.API, None

    async def _thaw_cgroup(self) -> None:
        """Thaw a container frozen through its cgroup before it is killed or removed: Docker
        does not know it is frozen, and a frozen v1 cgroup holds SIGKILLed tasks. Quiet: the
        kill or removal that follows reports what is wrong."""
        if self._frozen_by is not FreezerMode.CGROUP or self._freezer is None:
            return
        try:
            await self._freezer.thaw()
            self._frozen_by = None
        except (OSError, FnAgentError) as exc:
            logger.debug("thaw before removal failed", extra={"task": self.task.id, "error": exc})

    async def kill(self) -> None:
        """SIGKILL the container (thawed first); a container that is already gone is fine."""
        cid = self._require_id()
        await self._thaw_cgroup()
        with anyio.move_on_after(KILL_GRACE_S, shield=True):
            try:
                await self._client.call("kill container", "kill", cid)
            except FnAgentError as exc:
                logger.debug("kill failed", extra={"container": cid, "error": exc.message})

    async def lose(self, reason: str) -> None:
        """Kill the started container because something it depends on died; its run ends
        KILLED with ``reason`` as the error."""
        if not self._started or self._closed:
            return  # not started yet: ``run`` falls back to another network itself
        self.lost_reason = reason
        await self.kill()

    async def cpu_wait_s(self) -> float | None:
        """From the container's cgroup and its tasks' scheduler counts (drivers.docker.cpuwait);
        the cgroup is found once, with one inspect for the init pid."""
        cid = self._require_id()
        if self._cpu_wait is None:
            inspected = await self.inspect()
            pid = int(inspected.get("State", {}).get("Pid") or 0)
            self._cpu_wait = find_cpu_wait(pid, cid)
            if self._cpu_wait is None:
                return None
        return self._cpu_wait.seconds()

    async def inspect(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.call(
            "inspect container", "inspect_container", self._require_id()
        )
        return result

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with anyio.move_on_after(REMOVE_GRACE_S, shield=True):
                if self._stream is not None:
                    await self._stream.aclose()
                if self._id is not None:
                    await self._thaw_cgroup()
                    try:
                        await self._client.remove_container(self._id)
                    except DockerUnavailableError as exc:
                        self.left_behind = self._id
                        logger.warning(
                            "could not remove container; the driver retries",
                            extra={"container": self._id, "error": exc.message},
                        )
                    except FnAgentError as exc:
                        # Logged: the labels let a later sweep find it.
                        logger.warning(
                            "could not remove container",
                            extra={"container": self._id, "error": exc.message},
                        )
        finally:
            if self.pipes is not None:
                self.pipes.close()
            if self.secret_files is not None:
                self.secret_files.remove()
            self._on_close(self)
            self.task.close()

    async def sample(self) -> Stat | None:
        """One Engine API stats reading (one-shot, so it does not wait for a second one)."""
        raw = await self._client.call(
            "read container stats", "stats", self._require_id(), stream=False, one_shot=True
        )
        return stat_from_docker(raw)

    async def sample_stats(self) -> None:
        """Send a resource sample to ``task.write_stat`` every interval until cancelled."""
        write_stat = self.task.write_stat
        if write_stat is None:
            return
        while True:
            try:
                stat = await self.sample()
            except FnAgentError:
                return
            if stat is not None:
                write_stat(stat)
            await anyio.sleep(self._stats_interval_s)


class DockerWaitResult(WaitResult):
    """Copies the container's output, feeds its input, and reports how it ended.

    ``result`` is set once the run ended, cancelled runs included (wait then re-raises the
    cancellation after killing the container).
    """

    def __init__(self, cookie: DockerCookie, stream: AttachedStream) -> None:
        self._cookie = cookie
        self._stream = stream
        self.result: RunResult | None = None

    async def wait(self) -> RunResult:
        if self.result is not None:
            return self.result
        task = self._cookie.task
        timeout = task.timeout_s
        pipes = self._cookie.pipes
        try:
            with anyio.fail_after(timeout) if timeout else nullcontext():
                async with anyio.create_task_group() as tg:
                    if task.input is not None:
                        tg.start_soon(feed_input, self._stream, task.input)
                    if task.write_stat is not None:
                        tg.start_soon(self._cookie.sample_stats)
                    if pipes is not None:
                        tg.start_soon(pipes.copy, task.logger)
                    await copy_output(self._stream, task.logger)
                    tg.cancel_scope.cancel()
                self.result = await self._exit_result()
                if pipes is not None:
                    # The container has stopped (Docker's wait returned): every process of
                    # it, every writer of the FIFOs, is gone. The attach connection may end
                    # a little earlier, as the init process closes its files.
                    await pipes.drain(task.logger)
        except TimeoutError:
            await self._cookie.kill()
            self.result = timed_out(timeout)
        except anyio.get_cancelled_exc_class():
            await self._cookie.kill()
            self.result = cancelled()
            raise
        except FnAgentError as exc:
            self.result = RunResult(status=RunStatus.ERROR, error=exc)
        return self.result

    async def _exit_result(self) -> RunResult:
        cid = self._cookie._require_id()
        waited = await self._cookie._client.call("wait for container", "wait", cid)
        code = int(waited.get("StatusCode", -1))
        if self._cookie.lost_reason is not None:
            return lost(self._cookie.lost_reason, code)
        if code == 0:
            return exit_result(0)
        state = (await self._cookie.inspect()).get("State", {})
        if state.get("OOMKilled"):
            return out_of_memory(self._cookie.task.memory_bytes, code)
        return exit_result(code)


def stat_from_docker(raw: dict[str, Any]) -> Stat:
    """A Stat from one Engine API stats document (cgroup v1 or v2 layout)."""
    cpu = raw.get("cpu_stats", {}).get("cpu_usage", {})
    memory = raw.get("memory_stats", {})
    networks = raw.get("networks", {}) or {}
    blkio = raw.get("blkio_stats", {}).get("io_service_bytes_recursive") or []
    metrics = {
        "cpu_user": int(cpu.get("usage_in_usermode", 0)),
        "cpu_kernel": int(cpu.get("usage_in_kernelmode", 0)),
        "cpu_total": int(cpu.get("total_usage", 0)),
        "mem_usage": int(memory.get("usage", 0)),
        "mem_limit": int(memory.get("limit", 0)),
        "net_rx": sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        "net_tx": sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
        "disk_read": _blkio_total(blkio, "read"),
        "disk_write": _blkio_total(blkio, "write"),
    }
    return Stat(timestamp=datetime.now(UTC), metrics=metrics)


def _blkio_total(entries: list[dict[str, Any]], op: str) -> int:
    return sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == op)
