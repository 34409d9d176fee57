"""``fnagent serve``: the store, the Docker driver, the agent and the HTTP server, in one
process, started in that order and stopped in reverse.

On start, containers an earlier run of this server left behind (same instance label, derived
from the store's location) are removed. SIGTERM or SIGINT: the server stops accepting, calls in
flight finish, every container is removed, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from drivers.errors import FnAgentError, InvalidInputError
from fnagent.agent import socket_root
from fnagent.config import AgentConfig
from fnagent.server.app import DEFAULT_MAX_REQUEST_BYTES, ServerConfig
from fnagent.sockdir import SocketDir, remove_root

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def default_db_url() -> str:
    """Fn's default: a SQLite file under ./data."""
    return f"sqlite3://{Path.cwd() / 'data' / 'fnagent.db'}"


def server_config_from_env(environ: Mapping[str, str]) -> ServerConfig:
    """FN_PORT, FN_MAX_REQUEST_SIZE, FN_TOKEN (or FN_TOKEN_FILE), FN_INVOKE_REQUIRES_TOKEN."""
    port_text = environ.get("FN_PORT", "").strip() or str(DEFAULT_PORT)
    size_text = environ.get("FN_MAX_REQUEST_SIZE", "").strip() or str(DEFAULT_MAX_REQUEST_BYTES)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInputError(f"FN_PORT={port_text!r} is not a port number")
    if not size_text.isdigit():
        raise InvalidInputError(f"FN_MAX_REQUEST_SIZE={size_text!r} is not a number of bytes")
    token = environ.get("FN_TOKEN") or None
    token_file = environ.get("FN_TOKEN_FILE")
    if token is None and token_file:
        token = read_token_file(token_file)
    return ServerConfig(
        port=int(port_text),
        max_request_bytes=int(size_text),
        token=token,
        token_on_invoke=environ.get("FN_INVOKE_REQUIRES_TOKEN", "").lower() in ("1", "true"),
    )


def read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise InvalidInputError(f"the token file {path} is empty")
    return token


def instance_for(db_url: str, port: int) -> str:
    """A stable instance label for this server: the same store and port, the same label, so a
    restart finds what a killed run left; another server on the daemon has its own."""
    return "serve-" + hashlib.sha256(f"{db_url}|{port}".encode()).hexdigest()[:12]


def configure_json_logging(level: str = "INFO") -> None:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def remove_leftovers(driver: Any) -> int:
    """Remove the containers an earlier run with this instance label left behind."""
    removed = 0
    for container in await driver.containers():
        try:
            await driver.client.remove_container(container["Id"], "remove a leftover container")
            removed += 1
        except FnAgentError as exc:
            logger.warning(
                "could not remove a leftover container",
                extra={"container": container["Id"], "error": exc.message},
            )
    return removed


def check_socket_dirs(config: AgentConfig) -> None:
    """Fail the start, not every launch, when no socket dir can be made (a tmpfs needs root)."""
    probe = SocketDir.under(socket_root(config))
    try:
        probe.make(config.iofs_size_bytes)
    except FnAgentError:
        remove_root(socket_root(config))
        raise
    probe.remove()


async def serve(server_config: ServerConfig, agent_config: AgentConfig, db_url: str) -> None:
    """Run until SIGTERM / SIGINT; raises FnAgentError for a start-up failure."""
    from drivers.docker import DockerDriver
    from fnagent.agent import Agent
    from fnagent.server.app import ServerState, create_app
    from fnagent.server.metrics import Metrics
    from fnagent.store import SQLiteStore

    async with SQLiteStore.from_url(db_url) as store:
        async with DockerDriver(agent_config.docker_config()) as driver:
            leftovers = await remove_leftovers(driver)
            remove_root(socket_root(agent_config))
            check_socket_dirs(agent_config)
            if leftovers:
                logger.info("removed containers left by an earlier run", extra={"count": leftovers})
            async with Agent(driver, agent_config) as agent:
                state = ServerState(
                    config=server_config,
                    store=store,
                    agent=agent,
                    metrics=Metrics(lambda: _gauges(agent, driver)),
                    version=_version(),
                )
                app = create_app(state)
                uv_config = uvicorn.Config(
                    app,
                    host=server_config.host,
                    port=server_config.port,
                    lifespan="off",
                    log_config=None,
                    access_log=False,
                    timeout_graceful_shutdown=30,
                )
                server = _Server(uv_config)
                logger.info(
                    "serving",
                    extra={
                        "host": server_config.host,
                        "port": server_config.port,
                        "db_url": db_url,
                        "instance": agent_config.instance_id,
                    },
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_stop_on_signal, server)
                    await server.serve()
                    tg.cancel_scope.cancel()
                if not server.started:
                    raise FnAgentError(
                        f"could not listen on {server_config.host}:{server_config.port}"
                    )
                logger.info("stopping: calls in flight finish, containers are removed")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: it re-raises SIGTERM after shutting
    down, which would end the process by the signal instead of exit status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _stop_on_signal(server: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            logger.info("signal received, shutting down", extra={"signal": received.name})
            server.should_exit = True
            return


def _gauges(agent: Any, driver: Any) -> dict[str, Any]:
    """Hot containers by state (all fns, each container once) and pool slots by state."""
    pool = getattr(driver, "pool", None)
    usage = pool.usage()._asdict() if pool is not None else {}
    return {"containers": agent.containers(), "pool": usage}


def _version() -> str:
    from importlib.metadata import version

    return version("fnagent")


def run_serve(
    *,
    host: str | None,
    port: int | None,
    db_url: str | None,
    token: str | None,
    token_file: str | None,
    invoke_token: bool,
    environ: Mapping[str, str],
) -> int:
    """The CLI's body: configuration, then ``serve``; one line and exit 1 on failure."""
    try:
        server_config = server_config_from_env(environ)
        if token_file:
            token = read_token_file(token_file)
        server_config = replace(
            server_config,
            host=host or server_config.host,
            port=port or server_config.port,
            token=token or server_config.token,
            token_on_invoke=invoke_token or server_config.token_on_invoke,
        )
        url = db_url or environ.get("FN_DB_URL") or default_db_url()
        agent_config = AgentConfig.from_env(environ)
        if not environ.get("FNAGENT_INSTANCE_ID"):
            agent_config = replace(agent_config, instance_id=instance_for(url, server_config.port))
        configure_json_logging(environ.get("FNAGENT_LOG_LEVEL", "INFO"))
        anyio.run(serve, server_config, agent_config, url, backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        from fnagent.runcmd import first_error

        cause = first_error(exc)
        message = cause.message if isinstance(cause, FnAgentError) else f"{cause}"
        print(f"fnagent serve: {message}", file=sys.stderr)
        return 1
    return 0
