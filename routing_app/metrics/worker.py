"""The worker's own metrics, read at scrape time from the writer, the planning loop, the usage
windows and the worker's route cache. Faust's own sensor adds its metrics beside these (see
``routing_app.app.web.install_views``), on the same ``/metrics``.

Labels stay bounded: decisions by action and reason *kind* (never the free-text reason), partition
gauges by data topic and partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from routing_app.metrics.families import counter, counters_as_families, gauge
from routing_app.metrics.reasons import DecisionTally


class _Counted(Protocol):
    @property
    def counters(self) -> Mapping[str, float]: ...


class _Planning(Protocol):
    @property
    def counters(self) -> Mapping[str, float]: ...

    @property
    def last_loads(self) -> Mapping[tuple[str, int], Any]: ...  # PartitionLoad: records_per_s, lag

    @property
    def last_window(self) -> Any: ...  # CompleteWindow | None


class _Cache(Protocol):
    def stats(self) -> Any: ...  # CacheStats


# Planner counters that are levels, not counts: (metric suffix, scale, help).
_PLANNER_GAUGES: dict[str, tuple[str, float, str]] = {
    "last_cycle_ms": (
        "last_cycle_seconds",
        0.001,
        "How long the last planning cycle took (read the window, sample load, plan, write decisions)",
    ),
    "tenants_tracked": ("tenants_tracked", 1.0, "Tenants with a rate in the last planned window"),
}


class WorkerCollector:
    """A prometheus_client collector for one worker."""

    def __init__(
        self,
        writer: _Counted,
        planning: _Planning,
        usage: _Counted,
        cache: _Cache,
        tally: DecisionTally,
        *,
        is_planner: Callable[[], bool] | None = None,
        undecodable_routes: Callable[[], int] | None = None,
    ) -> None:
        self._writer = writer
        self._planning = planning
        self._usage = usage
        self._cache = cache
        self._tally = tally
        self._is_planner = is_planner
        self._undecodable_routes = undecodable_routes

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "routing_decisions",
            "Events appended by this worker's route writer (operator commands and planner "
            "changes), by action and reason kind",
            labels=["action", "reason_kind"],
        )
        for (action, kind), count in sorted(self._tally.snapshot().items()):
            decisions.add_metric([action, kind], count)
        yield decisions

        yield from counters_as_families(
            "routing_writer", self._writer.counters, "Route writer (since this worker started)"
        )
        if self._undecodable_routes is not None:
            yield counter(
                "routing_writer_undecodable_routes",
                "Records of the routes topic the writer's table could not decode",
                float(self._undecodable_routes()),
            )

        planner = self._planning.counters
        yield from counters_as_families(
            "routing_planner", planner, "Planning loop", skip=tuple(_PLANNER_GAUGES)
        )
        for key, (suffix, scale, doc) in _PLANNER_GAUGES.items():
            if key in planner:
                yield gauge(f"routing_planner_{suffix}", doc, float(planner[key]) * scale)
        window = self._planning.last_window
        if window is not None:
            yield gauge(
                "routing_planner_last_window_end_timestamp_seconds",
                "End of the last planned window (Unix time)",
                window.window_end / 1000.0,
            )

        yield from counters_as_families(
            "routing_usage", self._usage.counters, "Usage windows of the partitions this worker owns"
        )

        load = GaugeMetricFamily(
            "routing_partition_load_records_per_second",
            "Write rate of each data partition (broker end offsets) in the last planned window",
            labels=["topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "routing_partition_lag_records",
            "Largest consumer lag of the lag groups on each data partition, last planned window",
            labels=["topic", "partition"],
        )
        for (topic, partition), sample in sorted(self._planning.last_loads.items()):
            load.add_metric([topic, str(partition)], float(sample.records_per_s))
            lag.add_metric([topic, str(partition)], float(sample.lag))
        yield load
        yield lag

        stats = self._cache.stats()
        yield gauge(
            "routing_route_cache_routes", "Routes held by the worker's route cache", float(stats.routes)
        )
        yield gauge(
            "routing_route_cache_position",
            "Next offset of the routes topic the worker's cache will read",
            float(stats.position),
        )
        yield gauge(
            "routing_route_cache_ready",
            "1 once the worker's cache has read the routes topic to its end at start",
            1.0 if stats.ready else 0.0,
        )
        yield counter(
            "routing_route_cache_undecodable",
            "Routes-topic records the worker's cache skipped as undecodable",
            float(stats.undecodable),
        )
        if self._is_planner is not None:
            try:
                planning = self._is_planner()
            except Exception:  # no consumer yet (starting): say nothing rather than fail the scrape
                planning = None
            if planning is not None:
                yield gauge(
                    "routing_worker_planner",
                    "1 while this worker owns the control partition (writer and planner)",
                    1.0 if planning else 0.0,
                )
