"""The function network: a bridge of fnagent's own on which functions cannot reach each other
(inter-container traffic off) nor, unless host access is allowed, the host's own addresses.

Two networks, one per setting, so that an agent allowing host access never weakens the network
of another agent on the same host that does not:

- ``fnagent-fn`` (bridge ``fnagent0``): icc off, and an iptables rule in the host's ``INPUT``
  chain that rejects every packet from the bridge that does not belong to a connection the host
  opened. The host's addresses (the bridges' gateways, its other interfaces) are local
  destinations, so packets to them pass ``INPUT``; traffic to other hosts is forwarded and
  passes ``FORWARD`` instead, where Docker's own rules let it out.
- ``fnagent-fn-host`` (bridge ``fnagent1``): icc off, no such rule.

Both are IPv4 only (Docker then disables IPv6 inside the containers' namespaces, so no IPv6
path, link-local or other, leads anywhere). Both are made on first use, labelled, by whichever
agent comes first ("already exists" counts as success: agents start concurrently), and never
removed by an agent: others on the host may be using them. The iptables rule stays too; it
applies to ``fnagent0`` only and is added once (checked with ``iptables -C`` first; two agents
starting at the same instant may both add it, which is harmless).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from drivers.docker.config import MANAGED_LABEL, ROLE_LABEL
from drivers.errors import ContainerGoneError, FnAgentError, NetworkSetupError

if TYPE_CHECKING:
    from drivers.docker.client import DockerClient

logger = logging.getLogger(__name__)

NETWORK_ROLE = "function-network"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
RULE_COMMENT = "fnagent: functions may not reach the host"
IPTABLES_TIMEOUT_S = 30.0


@dataclass(frozen=True, kw_only=True)
class FunctionNetwork:
    """A Docker bridge network for functions; ``host_access`` False = the host's addresses are
    closed to it."""

    name: str
    bridge: str
    host_access: bool

    def create_options(self) -> dict[str, Any]:
        """docker-py ``create_network`` keyword arguments."""
        return {
            "driver": "bridge",
            "options": {ICC_OPTION: "false", BRIDGE_NAME_OPTION: self.bridge},
            "labels": {MANAGED_LABEL: "1", ROLE_LABEL: NETWORK_ROLE},
            "enable_ipv6": False,
            "check_duplicate": True,
        }

    def host_rule(self) -> list[str]:
        """The ``INPUT`` rule (without the chain and action flag) that closes the host to the
        bridge: anything but replies to the host's own connections is rejected."""
        return [
            "-i", self.bridge,
            "-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED",
            "-m", "comment", "--comment", RULE_COMMENT,
            "-j", "REJECT",
        ]  # fmt: skip


CONFINED = FunctionNetwork(name="fnagent-fn", bridge="fnagent0", host_access=False)
HOST_ACCESS = FunctionNetwork(name="fnagent-fn-host", bridge="fnagent1", host_access=True)


def function_network(*, host_access: bool) -> FunctionNetwork:
    return HOST_ACCESS if host_access else CONFINED


def mismatch(network: FunctionNetwork, inspected: dict[str, Any]) -> str | None:
    """Why an existing network of that name is not one this module made, or None."""
    options = inspected.get("Options") or {}
    if inspected.get("Driver") != "bridge":
        return f"its driver is {inspected.get('Driver')!r}, not 'bridge'"
    if options.get(ICC_OPTION) != "false":
        return "inter-container traffic is on"
    if options.get(BRIDGE_NAME_OPTION) != network.bridge:
        return f"its bridge is not {network.bridge}"
    if inspected.get("EnableIPv6"):
        return "it has IPv6, which the host rule does not cover"
    return None


async def ensure_function_network(client: DockerClient, network: FunctionNetwork) -> None:
    """Make ``network`` unless it exists, check it is ours, and close the host to it unless
    it allows host access. Raises NetworkSetupError (or the Docker error) when it cannot: an
    agent must not run functions unconfined by surprise."""
    inspected = await _inspect(client, network.name)
    if inspected is None:
        try:
            await client.call(
                f"create the network {network.name}",
                "create_network",
                network.name,
                **network.create_options(),
            )
            logger.info("created the function network", extra={"network": network.name})
        except FnAgentError:
            # Another agent may have made it in the meantime; anything else is raised.
            if await _inspect(client, network.name) is None:
                raise
        inspected = await _inspect(client, network.name)
    why = "it vanished" if inspected is None else mismatch(network, inspected)
    if why is not None:
        raise NetworkSetupError(
            f"the Docker network {network.name} is not fnagent's function network ({why});"
            f" remove it (docker network rm {network.name}) or choose networks with"
            " FN_DOCKER_NETWORKS"
        )
    if not network.host_access:
        await anyio.to_thread.run_sync(close_host, network)


def close_host(network: FunctionNetwork) -> None:
    """Add ``network``'s INPUT rule unless it is there (blocking: run it in a thread)."""
    iptables = shutil.which("iptables")
    if iptables is None:
        raise NetworkSetupError(_advice(network, "iptables is not installed"))
    rule = network.host_rule()
    present = _iptables(iptables, "-C", rule)
    if present.returncode == 0:
        return
    added = _iptables(iptables, "-I", rule)
    if added.returncode != 0:
        raise NetworkSetupError(_advice(network, (added.stderr or added.stdout).strip()))
    logger.info("closed the host's addresses to functions", extra={"bridge": network.bridge})


def _iptables(binary: str, action: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [binary, "-w", str(int(IPTABLES_TIMEOUT_S)), action, "INPUT", *rule],
            capture_output=True,
            text=True,
            timeout=IPTABLES_TIMEOUT_S + 5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkSetupError(_advice(None, f"iptables failed: {exc}")) from None


def _advice(network: FunctionNetwork | None, reason: str) -> str:
    bridge = f" on {network.bridge}" if network is not None else ""
    return (
        f"cannot close the host's addresses to functions{bridge}: {reason}. fnagent serve needs"
        " root and iptables for that; or set FN_ALLOW_HOST_ACCESS=1 to let functions reach"
        " services on the host"
    )


async def _inspect(client: DockerClient, name: str) -> dict[str, Any] | None:
    try:
        inspected: dict[str, Any] = await client.call(
            f"inspect the network {name}", "inspect_network", name
        )
    except ContainerGoneError:  # docker-py's NotFound, mapped
        return None
    return inspected
