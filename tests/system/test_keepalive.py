"""Keep-alive that learns, on a live `fnagent serve` with a real dockerd: a fn called every
~3 s with an idle_timeout of 2 s finds its container warm once the adaptive policy has learned
its idle times (the container is pre-warmed, frozen, before each call), and cold every time
with FN_KEEPALIVE_POLICY=fixed (the container is gone after 2 s idle)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.helpers import wait_for
from tests.system.helpers import FN_TEST, deploy, invoke, require_image
from tests.system.server import Server, make_server

IDLE_S = 2.5
"""Between a call's answer and the next call: past the idle_timeout (2 s), in the middle of the
histogram's 2-3 s bin."""
LEARNING_CALLS = 4
"""With FN_KEEPALIVE_MIN_SAMPLES=3, the fourth call's end is the first with a learned plan."""


PREWARM_LEAD_S = 1.8
"""The paper's plan starts a container 1.8 s (2 s less its 10% margin) less a cold start after
each call, the default's (weight 300, 2% margin) at the shortest idle time seen (~2.5 s) less 2%
less a cold start: a host whose cold starts take longer than 1.8 s may not have one ready in
time under either."""


def records(server: Server, fn: dict[str, Any], calls: int) -> list[dict[str, Any]]:
    """The records of the fn's first ``calls`` calls, oldest first."""

    def listed() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = server.request(
            "GET", f"/v2/fns/{fn['id']}/calls?per_page=100"
        ).json()["items"]
        return items if len(items) == calls else None

    items = wait_for(listed, f"{calls} call records", timeout_s=10)
    assert items is not None
    return sorted(items, key=lambda item: item["created_at"])


def call_every_few_seconds(server: Server, fn: dict[str, Any], calls: int) -> None:
    for i in range(calls):
        if i:
            time.sleep(IDLE_S)  # the workload's pace, not a wait for a state
        answer = invoke(server, fn, {})
        assert answer.status == 200, answer.body


@pytest.mark.parametrize(("policy", "calls"), [("adaptive", LEARNING_CALLS + 3), ("fixed", 5)])
def test_a_fn_called_every_3_s_is_warm_once_learned_and_cold_each_time_when_fixed(
    tmp_path: Path,
    cli_env: dict[str, str],
    docker_api: docker.APIClient,
    policy: str,
    calls: int,
) -> None:
    require_image(docker_api, FN_TEST)
    env = {
        **cli_env,
        "FN_KEEPALIVE_POLICY": policy,
        "FN_KEEPALIVE_MIN_SAMPLES": "3",
        # What is tested is which calls find a container, not how fast one starts: on a busy
        # host the first start can outlast the default 5 s.
        "FN_HOT_START_TIMEOUT_MSECS": "30s",
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "2",
    }
    server = make_server(tmp_path, env).start()
    try:
        # A first launch racing the pool's own start-up is slow, and the policy's estimate of
        # a cold start remembers it for a while.
        wait_for(
            lambda: server.request("GET", "/health").json()["pool"].get("free", 0) >= 2,
            "the pool's slots free",
            timeout_s=30,
        )
        fn = deploy(server, idle_timeout=2, timeout=30)
        call_every_few_seconds(server, fn, calls)
        scale = server.request("GET", f"/v2/fns/{fn['id']}/scale").json()
        made = records(server, fn, calls)
    finally:
        assert server.stop() == 0
    kinds = [record["start"] for record in made]
    if policy == "fixed":
        assert kinds == ["cold"] * calls, kinds
    else:
        cold_starts_s = [record["timings"]["start_ms"] / 1000 for record in made[:LEARNING_CALLS]]
        if max(cold_starts_s) >= PREWARM_LEAD_S:
            pytest.skip(
                f"the host is too busy to test pre-warming: cold starts took {cold_starts_s} s,"
                f" more than the {PREWARM_LEAD_S} s a pre-warm has"
            )
        assert kinds[:LEARNING_CALLS] == ["cold"] * LEARNING_CALLS, kinds
        serving = [view for view in scale.get("keepalive", []) if view.get("serving")]
        if "prewarm" not in scale and serving and (serving[0].get("keepalive_s") or 0) > 0:
            # The plan keeps instead of pre-warming only when the agent's own cold-start
            # estimate reaches the gap (seen once in CI on a busy host): bounded by idle_timeout,
            # nothing then comes back in time, which is the policy's choice, not a failure.
            pytest.skip(f"the agent's cold-start estimate outgrew the gap: {serving[0]}")
        late = [record for record in made[LEARNING_CALLS:] if record["start"] == "cold"]
        if late and all(
            record["timings"]["start_ms"] / 1000 < min(cold_starts_s) for record in late
        ):
            # Each of these calls found its pre-warm still starting (it waited for less than a
            # whole cold start) and counts as cold: a host too busy for the pre-warm's lead.
            pytest.skip(f"pre-warms still starting at their calls: {late}")
        assert all(kind in ("thawed", "hot") for kind in kinds[LEARNING_CALLS:]), (kinds, scale)
    (version,) = scale["keepalive"]
    assert version["policy"] == policy
    if policy == "fixed":
        assert (version["learned"], version["keepalive_s"]) == (False, 2.0)
        assert "prewarm" not in scale
        return
    assert (version["learned"], version["representative"]) == (True, True)
    assert version["keepalive_s"] == 0.0, "removed at once: a pre-warm brings one back"
