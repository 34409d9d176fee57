"""The metrics gauges read from the agent, the pool and the syslog forwarder."""

from types import SimpleNamespace

from prometheus_client import generate_latest

from drivers.docker.pool import PoolUsage
from fnagent.server.metrics import Metrics
from fnagent.server.serve import _gauges


def test_gauges_count_every_container_once_and_report_the_pool() -> None:
    agent = SimpleNamespace(
        containers=lambda: {"running": 2, "frozen": 1, "starting": 0},
        output_dropped_bytes={"f1": 4096},
    )
    pool = SimpleNamespace(usage=lambda: PoolUsage(in_use=1, free=3, starting=2))
    dispatcher = SimpleNamespace(depth=7)
    assert _gauges(agent, SimpleNamespace(pool=pool), dispatcher) == {
        "containers": {"running": 2, "frozen": 1, "starting": 0},
        "pool": {"in_use": 1, "free": 3, "starting": 2},
        "output_dropped_bytes": {"f1": 4096},
        "detached_queue_depth": 7,
        "call_records_dropped": 0,
    }
    assert _gauges(agent, SimpleNamespace(pool=None))["pool"] == {}


def test_syslog_lines_sent_and_dropped_by_app() -> None:
    agent = SimpleNamespace(containers=dict, output_dropped_bytes={})
    syslog = SimpleNamespace(sent={"a1": 10}, dropped={"a1": 3})
    state = _gauges(agent, SimpleNamespace(pool=None), None, syslog)
    assert (state["syslog_sent_lines"], state["syslog_dropped_lines"]) == ({"a1": 10}, {"a1": 3})
    text = generate_latest(Metrics(lambda: state).registry).decode()
    assert 'fnagent_syslog_sent_lines_total{app_id="a1"} 10.0' in text
    assert 'fnagent_syslog_dropped_lines_total{app_id="a1"} 3.0' in text


def test_the_detached_queue_depth_is_a_metric() -> None:
    metrics = Metrics(lambda: {"detached_queue_depth": 5})
    assert b"fnagent_detached_queue_depth 5.0" in generate_latest(metrics.registry)


def test_gauges_report_the_call_records_dropped() -> None:
    agent = SimpleNamespace(containers=lambda: {}, output_dropped_bytes={})
    recorder = SimpleNamespace(dropped=7)
    assert (
        _gauges(agent, SimpleNamespace(pool=None), recorder=recorder)["call_records_dropped"] == 7
    )
