"""The agent on a real dockerd with the fn-test and FDK hello images: the status table end to
end, reuse, freeze and thaw as Docker reports them, idle removal, updates, concurrency."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from drivers.base import ContainerTask
from drivers.docker import DockerCookie, DockerDriver
from drivers.docker.freezer import find_freezer
from fnagent.agent import Agent, CallResult
from fnagent.config import AgentConfig
from fnagent.models import Call, CallRequest, Fn
from fnagent.server.invoke import error_answer
from tests.helpers import poll
from tests.system.helpers import FN_HELLO, FN_TEST, require_image

pytestmark = pytest.mark.anyio


def make_fn(image: str = FN_TEST, **fields: Any) -> Fn:
    values: dict[str, Any] = dict(
        id="fn-test",
        name="fntest",
        app_id="app",
        app_name="app",
        image=image,
        memory_mb=64,
        timeout_s=10,
        idle_timeout_s=30,
    )
    values.update(fields)
    return Fn(**values)


def call(fn: Fn, request: dict[str, Any] | bytes | None = None, **fields: Any) -> Call:
    body = request if isinstance(request, bytes) else json.dumps(request or {}).encode()
    return Call(fn=fn, request=CallRequest(body=body), **fields)


def answer(result: CallResult) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.body)
    return document


@pytest.fixture
async def agent(
    instance_id: str, docker_api: docker.APIClient, tmp_path: Path
) -> AsyncIterator[Agent]:
    require_image(docker_api, FN_TEST)
    config = AgentConfig(
        instance_id=instance_id,
        iofs_path=str(tmp_path / "iofs"),
        max_response_size_bytes=1_000_000,
        hot_start_timeout_ms=5000,
    )
    async with DockerDriver(config.docker_config()) as driver:
        async with Agent(driver, config) as made:
            yield made


def fn_containers(api: docker.APIClient, instance_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": [f"fnagent.instance={instance_id}", "fnagent.fn_id"]}
    )
    return listed


async def test_sequential_calls_reuse_one_container(agent: Agent) -> None:
    fn = make_fn()
    results = [await agent.submit(call(fn)) for _ in range(5)]
    assert [r.status for r in results] == [200] * 5
    assert len({answer(r)["pid"] for r in results}) == 1
    assert [answer(r)["calls"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0].start == "cold" and results[1].start in ("warm", "thawed")


async def test_environment_and_security_seen_by_the_function(agent: Agent) -> None:
    fn = make_fn(config={"GREETING": "hi"}, app_config={"APP_LEVEL": "yes", "GREETING": "app"})
    seen = answer(await agent.submit(call(fn)))
    env = seen["env"]
    assert env["GREETING"] == "hi" and env["APP_LEVEL"] == "yes"
    assert env["FN_FORMAT"] == "http-stream"
    assert env["FN_LISTENER"] == "unix:/tmp/iofs/lsnr.sock"
    assert (env["FN_FN_ID"], env["FN_APP_ID"], env["FN_MEMORY"]) == ("fn-test", "app", "64")
    assert seen["uid"] == 1000
    assert "fn-call-id" in {k.lower() for k in seen["headers"]}


async def test_frozen_after_idle_as_its_cgroup_freezer_reports_it_and_thawed(
    agent: Agent, docker_api: docker.APIClient, instance_id: str
) -> None:
    fn = make_fn()
    first = await agent.submit(call(fn))
    (container,) = fn_containers(docker_api, instance_id)
    pid = docker_api.inspect_container(container["Id"])["State"]["Pid"]
    freezer = find_freezer(pid, container["Id"])
    assert freezer is not None
    await poll(lambda: freezer.state() == "FROZEN", "the container frozen", timeout_s=5)
    second = await agent.submit(call(fn))
    assert second.start == "thawed"
    assert answer(second)["pid"] == answer(first)["pid"]
    assert freezer.state() == "THAWED" or second.status == 200


async def test_removed_after_idle_timeout(
    agent: Agent, docker_api: docker.APIClient, instance_id: str
) -> None:
    fn = make_fn(idle_timeout_s=1)
    assert (await agent.submit(call(fn))).status == 200
    assert len(fn_containers(docker_api, instance_id)) == 1
    with anyio.fail_after(10):
        while fn_containers(docker_api, instance_id):
            await anyio.sleep(0.1)


async def test_eight_concurrent_calls_get_their_own_answers(agent: Agent) -> None:
    fn = make_fn()
    results: dict[int, CallResult] = {}

    async def one(i: int) -> None:
        results[i] = await agent.submit(call(fn, {"echo": f"call-{i}", "sleep_ms": 200}))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    for i, result in results.items():
        assert result.status == 200, result.body
        assert answer(result)["echo"] == f"call-{i}"
    assert len({answer(r)["pid"] for r in results.values()}) <= 8


# -- the status table, end to end --------------------------------------------------------------


def message(result: CallResult) -> str:
    """The failed call's message, from the JSON body the server answers it with."""
    assert result.error is not None, result
    _, body = error_answer(result.error)
    return str(json.loads(body)["message"])


async def test_container_502_and_504_answers_keep_the_container(agent: Agent) -> None:
    fn = make_fn()
    failed = await agent.submit(call(fn, {"status": 502}))
    assert (failed.status, message(failed)) == (502, "function failed")
    timed = await agent.submit(call(fn, {"status": 504}))
    assert (timed.status, message(timed)) == (504, "Timed out")
    after = await agent.submit(call(fn))
    assert answer(after)["calls"] == 3


async def test_other_container_status_is_invalid_and_replaced(agent: Agent) -> None:
    fn = make_fn()
    first = await agent.submit(call(fn))
    bad = await agent.submit(call(fn, {"status": 418}))
    assert bad.status == 502 and message(bad).startswith("invalid function response")
    after = await agent.submit(call(fn))
    assert answer(after)["pid"] != answer(first)["pid"] or after.start == "cold"


async def test_crash_mid_call_is_502_and_the_next_call_works(agent: Agent) -> None:
    fn = make_fn()
    crashed = await agent.submit(call(fn, {"exit": 3}))
    assert (crashed.status, message(crashed)) == (502, "error receiving function response")
    after = await agent.submit(call(fn))
    assert (after.status, after.start) == (200, "cold")


async def test_out_of_memory_is_502_naming_the_limit(agent: Agent) -> None:
    fn = make_fn(memory_mb=64)
    result = await agent.submit(call(fn, {"alloc_mb": 200}))
    assert result.status == 502
    assert "ran out of memory" in message(result) and "64 MiB" in message(result)


async def test_big_header_is_502(agent: Agent) -> None:
    result = await agent.submit(call(make_fn(), {"header_bytes": 100_000}))
    assert result.status == 502
    assert message(result).startswith("invalid function response")


async def test_body_over_the_limit_is_502_and_the_container_kept(agent: Agent) -> None:
    fn = make_fn()
    big = await agent.submit(call(fn, {"body_bytes": 2_000_000}))
    assert (big.status, message(big)) == (502, "function response body too large")
    after = await agent.submit(call(fn, {"body_bytes": 10}))
    assert (after.status, after.body) == (200, b"b" * 10)
    assert after.start in ("warm", "thawed")


async def test_start_timeout_is_504_and_the_container_removed(
    agent: Agent, docker_api: docker.APIClient, instance_id: str
) -> None:
    fn = make_fn(config={"TEST_DELAY_LISTEN_MS": "20000"})
    agent.config = replace(agent.config, hot_start_timeout_ms=1000)
    result = await agent.submit(call(fn))
    assert result.status == 504
    assert "initialization timed out" in message(result)
    await poll(
        lambda: not fn_containers(docker_api, instance_id), "the container removed", timeout_s=10
    )


async def test_exit_before_ready_is_502(agent: Agent) -> None:
    result = await agent.submit(call(make_fn(config={"TEST_EXIT_BEFORE_LISTEN": "3"})))
    assert result.status == 502
    assert "failed to initialize" in message(result)


async def test_call_timeout_is_504_and_the_container_gone(
    agent: Agent, docker_api: docker.APIClient, instance_id: str
) -> None:
    fn = make_fn(timeout_s=3)
    assert (await agent.submit(call(fn))).status == 200  # started: the timeout is the call's
    result = await agent.submit(call(fn, {"sleep_ms": 10_000}))
    assert (result.status, message(result)) == (504, "Timed out")
    await poll(
        lambda: not fn_containers(docker_api, instance_id), "the container removed", timeout_s=10
    )


async def test_unreachable_registry_is_502_naming_it(agent: Agent) -> None:
    result = await agent.submit(call(make_fn(image="127.0.0.1:9/fnagent/none:1")))
    assert result.status == 502
    assert "cannot reach the registry" in message(result)


async def test_missing_image_is_404(
    instance_id: str, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    from drivers.docker import PullPolicy

    config = AgentConfig(
        instance_id=instance_id, iofs_path=str(tmp_path / "iofs"), pull_policy=PullPolicy.NEVER
    )
    async with DockerDriver(config.docker_config()) as driver:
        async with Agent(driver, config) as agent:
            result = await agent.submit(call(make_fn(image="fnagent/not-built-here:1")))
    assert result.status == 404
    assert "not present locally" in message(result)


async def test_fdk_hello_through_the_agent(agent: Agent, docker_api: docker.APIClient) -> None:
    require_image(docker_api, FN_HELLO)
    fn = make_fn(image=FN_HELLO, id="hello")
    result = await agent.submit(call(fn, {"name": "Agent"}))
    assert (result.status, result.body) == (200, b"Hello, Agent!")
    again = await agent.submit(call(fn, {"name": "again"}))
    assert again.body == b"Hello, again!"


# -- updates and custom drivers ---------------------------------------------------------------


async def test_image_update_under_steady_calls_fails_none(
    agent: Agent, docker_api: docker.APIClient
) -> None:
    docker_api.tag(FN_TEST, "fnagent/fn-test-v2", "latest")
    try:
        old = make_fn()
        new = make_fn(image="fnagent/fn-test-v2", config={"VERSION": "2"})
        statuses: list[int] = []
        versions: list[str] = []
        stop = anyio.Event()

        async def caller() -> None:
            while not stop.is_set():
                fn = new if versions and len(statuses) > 10 else old
                result = await agent.submit(call(fn, {"sleep_ms": 20}))
                statuses.append(result.status)
                if result.status == 200:
                    versions.append(answer(result)["env"].get("VERSION", "1"))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(caller)
            with anyio.fail_after(30):
                while "2" not in versions:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)
            stop.set()
        assert statuses and all(s == 200 for s in statuses), statuses
        assert versions[-1] == "2"
    finally:
        docker_api.remove_image("fnagent/fn-test-v2:latest")


class GreetingDriver(DockerDriver):
    async def create_cookie(self, task: ContainerTask) -> DockerCookie:
        cookie = await super().create_cookie(task)
        if "greeting" in task.extensions:
            cookie.container_options["Env"].append(f"GREETING={task.extensions['greeting']}")
        return cookie


async def test_custom_driver_changes_options_from_call_extensions(
    instance_id: str, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    require_image(docker_api, FN_TEST)
    config = AgentConfig(instance_id=instance_id, iofs_path=str(tmp_path / "iofs"))
    async with GreetingDriver(config.docker_config()) as driver:
        async with Agent(driver, config) as agent:
            result = await agent.submit(call(make_fn(), extensions={"greeting": "hola"}))
    assert answer(result)["env"]["GREETING"] == "hola"
