"""What `fnagent serve` does when what it stands on goes away: the Docker daemon stopped and
started again (on a private daemon, so the host's keeps running), and a prefork slot killed
under a function that joined its network namespace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from drivers.docker.pool import PREFORK_ROLE
from tests.helpers import wait_for
from tests.system.dockerd import PrivateDockerd
from tests.system.helpers import (
    BUSYBOX,
    FN_HELLO,
    FN_TEST,
    deploy,
    instance_containers,
    invoke,
    require_image,
)
from tests.system.server import Answer, Server, make_server

pytestmark = pytest.mark.faults

POOL_SIZE = 2
RECOVERY_S = 10
STOPPED = ("exited", "dead")


def slots(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool's slot containers among ``containers``."""
    return [c for c in containers if c["Labels"].get("fnagent.role") == PREFORK_ROLE]


def pool_refilled(containers: list[dict[str, Any]], server: Server) -> bool:
    running = [c for c in slots(containers) if c["State"] == "running"]
    health = server.request("GET", "/health")
    return len(running) == POOL_SIZE and health.status == 200 and health.json()["pool"]["free"] > 0


@pytest.fixture
def private_dockerd(docker_api: docker.APIClient) -> Iterator[PrivateDockerd]:
    why_not = PrivateDockerd.available()
    if why_not is not None:
        pytest.skip(why_not)
    for image in (BUSYBOX, FN_HELLO):
        require_image(docker_api, image)
    host_links = set(os.listdir("/sys/class/net"))
    daemon = PrivateDockerd()
    try:
        daemon.start()
        daemon.load_images(BUSYBOX, FN_HELLO)
        yield daemon
    finally:
        daemon.destroy()
    gone = host_links - set(os.listdir("/sys/class/net"))
    assert "docker0" not in gone, "the private dockerd deleted the host's docker0"


@pytest.mark.timeout(300)
def test_docker_daemon_stopped_and_started_under_serve(
    tmp_path: Path, cli_env: dict[str, str], private_dockerd: PrivateDockerd
) -> None:
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    env = {
        **cli_env,
        "DOCKER_HOST": private_dockerd.host,
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": str(POOL_SIZE),
    }
    server = make_server(tmp_path, env).start()

    def listed() -> list[dict[str, Any]]:
        # A client per listing: one kept across the daemon's restart leaks its dead sockets.
        with private_dockerd.api() as api:
            return instance_containers(api, instance)

    try:
        fn = deploy(server, image=FN_HELLO, memory=128, timeout=10)
        assert invoke(server, fn, {}).status == 200
        wait_for(lambda: pool_refilled(listed(), server), "the pool filled", timeout_s=30)
        up = server.request("GET", "/health").json()
        assert (up["status"], up["docker"]) == ("ok", "up"), up

        private_dockerd.stop()
        started = time.monotonic()
        down = invoke(server, fn, {}, timeout=30)
        assert time.monotonic() - started < fn["timeout"], "the invoke waited past its deadline"
        assert down.status == 503, down.body
        assert "Docker daemon" in down.message, down.message
        assert down.headers.get("retry-after")
        health = server.request("GET", "/health", timeout=10)
        assert health.status == 503, health.body
        assert (health.json()["status"], health.json()["docker"]) == ("unavailable", "down")
        assert "Docker daemon" in health.json()["message"]

        private_dockerd.start()
        back = time.monotonic()
        wait_for(
            lambda: invoke(server, fn, {}, timeout=RECOVERY_S).status == 200,
            "a call answered after the daemon's return",
            timeout_s=RECOVERY_S,
        )
        wait_for(lambda: pool_refilled(listed(), server), "the pool refilled", timeout_s=RECOVERY_S)
        try:
            wait_for(
                lambda: not [c for c in listed() if c["State"] in STOPPED],
                "the containers the stop killed removed",
                timeout_s=RECOVERY_S,
            )
        except AssertionError:
            states = [(c["Names"], c["State"]) for c in listed()]
            raise AssertionError(f"containers left after the daemon's return: {states}") from None
        assert time.monotonic() - back < 3 * RECOVERY_S
        assert server.request("GET", "/health").json()["docker"] == "up"
        assert invoke(server, fn, {}).status == 200
    finally:
        if server.process is not None:
            assert server.stop() == 0
    left = listed()
    assert not left, f"serve left containers on the private daemon: {[c['Names'] for c in left]}"


@pytest.mark.timeout(120)
def test_a_pool_slot_killed_under_a_running_function(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_TEST)
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    env = {**cli_env, "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": str(POOL_SIZE)}
    server = make_server(tmp_path, env).start()
    try:
        fn = deploy(server, timeout=60)
        wait_for(
            lambda: pool_refilled(instance_containers(docker_api, instance), server),
            "the pool filled",
            timeout_s=30,
        )
        answers: list[Answer] = []
        caller = threading.Thread(
            target=lambda: answers.append(invoke(server, fn, {"sleep_ms": 30_000}))
        )
        caller.start()

        def joined_slot() -> str | None:
            for container in instance_containers(docker_api, instance):
                if container["Labels"].get("fnagent.fn_id") == fn["id"]:
                    try:
                        mode = docker_api.inspect_container(container["Id"])["HostConfig"]
                    except docker.errors.NotFound:
                        continue  # a launch re-created on another network: look again
                    return str(mode["NetworkMode"]).removeprefix("container:")
            return None

        slot = wait_for(joined_slot, "the function's container", timeout_s=20)
        slot_ids = {c["Id"] for c in slots(instance_containers(docker_api, instance))}
        assert slot in slot_ids, "it joined no slot"
        wait_for(
            lambda: server.request("GET", f"/v2/fns/{fn['id']}/scale").json()["running"] == 1,
            "the call running",
            timeout_s=20,
        )
        docker_api.kill(slot)
        caller.join(15)
        assert not caller.is_alive(), "the call outlived the slot it depended on"
        (failed,) = answers
        assert failed.status == 502, failed.body
        assert "prefork slot" in failed.message, failed.message

        assert invoke(server, fn, {"echo": "after"}).json()["echo"] == "after"

        def replaced() -> bool:
            containers = instance_containers(docker_api, instance)
            return pool_refilled(containers, server) and slot not in {
                c["Id"] for c in slots(containers)
            }

        wait_for(replaced, "the killed slot replaced", timeout_s=RECOVERY_S)
    finally:
        if server.process is not None:
            assert server.stop() == 0
