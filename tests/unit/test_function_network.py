"""Which networks functions go on (fnagent/config.py), and how the function network and its
host rule are made (drivers/docker/network.py), without Docker: a fake client, and an
``iptables`` stand-in on PATH that records its calls."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from drivers.docker.network import (
    CONFINED,
    HOST_ACCESS,
    FunctionNetwork,
    ensure_function_network,
    mismatch,
)
from drivers.errors import ContainerGoneError, DockerAPIError, NetworkSetupError
from fnagent.config import AgentConfig

pytestmark = pytest.mark.anyio

# -- which networks ----------------------------------------------------------------------------


def test_serve_puts_containers_and_slots_on_the_confined_network_by_default() -> None:
    config = AgentConfig.from_env({"FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "2"})
    docker = config.docker_config(function_network=True)
    assert docker.function_network == CONFINED
    assert docker.networks == ("fnagent-fn",)
    assert docker.pool is not None and docker.pool.networks == ("fnagent-fn",)


def test_host_access_is_another_network() -> None:
    config = AgentConfig.from_env({"FN_ALLOW_HOST_ACCESS": "1"})
    docker = config.docker_config(function_network=True)
    assert docker.function_network == HOST_ACCESS and docker.networks == ("fnagent-fn-host",)
    assert CONFINED.bridge != HOST_ACCESS.bridge


def test_networks_the_user_chose_are_kept() -> None:
    config = AgentConfig.from_env(
        {
            "FN_DOCKER_NETWORKS": "mine",
            "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "1",
            "FN_EXPERIMENTAL_PREFORK_NETWORKS": "slots",
        }
    )
    docker = config.docker_config(function_network=True)
    assert docker.function_network is None  # nothing of ours to make
    assert docker.networks == ("mine",)
    assert docker.pool is not None and docker.pool.networks == ("slots",)
    # Only the pool's left open: the slots go on the function network, which is then made.
    half = AgentConfig.from_env(
        {"FN_DOCKER_NETWORKS": "mine", "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "1"}
    )
    docker = half.docker_config(function_network=True)
    assert docker.function_network == CONFINED and docker.networks == ("mine",)
    assert docker.pool is not None and docker.pool.networks == ("fnagent-fn",)


def test_run_stays_on_the_default_bridge() -> None:
    docker = AgentConfig.from_env({"FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "1"}).docker_config()
    assert docker.function_network is None and docker.networks == ()
    assert docker.pool is not None and docker.pool.networks == ()


# -- making the network ------------------------------------------------------------------------


class FakeClient:
    """Answers ``inspect_network`` / ``create_network`` from a dict of networks by name."""

    def __init__(self, networks: dict[str, dict[str, Any]] | None = None) -> None:
        self.networks = networks or {}
        self.created: list[str] = []
        self.race = False
        """Another agent creates the network just before our create: ours is refused."""

    async def call(self, what: str, method: str, name: str, **kwargs: Any) -> Any:
        if method == "inspect_network":
            if name not in self.networks:
                raise ContainerGoneError(f"{what}: network {name} not found")
            return self.networks[name]
        assert method == "create_network"
        if self.race:
            self.networks[name] = inspected(CONFINED if name == CONFINED.name else HOST_ACCESS)
            raise DockerAPIError(f"{what}: network with name {name} already exists")
        self.created.append(name)
        self.networks[name] = {
            "Driver": kwargs["driver"],
            "Options": kwargs["options"],
            "EnableIPv6": kwargs["enable_ipv6"],
        }
        return {"Id": "n1"}


def inspected(network: FunctionNetwork, **changes: Any) -> dict[str, Any]:
    options = network.create_options()
    return {"Driver": "bridge", "Options": options["options"], "EnableIPv6": False, **changes}


@pytest.fixture
def iptables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``iptables`` on PATH that logs its arguments; ``-C`` fails unless the file
    ``present`` exists; ``-I`` fails when ``broken`` exists."""
    script = tmp_path / "iptables"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/calls\n'
        'case "$3" in\n'
        f"  -C) test -e {tmp_path}/present ;;\n"
        f'  -I) if test -e {tmp_path}/broken; then echo "Permission denied (you must be root)"'
        " >&2; exit 4; fi ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def calls(folder: Path) -> list[str]:
    path = folder / "calls"
    return path.read_text().splitlines() if path.exists() else []


async def test_made_once_with_icc_off_and_the_host_rule_added(iptables: Path) -> None:
    client = FakeClient()
    await ensure_function_network(client, CONFINED)  # type: ignore[arg-type]
    assert client.created == ["fnagent-fn"]
    assert client.networks["fnagent-fn"]["Options"] == {
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.name": "fnagent0",
    }
    check, insert = calls(iptables)
    assert check.split()[2:4] == ["-C", "INPUT"] and insert.split()[2:4] == ["-I", "INPUT"]
    assert "-i fnagent0 -m conntrack ! --ctstate ESTABLISHED,RELATED" in insert
    assert insert.endswith("-j REJECT")

    (iptables / "present").touch()
    await ensure_function_network(client, CONFINED)  # type: ignore[arg-type]
    assert client.created == ["fnagent-fn"]  # not made twice
    assert [c.split()[2] for c in calls(iptables)] == ["-C", "-I", "-C"]  # rule not added twice


async def test_another_agent_making_it_first_is_success(iptables: Path) -> None:
    client = FakeClient()
    client.race = True
    await ensure_function_network(client, CONFINED)  # type: ignore[arg-type]
    assert "fnagent-fn" in client.networks


async def test_host_access_adds_no_rule(iptables: Path) -> None:
    client = FakeClient()
    await ensure_function_network(client, HOST_ACCESS)  # type: ignore[arg-type]
    assert client.created == ["fnagent-fn-host"] and calls(iptables) == []


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"Options": {"com.docker.network.bridge.name": "fnagent0"}}, "inter-container"),
        ({"EnableIPv6": True}, "IPv6"),
        ({"Driver": "macvlan"}, "driver"),
    ],
)
async def test_a_network_of_that_name_not_ours_is_refused(
    iptables: Path, changes: dict[str, Any], why: str
) -> None:
    client = FakeClient({"fnagent-fn": inspected(CONFINED, **changes)})
    with pytest.raises(NetworkSetupError, match=why) as raised:
        await ensure_function_network(client, CONFINED)  # type: ignore[arg-type]
    assert "docker network rm fnagent-fn" in raised.value.message
    assert mismatch(CONFINED, inspected(CONFINED)) is None


async def test_no_iptables_fails_with_advice(iptables: Path) -> None:
    (iptables / "broken").touch()
    with pytest.raises(NetworkSetupError, match="FN_ALLOW_HOST_ACCESS=1") as raised:
        await ensure_function_network(FakeClient(), CONFINED)  # type: ignore[arg-type]
    assert "Permission denied" in raised.value.message


async def test_iptables_missing_fails_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NetworkSetupError, match="iptables is not installed"):
        await ensure_function_network(FakeClient(), CONFINED)  # type: ignore[arg-type]
