"""Per-fn limits on a live `fnagent serve` with a real dockerd: ``fnagent.io/max-concurrency``
serves concurrent calls in turn on one container, and ``fnagent.io/init-timeout-ms`` lets a
function that listens late start where the default start timeout does not."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import docker

from tests.helpers import wait_for
from tests.system.helpers import deploy, function_containers, invoke
from tests.system.server import Answer, Server, make_server

LIMIT = "fnagent.io/max-concurrency"
INIT = "fnagent.io/init-timeout-ms"


def test_max_concurrency_1_serves_concurrent_calls_in_turn_on_one_container(
    server: Server, docker_api: docker.APIClient, instance_id: str
) -> None:
    fn = deploy(server, timeout=60, annotations={LIMIT: 1})
    followers = 3
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(function_containers(docker_api, instance_id)))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(1 + followers) as pool:
            # The first call holds the container while the others arrive, half a second
            # apart (far more than the server takes to read one), and wait for it.
            first = pool.submit(invoke, server, fn, {"sleep_ms": 2500, "echo": "0"})
            scale = f"/v2/fns/{fn['id']}/scale"
            wait_for(
                lambda: server.request("GET", scale).json()["running"] == 1,
                "the first call's container busy",
                timeout_s=60,
            )
            later: list[Future[Answer]] = []
            for i in range(1, followers + 1):
                time.sleep(0.5)
                later.append(pool.submit(invoke, server, fn, {"sleep_ms": 100, "echo": str(i)}))
            answers: list[Answer] = [first.result()] + [f.result() for f in later]
    finally:
        done.set()
        watcher.join()
    assert [a.status for a in answers] == [200] * (1 + followers), [a.body for a in answers]
    documents = [a.json() for a in answers]
    # One process served them all, one call after another, in the order they arrived.
    assert len({d["pid"] for d in documents}) == 1
    assert [(d["echo"], d["calls"]) for d in documents] == [
        (str(i), i + 1) for i in range(1 + followers)
    ]
    assert most == 1
    assert len(function_containers(docker_api, instance_id)) == 1


def test_init_timeout_lets_a_late_listener_start_where_the_default_does_not(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # fn-test sleeps TEST_DELAY_LISTEN_MS before it listens; the server's default start
    # timeout is shorter than that, the annotation's longer.
    slow = {"TEST_DELAY_LISTEN_MS": "2500"}
    server = make_server(tmp_path, {**cli_env, "FN_HOT_START_TIMEOUT_MSECS": "1000"}).start()
    try:
        patient = deploy(server, fn="patient", timeout=60, config=slow, annotations={INIT: 30000})
        answer = invoke(server, patient, {"echo": "late"})
        assert (answer.status, answer.json()["echo"]) == (200, "late")
        default = deploy(server, fn="default", timeout=60, config=slow)
        refused = invoke(server, default, {})
        assert refused.status == 504
        assert "Container initialization timed out after 1 s" in refused.message
    finally:
        assert server.stop() == 0
