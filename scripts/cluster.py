"""``make cluster``: several agents behind nginx on one machine, in the foreground.

PostgreSQL (``initdb`` into a temporary folder, a loopback port), three ``fnagent serve``
agents on loopback ports sharing it (one FN_SECRETS_KEY_FILE, FN_PUBLIC_LB_URL naming the
front door), and nginx with deploy/nginx.conf (its agents and its listen address replaced) on
127.0.0.1:FN_PORT (8080); the sample hello fn is deployed through the front door, as
``make serve`` does. FNAGENT_CLUSTER_AGENTS sets the number of agents (1 to 9; 3).

SIGINT (Ctrl-C) or SIGTERM stops everything: nginx, then the agents (each drains its calls
and removes its containers), then PostgreSQL, then the temporary folder goes. Every child
runs in a session of its own, so a Ctrl-C reaches only this script, which stops them in that
order; a child that exits on its own stops the rest too (exit status 1).

Standard library only (run it with the project's virtualenv, whose ``fnagent`` it starts).
``render_nginx_conf`` and ``Nginx`` are also what the tests use to run nginx.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx.conf"
DB_USER = "fnagent"
STOP_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0


def say(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STOP = threading.Event()
"""Set by SIGINT and SIGTERM: the start gives up at its next step, the run ends."""


class Stop(Exception):
    """A signal asked the cluster to stop."""


def check_stop() -> None:
    if STOP.is_set():
        raise Stop


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        check_stop()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {timeout_s:.0f} s")
        time.sleep(0.1)


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


# --- nginx -------------------------------------------------------------------------------


def render_nginx_conf(template: str, agents: Sequence[str], listen: str) -> str:
    """deploy/nginx.conf for these agents (``host:port``) and this listen address: the
    upstream's example ``server`` lines become one line per agent (with the first line's
    options), and ``listen 8080;`` becomes ``listen <listen>;``. Raises ValueError when the
    template no longer has that shape."""
    if not agents:
        raise ValueError("no agents to put in the upstream")
    lines, out = template.splitlines(), list[str]()
    in_upstream, servers_done, listens = False, False, 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("upstream fnagent {"):
            in_upstream = True
        elif in_upstream and stripped == "}":
            in_upstream = False
        server = re.fullmatch(r"(\s*)server\s+\S+(.*;)", line) if in_upstream else None
        if server:
            if not servers_done:
                indent, options = server.groups()
                out.extend(f"{indent}server {agent}{options}" for agent in agents)
                servers_done = True
            continue
        if re.fullmatch(r"\s*listen\s+8080;", line):
            line = line.replace("8080", listen)
            listens += 1
        out.append(line)
    if not servers_done or listens != 1:
        raise ValueError("deploy/nginx.conf: no `upstream fnagent` servers or no `listen 8080;`")
    return "\n".join(out) + "\n"


class Nginx:
    """nginx in the foreground with a prefix of its own (``root``): the config rendered from
    deploy/nginx.conf, its pid file, temp folders, access log and error log (``log``) all in
    it; never the system's nginx service or its files."""

    def __init__(self, root: Path, agents: Sequence[str], listen: str) -> None:
        self.root = root
        self.log = root / "nginx.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # workers run as nobody when the master is root: they cross it
        conf = render_nginx_conf(TEMPLATE.read_text(), agents, listen)
        paths = "".join(
            f"    {kind}_temp_path {root / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        paths += f"    access_log {root / 'access.log'};\n"
        conf = conf.replace("http {\n", "http {\n" + paths, 1)
        (root / "nginx.conf").write_text(conf)

    @staticmethod
    def program() -> str:
        found = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if found is None:
            raise RuntimeError("nginx is missing: run `make nginx` (it installs Debian's nginx)")
        return found

    def argv(self) -> list[str]:
        return [
            self.program(),
            "-p", f"{self.root}/",
            "-c", str(self.root / "nginx.conf"),
            "-g", f"daemon off; pid {self.root / 'nginx.pid'};",
        ]  # fmt: skip

    def start(self) -> Nginx:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=log, start_new_session=True
            )
        return self

    def stop(self) -> None:
        """A fast stop (SIGTERM: open connections are closed), waited for."""
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM)
            self.process = None


def stop_process(
    process: subprocess.Popen[bytes], sig: int, timeout_s: float = STOP_TIMEOUT_S
) -> int:
    """Signal ``process`` and wait; SIGKILL if it outlives ``timeout_s``. Its exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# --- PostgreSQL --------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster in ``root`` on 127.0.0.1 (as root, run as the
    ``postgres`` user, which PostgreSQL requires)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.password = os.urandom(12).hex()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
        )
        bin_dir = (
            Path(found[-1]).parent if found else Path(shutil.which("initdb") or "initdb").parent
        )
        command = [str(bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # A session of its own: the terminal's Ctrl-C must not stop the server under the agents.
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, start_new_session=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> Postgres:
        self.root.mkdir(parents=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        data = str(self.root / "data")
        self._run(
            "initdb",
            "-D",
            data,
            "-U",
            DB_USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        self._run(
            "pg_ctl", "-D", data, "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
            self.started = False


# --- the agents ---------------------------------------------------------------------------


class Agent:
    """One ``fnagent serve`` on 127.0.0.1:``port``, its log in ``root``."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / "serve.log"
        self.env = {**env, "FN_IOFS_PATH": str(root / "iofs")}
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Agent:
        argv = [sys.executable, "-m", "fnagent", "serve", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, cwd=self.root, stdout=log, stderr=log, start_new_session=True
            )
        return self

    def ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the agent on {self.address} exited: {tail(self.log)}")
        return http_get(f"http://{self.address}/version")[0] == 200

    def stop(self) -> None:
        if self.process is not None:
            status = stop_process(self.process, signal.SIGTERM)
            self.process = None
            if status != 0:
                say(f"the agent on {self.address} exited with {status}: {tail(self.log)}")


def tail(path: Path, size: int = 2000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


# --- the cluster --------------------------------------------------------------------------


def main() -> int:
    port = int(os.environ.get("FN_PORT") or 8080)
    count = int(os.environ.get("FNAGENT_CLUSTER_AGENTS") or 3)
    if not 1 <= count <= 9:
        say(f"FNAGENT_CLUSTER_AGENTS={count}: use 1 to 9")
        return 2
    front = f"http://127.0.0.1:{port}"

    # The handler only sets a flag: the steps check it, so no child is ever started and
    # left untracked by a signal landing in the middle of a step.
    def on_signal(signum: int, frame: FrameType | None) -> None:
        STOP.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    root = Path(tempfile.mkdtemp(prefix="fnagent-cluster-"))
    root.chmod(0o755)  # PostgreSQL and nginx's workers run as other users below it
    say(f"starting in {root} (removed at the end)")
    postgres = Postgres(root / "postgres")
    agents: list[Agent] = []
    nginx: Nginx | None = None
    status = 0
    try:
        postgres.start()
        check_stop()
        env = {
            **os.environ,
            "FN_DB_URL": postgres.url,
            "FN_SECRETS_KEY_FILE": str(root / "secrets-key"),
            "FN_PUBLIC_LB_URL": front,
        }
        instance = os.environ.get("FNAGENT_INSTANCE_ID")
        for index in range(count):
            own = {"FNAGENT_INSTANCE_ID": f"{instance}-{index + 1}"} if instance else {}
            agents.append(Agent(root / f"agent-{index + 1}", {**env, **own}))
        # The first agent migrates the schema and writes the secrets key; then the others.
        agents[0].start()
        wait_until(agents[0].ready, f"the agent on {agents[0].address}")
        for agent in agents[1:]:
            check_stop()
            agent.start()
        for agent in agents[1:]:
            wait_until(agent.ready, f"the agent on {agent.address}")
        check_stop()
        nginx = Nginx(root / "nginx", [agent.address for agent in agents], f"127.0.0.1:{port}")
        nginx.start()
        process = nginx.process
        assert process is not None

        def front_ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {tail(nginx.log)}")
            return http_get(f"{front}/version")[0] == 200

        wait_until(front_ready, f"nginx on {front}")
        fnagent = [sys.executable, "-m", "fnagent"]
        subprocess.run(
            [*fnagent, "deploy", "demo", "hello", "--image", "fnagent/fn-hello"]
            + ["--trigger", "/hello", "--api-url", front],
            check=True,
        )
        shown = subprocess.run(
            [*fnagent, "fns", "get", "demo", "hello", "--json", "--api-url", front],
            check=True,
            capture_output=True,
            text=True,
        )
        fn_id = json.loads(shown.stdout)["id"]
        check_stop()
        listed = "\n".join(f"  agent {i + 1}: http://{a.address}" for i, a in enumerate(agents))
        print(
            f"\nfnagent cluster: nginx on {front} in front of {count} agents sharing PostgreSQL "
            f"on 127.0.0.1:{postgres.port}:\n{listed}\n\nCall the sample function through the "
            f'front door:\n\n  curl -X POST -d \'{{"name":"you"}}\' {front}/invoke/{fn_id}\n'
            f'  curl -d \'{{"name":"you"}}\' {front}/t/demo/hello\n\n'
            f"Logs (removed at the end): {root}\nCtrl-C stops everything.\n",
            flush=True,
        )
        children = [("nginx", nginx.process)]
        children += [(f"the agent on {agent.address}", agent.process) for agent in agents]
        while not STOP.wait(0.5):
            for name, child in children:
                if child is not None and child.poll() is not None:
                    say(f"{name} exited: stopping")
                    status = 1
                    STOP.set()
    except Stop:
        pass
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        say(f"error: {error}")
        status = 1
    finally:
        # No second signal may cut the stop short: it is quick, and it leaves nothing behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping: nginx, the agents (their calls drain, their containers go), PostgreSQL")
        if nginx is not None:
            nginx.stop()
        threads = [threading.Thread(target=agent.stop) for agent in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            postgres.stop()
        except RuntimeError as error:
            say(f"PostgreSQL did not stop cleanly: {error}")
            status = 1
        shutil.rmtree(root, ignore_errors=True)
        say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
