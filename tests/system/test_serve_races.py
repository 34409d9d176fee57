"""`fnagent serve` as a live process under races between the management API and calls: a
fn's config changed and changed back during a call, an app deleted during a call, a fn
deleted while calls look it up. Calls in flight finish; later calls see the change at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.helpers import wait_for
from tests.system.helpers import deploy
from tests.system.server import Answer, Server


def running_calls(server: Server, fn_id: str) -> int:
    answer = server.request("GET", f"/v2/fns/{fn_id}/scale")
    return int(answer.json()["running"]) if answer.status == 200 else 0


def in_background(
    server: Server, fn_id: str, body: dict[str, Any]
) -> tuple[threading.Thread, list[Answer]]:
    answers: list[Answer] = []
    thread = threading.Thread(
        target=lambda: answers.append(server.request("POST", f"/invoke/{fn_id}", body))
    )
    thread.start()
    return thread, answers


def test_a_config_changed_and_back_during_a_call_keeps_serving(server: Server) -> None:
    fn = deploy(server, config={"K": "a"})
    thread, slow = in_background(server, fn["id"], {"sleep_ms": 2000})
    wait_for(lambda: running_calls(server, fn["id"]) >= 1, "the slow call running", timeout_s=30)
    for value in ("b", "a"):
        changed = server.request("PUT", f"/v2/fns/{fn['id']}", {"config": {"K": value}})
        assert changed.status == 200, changed.body
    for _ in range(3):
        answer = server.request("POST", f"/invoke/{fn['id']}", {})
        assert answer.status == 200, answer.body
        assert answer.json()["env"]["K"] == "a"
    thread.join(30)
    assert slow[0].status == 200, slow[0].body


def test_deleting_an_app_lets_its_call_in_flight_finish_then_answers_404(
    server: Server,
) -> None:
    fn = deploy(server)
    thread, slow = in_background(server, fn["id"], {"sleep_ms": 2000, "echo": "finished"})
    wait_for(lambda: running_calls(server, fn["id"]) >= 1, "the slow call running", timeout_s=30)
    assert server.request("DELETE", f"/v2/apps/{fn['app_id']}").status == 204
    after = server.request("POST", f"/invoke/{fn['id']}", {})
    assert (after.status, after.message) == (404, "Fn not found")
    thread.join(30)
    assert slow[0].status == 200, slow[0].body
    assert slow[0].json()["echo"] == "finished"


def test_a_fn_deleted_while_calls_look_it_up_answers_404_at_once(server: Server) -> None:
    """Each round deploys a fn (the cache is empty then), starts calls and deletes the fn
    while they look it up; the call after the delete must not find it in the cache."""
    for round_ in range(20):
        fn = deploy(server, app="racy", fn=f"fn{round_}")
        callers = [in_background(server, fn["id"], {})[0] for _ in range(4)]
        assert server.request("DELETE", f"/v2/fns/{fn['id']}").status == 204
        started = time.monotonic()
        after = server.request("POST", f"/invoke/{fn['id']}", {})
        assert after.status == 404, f"round {round_}: {after.status} {after.body[:200]!r}"
        assert after.message == "Fn not found"
        assert time.monotonic() - started < 5, "not at once"
        for caller in callers:
            caller.join(30)
