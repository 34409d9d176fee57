"""Configuration is parsed once, with one rule per kind of value (fnagent/env.py), and the
flags of ``run`` and ``serve`` are applied the same way."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from drivers.docker.freezer import FreezerMode
from fnagent.config import AgentConfig, KeepAliveConfig, ServerConfig
from fnagent.errors import InvalidInputError
from fnagent.server import serve

BOOLEANS = {
    "FN_INVOKE_REQUIRES_TOKEN": lambda env: ServerConfig.from_env(env).token_on_invoke,
    "FN_DISABLE_READONLY_ROOTFS": lambda env: AgentConfig.from_env(env).disable_readonly_rootfs,
    "FN_EXPERIMENTAL_PREFORK_USE_ONCE": lambda env: AgentConfig.from_env(env).prefork_use_once,
}


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize("text", ["1", "true", "yes", "on", "TRUE", "Yes", " on "])
def test_every_boolean_setting_takes_every_true_spelling(name: str, text: str) -> None:
    assert BOOLEANS[name]({name: text}) is True


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize("text", ["0", "false", "no", "off", "", "OFF"])
def test_every_boolean_setting_takes_every_false_spelling(name: str, text: str) -> None:
    assert BOOLEANS[name]({name: text}) is False


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize("text", ["maybe", "2", "y", "enabled"])
def test_a_boolean_that_is_neither_is_refused_by_name(name: str, text: str) -> None:
    with pytest.raises(InvalidInputError, match=f"{name}='{text}' is not a boolean"):
        BOOLEANS[name]({name: text})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("FN_MAX_PIDS", "many", "FN_MAX_PIDS='many' is not a whole number"),
        ("FN_MAX_PIDS", "-1", "FN_MAX_PIDS='-1' is not a whole number"),
        ("FN_MAX_RESPONSE_SIZE", "0", "FN_MAX_RESPONSE_SIZE=0: must be positive"),
        ("FN_MAX_RESPONSE_SIZE", "6x", "FN_MAX_RESPONSE_SIZE='6x' is not a size"),
        ("FN_MAX_RESPONSE_SIZE", "1.5", "FN_MAX_RESPONSE_SIZE='1.5' is not a size"),
        ("FN_FREEZE_IDLE_MSECS", "soon", "FN_FREEZE_IDLE_MSECS='soon' is not a duration"),
        ("FN_EXPERIMENTAL_PREFORK_RATE", "0", "FN_EXPERIMENTAL_PREFORK_RATE=0: must be positive"),
        ("FN_FREEZER", "runc", "FN_FREEZER must be cgroup or api, got 'runc'"),
    ],
)
def test_agent_settings_refuse_bad_values_by_name(name: str, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        AgentConfig.from_env({name: text})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("FN_PORT", "0", "FN_PORT=0: must be positive"),
        ("FN_PORT", "65536", "FN_PORT=65536: must be at most 65535"),
        ("FN_PORT", "http", "FN_PORT='http' is not a whole number"),
        ("FN_MAX_HEADER_SIZE", "512", "FN_MAX_HEADER_SIZE=512: must be at least 1024"),
        ("FN_MAX_HEADER_COUNT", "0", "FN_MAX_HEADER_COUNT=0: must be positive"),
        ("FN_HEADER_TIMEOUT_MSECS", "0", "FN_HEADER_TIMEOUT_MSECS=0: must be positive"),
        ("FN_CALL_RECORDS", "sometimes", "FN_CALL_RECORDS='sometimes' is not a boolean"),
        ("FN_CALL_RETENTION_COUNT", "0", "FN_CALL_RETENTION_COUNT=0: must be positive"),
        ("FN_CALL_RETENTION_COUNT", "lots", "FN_CALL_RETENTION_COUNT='lots' is not a whole"),
        ("FN_CALL_RETENTION_S", "7d", "FN_CALL_RETENTION_S='7d' is not a whole number"),
        ("FN_CALL_RETENTION_S", "0", "FN_CALL_RETENTION_S=0: must be positive"),
        ("FN_CALL_PRUNE_INTERVAL_S", "0", "FN_CALL_PRUNE_INTERVAL_S=0: must be positive"),
        ("FN_DB_SYNC", "off", "FN_DB_SYNC must be normal or full, got 'off'"),
        ("FN_DB_SYNC", "1", "FN_DB_SYNC must be normal or full, got '1'"),
    ],
)
def test_server_settings_refuse_bad_values_by_name(name: str, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ServerConfig.from_env({name: text})


def test_sizes_and_durations_take_units() -> None:
    agent = AgentConfig.from_env(
        {
            "FN_MAX_RESPONSE_SIZE": "1m",
            "FN_MAX_LOG_SIZE_BYTES": "64KiB",
            "FN_MAX_TOTAL_MEMORY_BYTES": "2g",
            "FN_FREEZE_IDLE_MSECS": "2s",
            "FN_HOT_START_TIMEOUT_MSECS": "250ms",
            "FN_HOT_PULL_TIMEOUT_MSECS": "1.5m",
        }
    )
    assert agent.max_response_size_bytes == 1024 * 1024
    assert agent.max_log_size_bytes == 64 * 1024
    assert agent.max_total_memory_bytes == 2 * 1024**3
    assert (agent.freeze_idle_ms, agent.hot_start_timeout_ms) == (2000, 250)
    assert agent.hot_pull_timeout_ms == 90_000
    server = ServerConfig.from_env(
        {"FN_MAX_REQUEST_SIZE": "1048576", "FN_HEADER_TIMEOUT_MSECS": "3s"}
    )
    assert (server.max_request_bytes, server.header_timeout_s) == (1024 * 1024, 3.0)


def test_unset_and_empty_settings_keep_their_defaults() -> None:
    blank = {field.name: "" for field in dataclasses.fields(AgentConfig)}
    defaults = AgentConfig(instance_id="x")
    assert dataclasses.replace(AgentConfig.from_env(blank), instance_id="x") == defaults
    assert ServerConfig.from_env({"FN_PORT": " ", "FN_TOKEN": ""}) == ServerConfig()


def test_db_sync_setting_picks_sqlites_synchronous_mode() -> None:
    assert ServerConfig.from_env({}).db_sync == "normal"
    assert ServerConfig.from_env({"FN_DB_SYNC": " FULL "}).db_sync == "full"
    assert ServerConfig.from_env({"FN_DB_SYNC": "normal"}).db_sync == "normal"


def test_freezer_setting_picks_the_way_containers_are_frozen() -> None:
    assert AgentConfig.from_env({}).docker_config().freezer is FreezerMode.CGROUP
    assert AgentConfig.from_env({"FN_FREEZER": "API"}).docker_config().freezer is FreezerMode.API


def test_hot_poll_is_gone() -> None:
    """FN_HOT_POLL_MSECS was read and never used: readiness comes from inotify."""
    assert not [f for f in dataclasses.fields(AgentConfig) if "poll" in f.name]
    AgentConfig.from_env({"FN_HOT_POLL_MSECS": "not read"})


def test_prefork_flag_replaces_every_pool_setting() -> None:
    env = {
        "FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "1",
        "FN_EXPERIMENTAL_PREFORK_POOL_MIN": "2",
        "FN_EXPERIMENTAL_PREFORK_POOL_MAX": "8",
    }
    config = AgentConfig.from_env(env)
    assert config.with_prefork(None) == config
    pool = config.with_prefork(3).pool_config()
    assert pool is not None and (pool.min_size, pool.max_size) == (3, 3)
    assert config.with_prefork(0).pool_config() is None


def test_serve_applies_the_prefork_flag_as_run_does(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(func: Any, server_config: Any, agent_config: Any, url: str, **_: Any) -> None:
        seen.update(server=server_config, agent=agent_config, url=url)

    monkeypatch.setattr("fnagent.server.serve.anyio.run", fake_run)
    monkeypatch.setattr(serve, "configure_json_logging", lambda level: None)
    env = {
        "FN_EXPERIMENTAL_PREFORK_POOL_MIN": "2",
        "FN_EXPERIMENTAL_PREFORK_POOL_MAX": "8",
        "FN_INVOKE_REQUIRES_TOKEN": "yes",
        "FN_DB_URL": "sqlite3:///nonexistent/fn.db",
        "FNAGENT_INSTANCE_ID": "test",
    }
    code = serve.run_serve(
        host=None,
        port=None,
        db_url=None,
        token=None,
        token_file=None,
        invoke_token=False,
        prefork=4,
        environ=env,
    )
    assert code == 0
    assert seen["agent"] == AgentConfig.from_env(env).with_prefork(4)
    assert seen["server"].token_on_invoke is True
    assert seen["url"] == "sqlite3:///nonexistent/fn.db"


def serve_agent_config(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> AgentConfig:
    seen: dict[str, Any] = {}

    def fake_run(func: Any, server_config: Any, agent_config: Any, url: str, **_: Any) -> None:
        seen.update(agent=agent_config)

    monkeypatch.setattr("fnagent.server.serve.anyio.run", fake_run)
    monkeypatch.setattr(serve, "configure_json_logging", lambda level: None)
    env = {"FN_DB_URL": "sqlite3:///nonexistent/fn.db", "FNAGENT_INSTANCE_ID": "t", **env}
    assert (
        serve.run_serve(
            host=None,
            port=None,
            db_url=None,
            token=None,
            token_file=None,
            invoke_token=False,
            prefork=None,
            environ=env,
        )
        == 0
    )
    config: AgentConfig = seen["agent"]
    return config


def test_serve_keeps_an_elastic_pool_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = serve_agent_config(monkeypatch, {}).pool_config()
    assert pool is not None and (pool.min_size, pool.max_size) == (2, 16)


def test_serve_pool_size_zero_turns_the_pool_off(monkeypatch: pytest.MonkeyPatch) -> None:
    off = {"FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "0"}
    assert serve_agent_config(monkeypatch, off).pool_config() is None
    fixed = serve_agent_config(monkeypatch, {"FN_EXPERIMENTAL_PREFORK_POOL_SIZE": "3"})
    pool = fixed.pool_config()
    assert pool is not None and (pool.min_size, pool.max_size) == (3, 3)


def test_run_keeps_no_pool_by_default() -> None:
    assert AgentConfig.from_env({}).pool_config() is None


def test_detached_settings_are_read_and_backoff_doubles_up_to_its_cap() -> None:
    detached = ServerConfig.from_env(
        {
            "FN_DETACHED_CONCURRENCY": "3",
            "FN_DETACHED_MAX_ATTEMPTS": "7",
            "FN_DETACHED_BACKOFF_MSECS": "2s",
            "FN_DETACHED_MAX_BACKOFF_MSECS": "5s",
            "FN_DETACHED_LEASE_MSECS": "1m",
            "FN_DETACHED_DRAIN_MSECS": "10s",
            "FN_CALLBACK_TIMEOUT_MSECS": "500ms",
            "FN_CALLBACK_ATTEMPTS": "4",
        }
    ).detached
    assert (detached.concurrency, detached.max_attempts) == (3, 7)
    assert (detached.lease_ms, detached.drain_ms) == (60_000, 10_000)
    assert (detached.callback_timeout_ms, detached.callback_attempts) == (500, 4)
    assert [detached.backoff_s(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]
    assert ServerConfig.from_env({}).detached == ServerConfig().detached
    for name, text in [("FN_DETACHED_CONCURRENCY", "0"), ("FN_DETACHED_MAX_ATTEMPTS", "x")]:
        with pytest.raises(InvalidInputError, match=name):
            ServerConfig.from_env({name: text})


def test_call_records_are_on_by_default_and_kept_1000_per_fn_for_7_days() -> None:
    records = ServerConfig.from_env({}).records
    assert (
        records.enabled,
        records.retention_count,
        records.retention_s,
        records.prune_interval_s,
    ) == (True, 1000, 7 * 24 * 3600, 60)
    records = ServerConfig.from_env(
        {
            "FN_CALL_RECORDS": "off",
            "FN_CALL_RETENTION_COUNT": "5",
            "FN_CALL_RETENTION_S": "60",
            "FN_CALL_PRUNE_INTERVAL_S": "2",
        }
    ).records
    assert (
        records.enabled,
        records.retention_count,
        records.retention_s,
        records.prune_interval_s,
    ) == (False, 5, 60, 2)


def test_keepalive_settings_are_read_with_the_agents() -> None:
    assert AgentConfig.from_env({}).keepalive == KeepAliveConfig()
    keepalive = AgentConfig.from_env(
        {
            "FN_KEEPALIVE_POLICY": "Fixed",
            "FN_KEEPALIVE_RANGE_MSECS": "120m",
            "FN_KEEPALIVE_HEAD_PERCENTILE": "1",
            "FN_KEEPALIVE_TAIL_PERCENTILE": "99.5",
            "FN_KEEPALIVE_MARGIN_PERCENT": "0",
            "FN_KEEPALIVE_CV_THRESHOLD": "1.5",
            "FN_KEEPALIVE_MIN_SAMPLES": "3",
            "FN_KEEPALIVE_COLD_START_WEIGHT": "40",
            "FN_KEEPALIVE_WEIGH_PER_START": "Yes",
        }
    ).keepalive
    assert keepalive == KeepAliveConfig(
        policy="fixed",
        range_s=7200.0,
        head_percentile=1.0,
        tail_percentile=99.5,
        margin_percent=0.0,
        cv_threshold=1.5,
        min_samples=3,
        cold_start_weight=40.0,
        weigh_per_start=True,
    )


def test_the_default_keepalive_is_cost_aware_and_the_papers_stays_available() -> None:
    default = AgentConfig.from_env({}).keepalive
    assert (default.cold_start_weight, default.margin_percent) == (300.0, 2.0)
    assert not default.weigh_per_start
    papers = AgentConfig.from_env(
        {"FN_KEEPALIVE_COLD_START_WEIGHT": "inf", "FN_KEEPALIVE_MARGIN_PERCENT": "10"}
    ).keepalive
    assert papers == KeepAliveConfig(cold_start_weight=math.inf, margin_percent=10.0)
    assert AgentConfig.from_env({"FN_KEEPALIVE_WEIGH_PER_START": "off"}).keepalive == default


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FN_KEEPALIVE_POLICY": "lru"}, "FN_KEEPALIVE_POLICY='lru': use adaptive or fixed"),
        ({"FN_KEEPALIVE_RANGE_MSECS": "30s"}, "FN_KEEPALIVE_RANGE_MSECS=30s: must be at least"),
        ({"FN_KEEPALIVE_RANGE_MSECS": "4h"}, "FN_KEEPALIVE_RANGE_MSECS='4h' is not a duration"),
        ({"FN_KEEPALIVE_HEAD_PERCENTILE": "-1"}, "FN_KEEPALIVE_HEAD_PERCENTILE=-1: must be at"),
        ({"FN_KEEPALIVE_TAIL_PERCENTILE": "101"}, "FN_KEEPALIVE_TAIL_PERCENTILE=101: must be"),
        (
            {"FN_KEEPALIVE_HEAD_PERCENTILE": "50", "FN_KEEPALIVE_TAIL_PERCENTILE": "40"},
            r"FN_KEEPALIVE_HEAD_PERCENTILE \(50\) must not exceed FN_KEEPALIVE_TAIL_PERCENTILE",
        ),
        ({"FN_KEEPALIVE_MARGIN_PERCENT": "100"}, "FN_KEEPALIVE_MARGIN_PERCENT=100: must be"),
        ({"FN_KEEPALIVE_CV_THRESHOLD": "nan"}, "FN_KEEPALIVE_CV_THRESHOLD=nan: must be"),
        ({"FN_KEEPALIVE_MIN_SAMPLES": "0"}, "FN_KEEPALIVE_MIN_SAMPLES=0: must be positive"),
        ({"FN_KEEPALIVE_MIN_SAMPLES": "two"}, "FN_KEEPALIVE_MIN_SAMPLES='two' is not a whole"),
        ({"FN_KEEPALIVE_COLD_START_WEIGHT": "0"}, "FN_KEEPALIVE_COLD_START_WEIGHT=0: must be"),
        ({"FN_KEEPALIVE_COLD_START_WEIGHT": "heavy"}, "'heavy' is not a number"),
        (
            {"FN_KEEPALIVE_WEIGH_PER_START": "maybe"},
            "FN_KEEPALIVE_WEIGH_PER_START='maybe' is not a boolean",
        ),
    ],
)
def test_bad_keepalive_settings_are_refused_by_name(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        AgentConfig.from_env(environ)


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("https://fn.example.com", "https://fn.example.com"),
        ("http://10.0.0.5:8080/", "http://10.0.0.5:8080"),
        (" https://fn.example.com/gateway/ ", "https://fn.example.com/gateway"),
    ],
)
def test_public_lb_url_is_read_without_its_trailing_slash(text: str, url: str) -> None:
    assert ServerConfig.from_env({"FN_PUBLIC_LB_URL": text}).public_lb_url == url
    assert ServerConfig.from_env({}).public_lb_url is None


@pytest.mark.parametrize(
    "text", ["fn.example.com", "ftp://fn.example.com", "https://", "https://h/?q=1", "http://h/#x"]
)
def test_a_public_lb_url_that_is_no_http_base_url_is_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidInputError, match="FN_PUBLIC_LB_URL=.*http"):
        ServerConfig.from_env({"FN_PUBLIC_LB_URL": text})


def test_default_cpus_per_container_take_cpus_syntax() -> None:
    assert AgentConfig.from_env({}).default_cpu_mcpus == 0
    assert AgentConfig.from_env({"FN_DEFAULT_CPUS": "0.25"}).default_cpu_mcpus == 250
    assert AgentConfig.from_env({"FN_DEFAULT_CPUS": "500m"}).default_cpu_mcpus == 500
    with pytest.raises(InvalidInputError, match="FN_DEFAULT_CPUS=.*invalid cpus"):
        AgentConfig.from_env({"FN_DEFAULT_CPUS": "lots"})


def test_a_cgroup_parent_puts_every_function_container_under_it() -> None:
    from drivers.base import ContainerTask
    from drivers.docker.config import container_options

    config = AgentConfig.from_env({"FN_DOCKER_CGROUP_PARENT": "/fnagent-a"}).docker_config()
    assert config.cgroup_parent == "/fnagent-a"
    task = ContainerTask(id="c1", image="fn/echo")
    assert container_options(task, config, "none")["HostConfig"]["CgroupParent"] == "/fnagent-a"
    unset = AgentConfig.from_env({}).docker_config()
    assert "CgroupParent" not in container_options(task, unset, "none")["HostConfig"]
