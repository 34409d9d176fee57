"""Network isolation of `fnagent serve`'s functions, on a real dockerd, with and without the
prefork pool: a function cannot reach another app's function, nor a service listening on the
host's addresses (unless FN_ALLOW_HOST_ACCESS is set), and it still reaches other hosts.

Every address used is the test's own: listeners on the host (0.0.0.0, seen by the functions at
the bridges' gateway addresses), a busybox listener in a function's own network namespace, and
a network namespace made here, joined to the host by a veth pair, standing for another host.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker import INSTANCE_LABEL, MANAGED_LABEL
from tests.helpers import wait_for
from tests.system.helpers import (
    BUSYBOX,
    FN_TEST,
    bridge_gateway,
    deploy,
    fn_container,
    probe,
    require_image,
)
from tests.system.server import Server, make_server

LISTENER_PORT = 8000


def start_server(
    tmp_path: Path, cli_env: dict[str, str], api: docker.APIClient, pool: int, **env: str
) -> Server:
    require_image(api, FN_TEST)
    require_image(api, BUSYBOX)
    settings = {**cli_env, "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": str(pool), **env}
    for chosen in ("FN_DOCKER_NETWORKS", "FN_EXPERIMENTAL_PREFORK_NETWORKS"):
        settings.pop(chosen, None)
    server = make_server(tmp_path, settings).start()
    if pool:
        # Until its slots are up the pool falls back to the network (by design); the tests
        # that ask for a pool mean its namespaces.
        wait_for(
            lambda: server.request("GET", "/health").json()["pool"].get("free", 0) >= pool,
            "the pool's slots free",
            timeout_s=30,
        )
    return server


@pytest.fixture(params=[0, 2], ids=["no-pool", "pool"])
def pool(request: pytest.FixtureRequest) -> int:
    size: int = request.param
    return size


@pytest.fixture
def servers(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> Iterator[list[Server]]:
    """Servers a test starts; each must exit 0 on SIGTERM."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process is not None:
            assert server.stop() == 0


def namespace_holder(api: docker.APIClient, instance: str, fn_id: str) -> dict[str, Any]:
    """The container whose network namespace the fn's container uses: its pool slot, or
    itself."""
    container = fn_container(api, instance, fn_id)
    mode: str = container["HostConfig"]["NetworkMode"]
    if mode.startswith("container:"):
        holder: dict[str, Any] = api.inspect_container(mode.removeprefix("container:"))
        return holder
    return container


def address_of(holder: dict[str, Any]) -> tuple[str, str, str]:
    """(network name, the container's IPv4 address, the network's gateway) of a container on
    one network."""
    ((name, network),) = holder["NetworkSettings"]["Networks"].items()
    return name, network["IPAddress"], network["Gateway"]


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def victim_listener(docker_api: docker.APIClient, instance_id: str) -> Iterator[Any]:
    """``start(holder)``: a busybox TCP listener on LISTENER_PORT inside ``holder``'s network
    namespace, so it listens at that function's own address. Removed at the end."""
    made: list[str] = []

    def start(holder: dict[str, Any]) -> None:
        container = docker_api.create_container(
            BUSYBOX,
            ["nc", "-ll", "-p", str(LISTENER_PORT), "-e", "true"],
            labels={MANAGED_LABEL: "1", INSTANCE_LABEL: instance_id},
            host_config=docker_api.create_host_config(network_mode=f"container:{holder['Id']}"),
        )
        made.append(container["Id"])
        docker_api.start(container["Id"])

    yield start
    for container_id in made:
        docker_api.remove_container(container_id, force=True, v=True)


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener of the test's own on 0.0.0.0 of the host: the kernel completes
    handshakes into its backlog, so a connection that succeeds proves the door was open."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def refused(answer: str) -> bool:
    return answer != "connected" and ("refused" in answer or "timed out" in answer)


# -- between apps -------------------------------------------------------------------------------


def test_a_function_cannot_reach_another_apps_function(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    servers: list[Server],
    victim_listener: Any,
    pool: int,
) -> None:
    server = start_server(tmp_path, cli_env, docker_api, pool)
    servers.append(server)
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    attacker, victim = deploy(server, app="one", fn="attacker"), deploy(server, app="two")
    probe(server, attacker)
    probe(server, victim)
    holder = namespace_holder(docker_api, instance, victim["id"])
    attacker_holder = namespace_holder(docker_api, instance, attacker["id"])
    network, victim_ip, _ = address_of(holder)
    assert address_of(attacker_holder)[0] == network, "the two apps' functions share a network"
    if pool:
        assert holder["Id"] != fn_container(docker_api, instance, victim["id"])["Id"]
    victim_listener(holder)
    # From the host the victim's listener answers: the door is there, at the victim's address.
    wait_for(lambda: can_connect(victim_ip, LISTENER_PORT), "the victim's listener", timeout_s=20)

    answer = probe(server, attacker, connect=f"{victim_ip}:{LISTENER_PORT}")["connect"]
    assert refused(answer), f"app one's function reached app two's at {victim_ip}: {answer}"


# -- the host -----------------------------------------------------------------------------------


def host_addresses(api: docker.APIClient, holder: dict[str, Any]) -> list[str]:
    """The host's addresses a function would try: its own network's gateway and the default
    bridge's."""
    _, _, gateway = address_of(holder)
    return list(dict.fromkeys([gateway, bridge_gateway(api)]))


def test_a_function_cannot_reach_the_hosts_services(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    servers: list[Server],
    host_listener: int,
    pool: int,
) -> None:
    server = start_server(tmp_path, cli_env, docker_api, pool)
    servers.append(server)
    fn = deploy(server)
    probe(server, fn)
    # No IPv6 at all in the function's namespace, so no IPv6 path (link-local or other) to
    # get round the host rule, which is IPv4's.
    assert probe(server, fn, read_file="/proc/net/if_inet6")["file"] == ""
    holder = namespace_holder(docker_api, cli_env["FNAGENT_INSTANCE_ID"], fn["id"])
    for address in host_addresses(docker_api, holder):
        assert can_connect(address, host_listener), f"the test's listener is not at {address}"
        answer = probe(server, fn, connect=f"{address}:{host_listener}")["connect"]
        assert refused(answer), f"a function reached the host's service at {address}: {answer}"


def test_the_host_is_reachable_when_allowed(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    servers: list[Server],
    host_listener: int,
    victim_listener: Any,
    pool: int,
) -> None:
    server = start_server(tmp_path, cli_env, docker_api, pool, FN_ALLOW_HOST_ACCESS="1")
    servers.append(server)
    one, two = deploy(server, app="one"), deploy(server, app="two")
    probe(server, one)
    probe(server, two)
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    holder = namespace_holder(docker_api, instance, one["id"])
    for address in host_addresses(docker_api, holder):
        answer = probe(server, one, connect=f"{address}:{host_listener}")["connect"]
        assert answer == "connected", f"host access is on, yet {address}: {answer}"
    # Apps stay apart with host access on.
    other = namespace_holder(docker_api, instance, two["id"])
    network, other_ip, _ = address_of(other)
    assert address_of(holder)[0] == network
    victim_listener(other)
    wait_for(lambda: can_connect(other_ip, LISTENER_PORT), "the other app's listener", timeout_s=20)
    answer = probe(server, one, connect=f"{other_ip}:{LISTENER_PORT}")["connect"]
    assert refused(answer), f"with host access on, apps reach each other: {answer}"


# -- other hosts ----------------------------------------------------------------------------


PORT_TEXT = str(LISTENER_PORT)
LISTEN_SCRIPT = """
import socket, sys
sock = socket.socket()
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.listen(64)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def other_host() -> Iterator[str]:
    """A network namespace of the test's own, joined to the host by a veth pair, with a TCP
    listener on LISTENER_PORT: another host, as far as a function can tell. Yields its address.
    Everything is removed at the end (deleting the namespace deletes the veth pair)."""
    tag = secrets.token_hex(3)
    namespace, host_end, far_end = f"fnagent-t-{tag}", f"fnt{tag}h", f"fnt{tag}n"
    subnet = ipaddress.ip_network(f"198.51.100.{4 * secrets.randbelow(64)}/30")
    near, far = (str(address) for address in subnet.hosts())

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", namespace)
    listener: subprocess.Popen[str] | None = None
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", far_end)
        ip("link", "set", far_end, "netns", namespace)
        ip("addr", "add", f"{near}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", namespace, "addr", "add", f"{far}/30", "dev", far_end)
        ip("-n", namespace, "link", "set", far_end, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "route", "add", "default", "via", near)
        listener = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", LISTEN_SCRIPT, PORT_TEXT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield far
    finally:
        if listener is not None:
            assert listener.stdin is not None and listener.stdout is not None
            listener.stdin.close()
            listener.wait(10)
            listener.stdout.close()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        ip("netns", "del", namespace)


def test_a_function_reaches_other_hosts(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    servers: list[Server],
    other_host: str,
    pool: int,
) -> None:
    server = start_server(tmp_path, cli_env, docker_api, pool)
    servers.append(server)
    fn = deploy(server)
    answer = probe(server, fn, connect=f"{other_host}:{LISTENER_PORT}")["connect"]
    assert answer == "connected", f"a function cannot reach another host: {answer}"


# -- no silent fallback ------------------------------------------------------------------------


def test_serve_without_iptables_refuses_to_start(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    """Without iptables the host cannot be closed to functions: serve says so and exits 1
    rather than serve unconfined."""
    empty = tmp_path / "no-bin"
    empty.mkdir()
    settings = {**cli_env, "PATH": str(empty), "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "1"}
    server = make_server(tmp_path, settings)
    done = subprocess.run(
        [sys.executable, "-m", "fnagent", "serve", "--port", str(server.port),
         "--db-url", f"sqlite3://{server.db_path}"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fnagent serve: cannot close the host's addresses"), last
    assert "iptables is not installed" in last and "FN_ALLOW_HOST_ACCESS=1" in last
