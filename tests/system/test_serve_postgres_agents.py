"""Several agents on one PostgreSQL database (tests/system/agents.py): a change made through
one agent reaches the others' calls within the propagation contract (2 s), a delete stops the fn
everywhere, detached calls of an agent killed with SIGKILL all complete on the others, and the
database going away and coming back is ridden out without a restart."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import docker

from tests.helpers import wait_for
from tests.postgres import PostgresServer
from tests.system.agents import Agents, instance_of
from tests.system.helpers import FN_TEST, deploy, function_containers, require_image
from tests.system.server import Answer, Server

PROPAGATION_S = 2.0
"""The product's contract: a change through one agent is served by every other agent's calls
made this long after the change's answer."""


def served_within(
    server: Server, fn: dict[str, Any], changed: float, new: Any, timeout_s: float = 60
) -> list[float]:
    """Call ``fn`` on ``server`` until ``new(answer)``; fail when a call sent PROPAGATION_S
    or more after ``changed`` (a monotonic time) still got the old answer. The send times of
    the calls that got it (seconds after ``changed``)."""
    stale: list[float] = []
    while True:
        sent = time.monotonic() - changed
        answer = server.request("POST", f"/invoke/{fn['id']}", {}, timeout=timeout_s)
        if new(answer):
            return stale
        assert sent < PROPAGATION_S, (
            f"agent on port {server.port} still served the old fn {sent:.2f} s after the "
            f"change: {answer.status} {answer.body[:200]!r}"
        )
        assert answer.status == 200, answer.body
        stale.append(sent)


def has_config(value: str, answer: Answer) -> bool:
    return answer.status == 200 and answer.json()["env"].get("V") == value


def test_three_agents_share_updates_and_deletes_within_two_seconds(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    postgres_url: str,
) -> None:
    require_image(docker_api, FN_TEST)
    with Agents(3, tmp_path, cli_env, postgres_url) as agents:
        first, second, third = agents
        fn = deploy(first, timeout=30, config={"V": "1"})
        for server in agents:  # each agent runs (and caches) the fn
            answer = server.request("POST", f"/invoke/{fn['id']}", {})
            assert has_config("1", answer), answer.body

        updated = first.request("PUT", f"/v2/fns/{fn['id']}", {"config": {"V": "2"}})
        assert updated.status == 200, updated.body
        changed = time.monotonic()
        for server in (second, third):
            served_within(server, fn, changed, functools.partial(has_config, "2"))

        # An app's change reaches them too (app config is every fn's environment).
        answer = third.request("PUT", f"/v2/apps/{fn['app_id']}", {"config": {"W": "3"}})
        assert answer.status == 200, answer.body
        changed = time.monotonic()
        for server in (first, second):

            def app_key(answer: Answer) -> bool:
                return answer.status == 200 and answer.json()["env"].get("W") == "3"

            served_within(server, fn, changed, app_key)

        deleted = second.request("DELETE", f"/v2/fns/{fn['id']}")
        assert deleted.status == 204, deleted.body
        changed = time.monotonic()
        for server in (first, third):
            served_within(server, fn, changed, lambda answer: answer.status == 404)
        # Stopped everywhere: every agent drained and removed the fn's containers.
        for server in agents:
            wait_for(
                lambda s=server: (
                    not [  # type: ignore[misc]
                        c
                        for c in function_containers(docker_api, instance_of(s))
                        if c["Labels"].get("fnagent.fn_id") == fn["id"]
                    ]
                ),
                f"the fn's containers of the agent on port {server.port} to go",
                timeout_s=30,
            )


def test_detached_calls_of_an_agent_killed_with_sigkill_all_complete_on_the_others(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    postgres_url: str,
) -> None:
    require_image(docker_api, FN_TEST)
    # Two calls at a time per agent, and a short lease: a dead agent's calls free up soon.
    env = {**cli_env, "FN_DETACHED_CONCURRENCY": "2", "FN_DETACHED_LEASE_MSECS": "2000"}
    group = Agents(1, tmp_path, env, postgres_url)
    with group as agents:
        (first,) = agents
        fn = deploy(first, timeout=60)
        call_ids = []
        for k in range(6):
            answer = first.request(
                "POST",
                f"/invoke/{fn['id']}",
                # Long enough to be mid-call when the other agents have started.
                {"sleep_ms": 20_000, "stdout": f"call {k}"},
                headers={"Fn-Invoke-Type": "detached"},
            )
            assert answer.status == 202, answer.body
            call_ids.append(answer.headers["fn-call-id"])

        def running_on_first() -> bool:
            busy = [
                c
                for c in function_containers(docker_api, instance_of(first))
                if c["State"] == "running"
            ]
            return len(busy) >= 2

        # The first agent runs two and holds four queued; then it dies mid-call.
        wait_for(running_on_first, "the first agent to run two calls", timeout_s=60)
        group.add()
        group.add()
        assert running_on_first()
        group.kill(first)

        def final(call_id: str) -> dict[str, Any]:
            answer = agents[1].request("GET", f"/v2/fns/{fn['id']}/calls/{call_id}")
            document: dict[str, Any] = answer.json() if answer.status == 200 else {}
            return document if document.get("status") in ("success", "error") else {}

        done = [
            wait_for(functools.partial(final, call_id), f"call {call_id}", timeout_s=120)
            for call_id in call_ids
        ]
        assert [d["status"] for d in done] == ["success"] * 6, done
        # The two the killed agent was running ran again once their leases expired.
        assert sorted(d["attempts"] for d in done).count(2) >= 2, done


def test_agents_ride_out_the_database_going_away_and_coming_back(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    own_postgres: PostgresServer,
) -> None:
    require_image(docker_api, FN_TEST)
    env = {**cli_env, "FN_DB_CONNECT_TIMEOUT_MSECS": "1000", "FN_DB_RESYNC_MSECS": "300"}
    with Agents(2, tmp_path, env, own_postgres.url()) as agents:
        first, second = agents
        fn = deploy(first, timeout=30, config={"V": "1"})
        for server in agents:
            assert has_config("1", server.request("POST", f"/invoke/{fn['id']}", {}))

        own_postgres.stop()
        for server in agents:
            # The periodic re-read failed (at least once) and kept the cached definitions.
            wait_for(
                lambda s=server: "cannot read the registry" in s.log_path.read_text(),  # type: ignore[misc]
                "a failed re-read",
                timeout_s=20,
            )
            answer = server.request("POST", f"/invoke/{fn['id']}", {})
            assert has_config("1", answer), answer.body
            write = server.request("PUT", f"/v2/fns/{fn['id']}", {"config": {"V": "2"}})
            assert write.status == 503, write.body
            assert write.message.startswith("the database is unavailable"), write.body
            assert "retry-after" in write.headers

        own_postgres.start()
        for server in agents:  # the listener reconnected by itself
            wait_for(
                lambda s=server: "listening for changes again" in s.log_path.read_text(),  # type: ignore[misc]
                "the change listener to reconnect",
                timeout_s=30,
            )
        updated = first.request("PUT", f"/v2/fns/{fn['id']}", {"config": {"V": "2"}})
        assert updated.status == 200, updated.body
        served_within(second, fn, time.monotonic(), functools.partial(has_config, "2"))
        for server in agents:
            assert "Traceback" not in server.log_path.read_text()


def test_a_detached_call_goes_to_the_agent_that_has_its_fn_hot(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    postgres_url: str,
) -> None:
    require_image(docker_api, FN_TEST)
    # A long preference, so that a loaded host's slow notification cannot decide the test.
    env = {**cli_env, "FN_DETACHED_PREFER_HOT_MSECS": "3000"}
    with Agents(2, tmp_path, env, postgres_url) as (first, second):
        fn = deploy(first, timeout=30)
        assert second.request("POST", f"/invoke/{fn['id']}", {}).status == 200  # hot there
        answer = first.request(
            "POST", f"/invoke/{fn['id']}", {}, headers={"Fn-Invoke-Type": "detached"}
        )
        assert answer.status == 202, answer.body
        call_id = answer.headers["fn-call-id"]

        seen: list[bytes] = []

        def done() -> bool:
            record = first.request("GET", f"/v2/fns/{fn['id']}/calls/{call_id}")
            seen[:] = [record.body]
            return record.status == 200 and record.json().get("status") == "success"

        try:
            wait_for(done, "the detached call to succeed", timeout_s=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its record: {seen}") from None
        # Run where the fn was hot: the agent that took the call launched nothing for it.
        assert not [
            c
            for c in function_containers(docker_api, instance_of(first))
            if c["Labels"].get("fnagent.fn_id") == fn["id"]
        ]
