"""Prometheus metrics of the server: calls, container starts, durations, pool and containers,
and the call records.

Counters and the histogram are updated on the call path (a few microseconds each); gauges of
hot containers and the prefork pool, the counter of dropped output, and the syslog forwarder's
counts of lines sent and dropped are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)

START_WORDS = {"warm": "hot"}
"""The agent calls a start that found an idle container "warm"; Fn's records say "hot"."""


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._read()
        hot = GaugeMetricFamily(
            "fnagent_hot_containers", "Function containers by state", labels=["state"]
        )
        for name, count in state.get("containers", {}).items():
            hot.add_metric([name], count)
        yield hot
        pool = GaugeMetricFamily(
            "fnagent_prefork_pool_slots", "Prefork pool slots by state", labels=["state"]
        )
        for name, count in state.get("pool", {}).items():
            pool.add_metric([name], count)
        yield pool
        records = CounterMetricFamily(
            "fnagent_call_records_dropped",
            "Call records never written: the recorder's buffer was full or the store failed",
        )
        records.add_metric([], state.get("call_records_dropped", 0))
        yield records
        dropped = CounterMetricFamily(
            "fnagent_output_dropped_bytes",
            "Bytes of container output between calls dropped over the log rate limit",
            labels=["fn_id"],
        )
        for fn_id, size in state.get("output_dropped_bytes", {}).items():
            dropped.add_metric([fn_id], size)
        yield dropped
        for key, what in (
            ("sent", "written to the app's syslog destinations"),
            ("dropped", "not sent to the app's syslog (buffer full, endpoint failing)"),
        ):
            lines = CounterMetricFamily(
                f"fnagent_syslog_{key}_lines", f"Lines of function output {what}", labels=["app_id"]
            )
            for app_id, count in state.get(f"syslog_{key}_lines", {}).items():
                lines.add_metric([app_id], count)
            yield lines
        yield GaugeMetricFamily(
            "fnagent_detached_queue_depth",
            "Detached calls queued in the store, waiting to run (read at each dispatch)",
            value=state.get("detached_queue_depth", 0),
        )


class Metrics:
    """The server's registry. ``state`` returns {"containers": {...}, "pool": {...},
    "output_dropped_bytes": {fn_id: bytes}, "syslog_sent_lines": {app_id: lines},
    "syslog_dropped_lines": {app_id: lines}, "detached_queue_depth": n,
    "call_records_dropped": count}."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "fnagent_calls",
            "Calls by function and HTTP status",
            ["fn_id", "status"],
            registry=self.registry,
        )
        self.starts = Counter(
            "fnagent_container_starts",
            "How calls found their container",
            ["kind"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "fnagent_call_duration_seconds",
            "Call duration as the agent saw it",
            ["fn_id"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.call_starts = Counter(
            "fnagent_calls_by_start",
            "Calls by how their container was found, in the call record's words",
            ["start"],
            registry=self.registry,
        )
        self.cold_start = Histogram(
            "fnagent_cold_start_seconds",
            "Launch time of the container a cold call waited for",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "fnagent_call_queue_wait_seconds",
            "Time calls waited for a container, launches and thaws not counted",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))
        self._children: dict[tuple[str, int, str | None], tuple[Any, Any, Any]] = {}
        self._start_children: dict[str, Any] = {}

    def totals(self) -> dict[str, Any]:
        """The counters summed over fns, for a client that samples them and takes the
        differences (the page at /ui draws its charts so): ``calls``, ``starts`` by kind
        (Fn's words: cold, thawed, hot), and ``durations``, the cumulative call-duration
        histogram as ``[[upper bound in seconds or "+Inf", calls at or under it], ...]``."""
        calls = sum(
            sample.value
            for family in self.calls.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        starts = {"cold": 0, "thawed": 0, "hot": 0}
        for family in self.starts.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    kind = START_WORDS.get(sample.labels["kind"], sample.labels["kind"])
                    starts[kind] = starts.get(kind, 0) + int(sample.value)
        buckets: dict[str, float] = {}
        for family in self.duration.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = sample.labels["le"]
                    buckets[bound] = buckets.get(bound, 0) + sample.value
        bounds = [*(str(float(b)) for b in DURATION_BUCKETS), "+Inf"]
        durations = [[float(b) if b != "+Inf" else b, int(buckets.get(b, 0))] for b in bounds]
        return {"calls": int(calls), "starts": starts, "durations": durations}

    def observe(self, fn_id: str, status: int, start: str | None, duration_s: float) -> None:
        key = (fn_id, status, start)
        children = self._children.get(key)
        if children is None:
            # labels() validates and looks up under a lock every time: once per key is enough.
            children = self._children[key] = (
                self.calls.labels(fn_id, str(status)),
                self.starts.labels(start) if start is not None else None,
                self.duration.labels(fn_id),
            )
        calls, starts, duration = children
        calls.inc()
        if starts is not None:
            starts.inc()
        duration.observe(duration_s)

    def observe_start(self, start: str | None, queued_s: float, start_s: float) -> None:
        """A call's start kind (cold, thawed, hot; None: it got no container) and its
        queue wait and launch or thaw time."""
        self.queue_wait.observe(queued_s)
        if start is None:
            return
        counter = self._start_children.get(start)
        if counter is None:
            counter = self._start_children[start] = self.call_starts.labels(start)
        counter.inc()
        if start == "cold":
            self.cold_start.observe(start_s)
