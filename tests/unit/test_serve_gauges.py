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
    assert _gauges(agent, SimpleNamespace(pool=pool)) == {
        "containers": {"running": 2, "frozen": 1, "starting": 0},
        "pool": {"in_use": 1, "free": 3, "starting": 2},
        "output_dropped_bytes": {"f1": 4096},
        "call_records_dropped": 0,
    }
    assert _gauges(agent, SimpleNamespace(pool=None))["pool"] == {}


def test_gauges_report_the_call_records_dropped() -> None:
    agent = SimpleNamespace(containers=lambda: {}, output_dropped_bytes={})
    recorder = SimpleNamespace(dropped=7)
    assert _gauges(agent, SimpleNamespace(pool=None), recorder)["call_records_dropped"] == 7
