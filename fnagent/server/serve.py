"""``fnagent serve``: the store, the Docker driver, the agent and the HTTP server, in one
process, started in that order and stopped in reverse.

On start, the store's lock and the listening address are taken (a second server for either ends
with one line, touching nothing); the secrets key is read (or made) and checked against the
store; then containers an earlier run of this server left behind (same instance label) are
removed, with their secret files. A SQLite store is one server's own: its lock file and its
path make the instance. A PostgreSQL store is shared by several agents on purpose: it has no
lock, and an agent's instance is the database, this host and the listening address, so each
agent on one host keeps its own containers and a restart on the same address finds its own.
SIGTERM or SIGINT: the server stops accepting, calls in flight finish, every container is
removed, and the process exits 0; a second signal only hurries the drain.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn

from fnagent.agent.agent import socket_root
from fnagent.agent.sockdir import SocketDir, remove_root
from fnagent.config import AgentConfig, ServerConfig, check_token_text, read_token_file
from fnagent.errors import FnAgentError, first_error
from fnagent.store import SQLiteStore, store_from_url
from fnagent.store.urls import redact_url

if TYPE_CHECKING:
    from fnagent.server.state import ServerState
    from fnagent.store.postgres import PostgresStore

logger = logging.getLogger(__name__)


def default_db_url() -> str:
    """Fn's default: a SQLite file under ./data."""
    return f"sqlite3://{Path.cwd() / 'data' / 'fnagent.db'}"


def instance_for(identity: str) -> str:
    """A stable instance label for the server ``identity`` names (``store_claim``): the same
    identity, the same label, so a restart finds what a killed run left."""
    return "serve-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def make_store(server_config: ServerConfig, url: str) -> SQLiteStore | PostgresStore:
    """The store ``url`` names, with the server's connection settings (PostgreSQL's)."""
    return store_from_url(
        url,
        max_connections=server_config.db_max_connections,
        connect_timeout_s=server_config.db_connect_timeout_s,
        statement_timeout_s=server_config.db_statement_timeout_s,
        sqlite_sync=server_config.db_sync,
    )


def store_claim(store: SQLiteStore | PostgresStore, host: str, port: int) -> tuple[str | None, str]:
    """The file whose lock makes the store this server's own (None: nothing to lock), and
    what identifies this server. A SQLite file: its lock and its path (a restart on any port
    finds what a killed run left); an in-memory store is this process's own. A shared
    database: no lock, and the database, this host and the address (the address is held)."""
    if isinstance(store, SQLiteStore):
        path = store_lock_target(store.path)
        return path, os.path.abspath(path) if path else f"memory|{os.getpid()}"
    return None, f"{store.identity()}|{socket.gethostname()}|{host}:{port}"


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
    """Run until SIGTERM / SIGINT; raises FnAgentError for a start-up failure.

    The store's lock and the listening socket are taken first: a second server for the same
    store or address ends here, before anything of the first one's is swept. Signals are
    watched from the start to the very end, so a signal during start-up or shutdown never
    interrupts the drain: the first one stops the server, later ones only hurry it (open
    connections are dropped; calls in flight and container removal still finish)."""
    from fnagent.server.claim import claim

    store = make_store(server_config, db_url)
    lock_target, _ = store_claim(store, server_config.host, server_config.port)
    held = claim(lock_target, server_config.host, server_config.port)
    stop = _Stop()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop)
            async with store:
                await _serve(server_config, agent_config, db_url, store, held.sock, stop)
            tg.cancel_scope.cancel()
    finally:
        held.release()


async def _serve(
    server_config: ServerConfig,
    agent_config: AgentConfig,
    db_url: str,
    store: Any,
    sock: Any,
    stop: _Stop,
) -> None:
    from drivers.docker import DockerDriver
    from fnagent.agent import Agent
    from fnagent.records import Recorder, Retention
    from fnagent.server.app import ServerState
    from fnagent.server.detached import Dispatcher, RecordingObserver
    from fnagent.server.invoke import fn_by_id
    from fnagent.server.metrics import Metrics
    from fnagent.server.secrets import default_key_file, open_secretbox
    from fnagent.server.sync import follow
    from fnagent.syslog.forwarder import SyslogForwarder

    key_file = server_config.secrets_key_file
    if key_file is None:
        if not isinstance(store, SQLiteStore):
            # A shared store: every agent must seal and open with the same key.
            raise FnAgentError(
                "a PostgreSQL store needs FN_SECRETS_KEY_FILE: the secrets key, the same file "
                "on every agent (it is made, 0600, when missing and no secret is stored yet)"
            )
        key_file = default_key_file(store_lock_target(store.path))
    secretbox = await open_secretbox(store, key_file)
    async with DockerDriver(agent_config.docker_config(function_network=True)) as driver:
        leftovers = await driver.remove_leftovers()
        remove_root(socket_root(agent_config))
        check_socket_dirs(agent_config)
        if leftovers:
            logger.info("removed containers left by an earlier run", extra={"count": leftovers})
        records = server_config.records
        retention = Retention(
            count=records.retention_count,
            max_age_s=records.retention_s,
            interval_s=records.prune_interval_s,
        )
        # The recorder is left after the agent (the records of the calls it drains are written
        # too), the forwarder too (containers print until the agent removes them).
        recorder = Recorder(store, enabled=records.enabled, retention=retention)
        async with (
            recorder,
            SyslogForwarder() as syslog,
            Agent(driver, agent_config, log_sink=syslog) as agent,
        ):
            dispatcher: Dispatcher | None = None
            state = ServerState(
                config=server_config,
                store=store,
                agent=agent,
                metrics=Metrics(lambda: _gauges(agent, driver, dispatcher, syslog, recorder)),
                version=_version(),
                recorder=recorder,
                observer=RecordingObserver(recorder),
                secretbox=secretbox,
            )

            async def lookup(fn_id: str) -> Any:
                return await fn_by_id(state, fn_id)

            dispatcher = Dispatcher(
                store=store,
                agent=agent,
                lookup=lookup,
                config=server_config.detached,
                owner=agent_config.instance_id,
                observer=state.observer,
                metrics=state.metrics,
                # Several agents share the queue: each prefers the calls of fns it has hot.
                hot=None if isinstance(store, SQLiteStore) else agent.hot_fns,
            )
            state.dispatcher = dispatcher
            async with dispatcher, anyio.create_task_group() as tg:
                if not isinstance(store, SQLiteStore):
                    # Other agents' changes, and the periodic re-read (fnagent/server/sync.py).
                    tg.start_soon(partial(follow, state, store, resync_s=server_config.db_resync_s))
                await _serve_http(server_config, state, sock, stop, db_url, agent_config)
                tg.cancel_scope.cancel()
            logger.info("stopping: calls in flight finish, containers are removed")


async def _serve_http(
    server_config: ServerConfig,
    state: ServerState,
    sock: Any,
    stop: _Stop,
    db_url: str,
    agent_config: AgentConfig,
) -> None:
    """uvicorn until a stop request; the first request also stops the dispatcher's leasing
    (detached calls queued now stay queued for the next start)."""
    from fnagent.server.app import create_app
    from fnagent.server.protocol import protocol_class

    uv_config = uvicorn.Config(
        create_app(state),
        http=protocol_class(
            max_header_bytes=server_config.max_header_bytes,
            max_headers=server_config.max_headers,
            header_timeout_s=server_config.header_timeout_s,
        ),
        host=server_config.host,
        port=server_config.port,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    server = _Server(uv_config)
    freeze_startup_heap()
    assert state.dispatcher is not None
    if stop.attach(server, state.dispatcher.stop):
        logger.info(
            "serving",
            extra={
                "host": server_config.host,
                "port": server_config.port,
                "db_url": redact_url(db_url),
                "instance": agent_config.instance_id,
            },
        )
        await server.serve(sockets=[sock])
        if not server.started:
            raise FnAgentError(f"could not serve on {server_config.host}:{server_config.port}")


def freeze_startup_heap() -> None:
    """Leave what start-up made (modules, docker-py, the app, the agent: hundreds of
    thousands of objects that live as long as the process) out of the garbage collector's
    scans: a full collection walked them all, a 100 ms pause on the event loop under load
    that every request then in flight waited out."""
    gc.collect()
    gc.freeze()


def store_lock_target(path: str) -> str | None:
    """The file whose lock stands for the store: its own path (a ``file:`` URI's path part);
    None for a private in-memory store, which no other process can share."""
    if path == ":memory:":
        return None
    if path.startswith("file:"):
        return path[len("file:") :].split("?", 1)[0]
    return path


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: it re-raises SIGTERM after shutting
    down, which would end the process by the signal instead of exit status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Stop:
    """The stop requests signals make, for a server that may not exist yet."""

    def __init__(self) -> None:
        self.requests = 0
        self._server: Any = None
        self._also: Callable[[], None] | None = None

    def attach(self, server: Any, also: Callable[[], None]) -> bool:
        """Whether to serve at all: not when a stop came during start-up. ``also`` is called
        on the first request (at once if one came already)."""
        self._server = server
        self._also = also
        if self.requests:
            also()
        return self.requests == 0

    def request(self) -> None:
        self.requests += 1
        if self._also is not None:
            self._also()
        if self._server is not None:
            self._server.should_exit = True
            if self.requests > 1:
                self._server.force_exit = True


async def _watch_signals(stop: _Stop) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            logger.info(
                "signal received, shutting down" if not stop.requests else "signal received again",
                extra={"signal": received.name},
            )
            stop.request()


def _gauges(
    agent: Any,
    driver: Any,
    dispatcher: Any = None,
    syslog: Any = None,
    recorder: Any = None,
) -> dict[str, Any]:
    """Hot containers by state (all fns, each container once), pool slots by state, bytes
    of output between calls dropped, by fn, the detached calls queued, syslog lines sent and
    dropped, by app, and call records dropped."""
    pool = getattr(driver, "pool", None)
    usage = pool.usage()._asdict() if pool is not None else {}
    state = {
        "containers": agent.containers(),
        "pool": usage,
        "output_dropped_bytes": dict(agent.output_dropped_bytes),
        "detached_queue_depth": dispatcher.depth if dispatcher is not None else 0,
        "call_records_dropped": recorder.dropped if recorder is not None else 0,
    }
    if syslog is not None:
        state["syslog_sent_lines"] = dict(syslog.sent)
        state["syslog_dropped_lines"] = dict(syslog.dropped)
    return state


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
    prefork: int | None,
    environ: Mapping[str, str],
) -> int:
    """The CLI's body: configuration (the environment, then the flags over it), then
    ``serve``; one line and exit 1 on failure."""
    try:
        server_config = ServerConfig.from_env(environ)
        if token_file:
            token = read_token_file(token_file)
        server_config = replace(
            server_config,
            host=host or server_config.host,
            port=port or server_config.port,
            db_url=db_url or server_config.db_url,
            token=check_token_text("--token", token) or server_config.token,
            token_on_invoke=invoke_token or server_config.token_on_invoke,
        )
        url = server_config.db_url or default_db_url()
        agent_config = AgentConfig.from_env(environ).with_serve_pool(environ).with_prefork(prefork)
        store = make_store(server_config, url)  # a bad FN_DB_URL ends here, before any I/O
        if not environ.get("FNAGENT_INSTANCE_ID"):
            _, identity = store_claim(store, server_config.host, server_config.port)
            agent_config = replace(agent_config, instance_id=instance_for(identity))
        configure_json_logging(server_config.log_level)
        anyio.run(serve, server_config, agent_config, url, backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        cause = first_error(exc)
        message = cause.message if isinstance(cause, FnAgentError) else f"{cause}"
        print(f"fnagent serve: {message}", file=sys.stderr)
        return 1
    return 0
