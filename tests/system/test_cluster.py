"""Agents behind nginx (deploy/nginx.conf) on one PostgreSQL database: they share apps and
fns, one fn's calls stay on one agent (its hot containers), a killed agent's fns move to
another after at most a couple of failed calls, a POST that reached an agent is never sent to
another; and ``make cluster`` (scripts/cluster.py) runs and stops leaving nothing behind."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import docker

from scripts.cluster import ROOT, http_get
from tests.helpers import wait_for
from tests.system.cluster import answered, kill_agent, restart_agent, running_cluster
from tests.system.helpers import (
    FN_HELLO,
    FN_TEST,
    deploy,
    free_port,
    function_containers,
    instance_containers,
    require_image,
)
from tests.system.server import make_server

INVOKE = "fnproject.io/fn/invokeEndpoint"
TRIGGER = "fnproject.io/trigger/httpEndpoint"


def test_agents_behind_nginx_share_fns_keep_a_fns_calls_on_one_agent_and_survive_a_kill(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient, postgres_url: str
) -> None:
    require_image(docker_api, FN_HELLO)
    with running_cluster(tmp_path, cli_env, postgres_url) as cluster:
        front = cluster.front
        fns = [
            deploy(front, fn=f"hello{i}", image=FN_HELLO, memory=128, timeout=30) for i in (1, 2)
        ]
        # The annotations name the front door (FN_PUBLIC_LB_URL), not the agent that answered.
        for fn in fns:
            assert fn["annotations"][INVOKE] == f"{front.url}/invoke/{fn['id']}"
        trigger = front.request(
            "POST",
            "/v2/triggers",
            {"app_id": fns[1]["app_id"], "fn_id": fns[1]["id"], "name": "t"}
            | {"type": "http", "source": "/hello"},
        )
        assert trigger.status == 200, trigger.body
        assert trigger.json()["annotations"][TRIGGER] == f"{front.url}/t/app/hello"
        # Every agent reads them from the shared store.
        for agent in cluster.agents:
            for fn in fns:
                assert agent.request("GET", f"/v2/fns/{fn['id']}").status == 200

        # One fn's serial calls: all answered, all by the one agent its hash names.
        for fn in fns:
            for i in range(5):
                assert answered(cluster, fn, {"name": f"n{i}"}) == (200, f"Hello, n{i}!".encode())
            assert len(cluster.serving_agents(docker_api, fn["id"])) == 1
        # A trigger's calls stay on one agent too (hashed on the app and path: the second fn
        # may now have containers on two agents, its invokes' and its trigger's).
        before = set(cluster.serving_agents(docker_api, fns[1]["id"]))
        for i in range(3):
            got = front.request("POST", "/t/app/hello", {"name": f"t{i}"})
            assert (got.status, got.body) == (200, f"Hello, t{i}!".encode())
        assert len(set(cluster.serving_agents(docker_api, fns[1]["id"])) - before) <= 1

        # The first fn's agent dies: its calls go to another after at most a couple of failures.
        fn = fns[0]
        (victim,) = cluster.serving_agents(docker_api, fn["id"])
        kill_agent(cluster, victim)
        try:
            results = [answered(cluster, fn, {"name": f"k{i}"})[0] for i in range(6)]
            first_ok = results.index(200)
            assert first_ok <= 2 and set(results[first_ok:]) == {200}, results
            # Served by the others now (while nginx learns the agent is gone, the fn's calls
            # may land on either survivor).
            survivors = set(cluster.serving_agents(docker_api, fn["id"])) - {victim}
            assert survivors, "no other agent runs the fn"
            # The management API answers through the front door with one agent down.
            assert front.request("GET", f"/v2/fns/{fn['id']}").status == 200
            assert front.request("POST", "/v2/apps", {"name": "after"}).status == 200
        finally:
            # Back on its address, the agent removes what its killed predecessor left.
            restart_agent(cluster, victim, docker_api)
    for k in range(len(cluster.agents)):
        assert instance_containers(docker_api, f"{cli_env['FNAGENT_INSTANCE_ID']}-{k}") == []


def test_a_post_invoke_that_reached_an_agent_is_not_sent_to_another(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient, postgres_url: str
) -> None:
    """A function answering 503 is the function's answer: the POST is not run again on the
    next agent (nginx resends a POST only when no agent was reached: `non_idempotent` is left
    out, and a request body once streamed is never resent)."""
    require_image(docker_api, FN_TEST)
    with running_cluster(tmp_path, cli_env, postgres_url, count=2) as cluster:
        fn = deploy(cluster.front, timeout=30)
        answer = cluster.front.request(
            "POST", f"/invoke/{fn['id']}", {"headers": {"Fn-Http-Status": "503"}}
        )
        assert answer.status == 503, answer.body
        call_id = answer.headers["fn-call-id"]

        def records() -> list[str]:
            listed = cluster.front.request("GET", f"/v2/fns/{fn['id']}/calls")
            ids = [call["id"] for call in listed.json().get("items", [])]
            return ids if call_id in ids else []

        # Records are written behind; one that ran first would be written before this one.
        assert wait_for(records, "the call's record", timeout_s=20) == [call_id]


def test_make_cluster_serves_through_nginx_and_a_sigint_leaves_nothing_behind(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    require_image(docker_api, FN_HELLO)
    instance = cli_env["FNAGENT_INSTANCE_ID"]
    port = free_port()
    env = {**cli_env, "FN_PORT": str(port)}
    env.pop("FN_DB_URL", None)
    process = run_cluster_script(env)
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops everything" in line or process.poll() is not None:
                break
        text = "".join(output)
        assert "Ctrl-C stops everything" in text, text
        folder = re.search(r"Logs \(removed at the end\): (\S+)", text)
        agents = re.findall(r"agent \d: http://127\.0\.0\.1:(\d+)", text)
        assert folder and len(agents) == 3, text
        front = f"http://127.0.0.1:{port}"
        assert f"{front}/invoke/" in text
        status, body = http_get(f"{front}/version")
        assert status == 200, body
        # The sample fn answers through the front door (curl's line from the script's text).
        invoke = re.search(r"-d '(\{.*?\})' (http://\S+/invoke/\S+)", text)
        assert invoke, text
        done = subprocess.run(
            ["curl", "-sS", "-X", "POST", "-d", invoke.group(1), invoke.group(2)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.stdout == "Hello, you!", (done.stdout, done.stderr)

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        assert process.returncode == 0, text + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Nothing left: no containers, no folder, no process under it, no port open.
    assert containers_left(docker_api, instance) == []
    assert not Path(folder.group(1)).exists()
    assert processes_under(folder.group(1)) == []
    for open_port in (port, *map(int, agents)):
        assert http_get(f"http://127.0.0.1:{open_port}/version")[0] == 0


def run_cluster_script(env: dict[str, str]) -> subprocess.Popen[str]:
    """scripts/cluster.py (`make cluster`), its output on a pipe."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "cluster.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def containers_left(api: docker.APIClient, instance: str) -> list[str]:
    """The names of the containers whose instance label starts with ``instance`` (the
    script's agents label theirs ``<instance>-<k>``)."""
    return [
        str(c["Names"])
        for c in api.containers(all=True, filters={"label": "fnagent.managed"})
        if c["Labels"].get("fnagent.instance", "").startswith(instance)
    ]


def processes_under(folder: str) -> list[str]:
    """The processes whose command line or working folder names ``folder``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if folder in cmdline or cwd.startswith(folder):
            found.append(f"{pid}: {cmdline}")
    return found


def test_the_front_door_passes_headers_streams_and_large_bodies_and_answers_json(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient, postgres_url: str
) -> None:
    require_image(docker_api, FN_TEST)
    with running_cluster(tmp_path, cli_env, postgres_url, count=1) as cluster:
        (agent,), front = cluster.agents, cluster.front
        fn = deploy(front, timeout=30)
        path = f"/invoke/{fn['id']}"
        asked = {"headers": {"Fn-Fdk-Version": "fdk-test/1.0", "Content-Type": "text/x-test"}}
        sent = {"X-Client": "abc", "Authorization": "Bearer not-checked"}
        direct = agent.request("POST", path, asked, headers=sent)
        through = front.request("POST", path, asked, headers=sent)
        assert (direct.status, through.status) == (200, 200), through.body
        # The function's headers come back, the call id too.
        assert through.headers["fn-fdk-version"] == "fdk-test/1.0"
        assert through.headers["content-type"] == "text/x-test"
        assert through.headers["fn-call-id"] != direct.headers["fn-call-id"]
        # The function sees the caller's headers as it does without nginx (bar forwarding
        # and the call's own).
        forwarding = {"x-forwarded-for", "x-forwarded-proto", "fn-call-id", "fn-deadline"}
        seen_direct = {k.lower(): v for k, v in json.loads(direct.body)["headers"].items()}
        seen_through = {k.lower(): v for k, v in json.loads(through.body)["headers"].items()}
        own = {k: v for k, v in seen_through.items() if k not in forwarding}
        assert own == {k: v for k, v in seen_direct.items() if k not in forwarding}

        # A body near the agents' bound passes; a streamed (chunked) one too.
        big = json.dumps({"pad": "x" * (5 * 2**20)}).encode()
        answer = front.request("POST", path, raw=big, headers={"Content-Type": "application/json"})
        assert (answer.status, answer.json()["input_bytes"]) == (200, len(big))
        connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=60)
        try:
            pieces = [b'{"echo": "', b"s" * 100_000, b'"}']
            connection.request("POST", path, body=iter(pieces), encode_chunked=True)
            streamed = connection.getresponse()
            document = json.loads(streamed.read())
        finally:
            connection.close()
        assert (streamed.status, document["echo"]) == (200, "s" * 100_000)

        # Over the bound: 413 in fnagent's shape, from nginx or the agent.
        over = front.request("POST", path, raw=b"x" * (7 * 2**20))
        assert over.status == 413 and over.message.startswith("Request body too large")
        # No agent answers: nginx's 502 in fnagent's shape.
        assert agent.stop() == 0
        down = front.request("POST", path, {})
        assert down.status == 502 and "no fnagent agent answered" in down.message
        assert down.headers["retry-after"] == "15"


def test_a_cgroup_parent_holds_every_function_container_of_the_agent(
    tmp_path: Path, cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    """FN_DOCKER_CGROUP_PARENT (what the cluster bench gives each agent's share): the agent's
    containers run under it, and are frozen and thawed there like anywhere else."""
    require_image(docker_api, FN_TEST)
    parent = f"fnagent-{cli_env['FNAGENT_INSTANCE_ID']}"
    env = {**cli_env, "FN_DOCKER_CGROUP_PARENT": f"/{parent}"}
    server = make_server(tmp_path, env).start()
    try:
        fn = deploy(server, timeout=30)
        for _ in range(2):  # the second call thaws the container frozen after the first
            answer = server.request("POST", f"/invoke/{fn['id']}", {"sleep_ms": 100})
            assert answer.status == 200, answer.body
        (container,) = function_containers(docker_api, cli_env["FNAGENT_INSTANCE_ID"])
        inspected = docker_api.inspect_container(container["Id"])
        assert inspected["HostConfig"]["CgroupParent"] == f"/{parent}"
        pid = inspected["State"]["Pid"]
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"/{parent}/{container['Id']}" in cgroups, cgroups
    finally:
        assert server.stop() == 0
        # What Docker made under the parent, in every cgroup tree, goes once it is empty.
        for tree in [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").glob("*")]:
            if (tree / parent).is_dir():
                for folder in sorted((tree / parent).rglob("*"), reverse=True):
                    if folder.is_dir():
                        folder.rmdir()
                (tree / parent).rmdir()


def test_a_sigterm_while_the_cluster_starts_leaves_nothing_behind(
    cli_env: dict[str, str], docker_api: docker.APIClient
) -> None:
    env = {**cli_env, "FN_PORT": str(free_port())}
    process = run_cluster_script(env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        started = re.search(r"starting in (\S+) ", first)
        assert started, first
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "cluster: stopped" in rest, rest
    assert not Path(started.group(1)).exists()
    assert processes_under(started.group(1)) == []
    assert containers_left(docker_api, cli_env["FNAGENT_INSTANCE_ID"]) == []
