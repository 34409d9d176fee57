"""The metrics gauges read from the agent and the pool."""

from types import SimpleNamespace

from drivers.docker.pool import PoolUsage
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
    }
    assert _gauges(agent, SimpleNamespace(pool=None), None)["pool"] == {}


def test_the_detached_queue_depth_is_a_metric() -> None:
    from prometheus_client import generate_latest

    from fnagent.server.metrics import Metrics

    metrics = Metrics(lambda: {"detached_queue_depth": 5})
    assert b"fnagent_detached_queue_depth 5.0" in generate_latest(metrics.registry)
