"""The worker's web server: JSON views, ``/metrics`` (Faust's sensor and ours) and the live page.

- ``GET /routes/``, ``GET /routes/{topic}/{tenant}``, ``GET /writer/stats``: JSON.
- ``GET /metrics``: Prometheus text format, Faust's own sensor (``faust_*``) and the worker's
  metrics (``routing_*``, see ``routing_app.metrics.worker``) from one registry.
- ``GET /ui/``: the live page (one self-contained HTML file, no network); it polls
  ``GET /ui/data`` (``?topic=`` picks the heat map's data topic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from routing_app.app.planning import PlanningLoop
from routing_app.app.usage import UsageWindows
from routing_app.app.writer import RouteWriter
from routing_app.client.cache import RouteCache
from routing_app.metrics import DecisionTally, WorkerCollector, event_labels
from routing_app.planner import PartitionLoad
from routing_app.routes.events import ReassignmentEvent

HEATMAP_COLUMNS = 60
TOP_TENANTS = 20
RECENT_DECISIONS = 100


def install_views(
    app: faust.App,
    writer: RouteWriter,
    planning: PlanningLoop,
    usage: UsageWindows,
    route_values: Any,
    worker_id: str,
) -> CollectorRegistry:
    """Adds the web views and the metrics to ``app``; returns the metrics registry."""
    cache: RouteCache = app.route_cache  # type: ignore[attr-defined]

    def is_planner() -> bool:
        return bool(app.is_writer())  # type: ignore[attr-defined]

    tally = DecisionTally()
    tally.observe_all(writer.recent)
    writer.listeners.append(tally.observe)

    # One registry per app (create_app may run more than once in a process), holding Faust's
    # sensor, ours and the process's own (CPU, memory, GC).
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    registry.register(
        WorkerCollector(
            writer,
            planning,
            usage,
            cache,
            tally,
            is_planner=is_planner,
            undecodable_routes=lambda: int(route_values.undecodable),
        )
    )
    setup_prometheus_sensors(app, "/metrics", registry, name_prefix="faust")

    page = resources.files("routing_app.app").joinpath("live_page.html").read_text("utf-8")

    @app.page("/routes/")
    class RoutesView(View):
        async def get(self, request: Request) -> Response:
            topic = request.query.get("topic")
            items = [r.to_json() for r in cache if topic in (None, r.topic)]
            items.sort(key=lambda r: r["key"])
            return self.json({"routes": items, "count": len(items), "cache": cache.stats().__dict__})

    @app.page("/routes/{topic}/{tenant:.+}")  # tenants may contain "/"
    class RouteView(View):
        async def get(self, request: Request, topic: str, tenant: str) -> Response:
            route = cache.get(topic, tenant)
            if route is None:
                return self.json(
                    {
                        "topic": topic,
                        "tenant": tenant,
                        "route": None,
                        "placement": "default hashing (murmur2)",
                    },
                    status=404,
                )
            return self.json({"topic": topic, "tenant": tenant, "route": route.to_json()})

    @app.page("/writer/stats")
    class WriterStatsView(View):
        async def get(self, request: Request) -> Response:
            stats: dict[str, Any] = dict(writer.counters)
            stats["decisions_by_action"] = dict(writer.decisions_by_action)
            stats["undecodable_routes_in_table"] = route_values.undecodable
            stats["planner"] = dict(planning.counters)
            stats["usage"] = dict(usage.counters)
            stats["worker_id"] = worker_id
            stats["planning"] = is_planner()
            # Producers strict moves wait for (usage reports within producer_expiry_ms).
            stats["live_producers"] = sorted(writer.live_producers())
            stats["time_ms"] = int(time.time() * 1000)
            return self.json(stats)

    @app.page("/ui/")
    class LivePageView(View):
        async def get(self, request: Request) -> Response:
            return self.html(page, headers={"Cache-Control": "no-store"})

    @app.page("/ui")
    class LivePageRedirect(View):
        async def get(self, request: Request) -> Response:
            query = urlencode(list(request.query.items()))
            target = "/ui/" + (f"?{query}" if query else "")
            return self.text("", status=302, headers={"Location": target})

    @app.page("/ui/data")
    class LiveDataView(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                live_data(
                    writer,
                    planning,
                    usage,
                    cache,
                    worker_id=worker_id,
                    planner=_safely(is_planner),
                    topic=request.query.get("topic"),
                )
            )

    return registry


def _safely(check: Callable[[], bool]) -> bool | None:
    try:
        return check()
    except Exception:  # no consumer yet: the worker is still starting
        return None


def live_data(
    writer: RouteWriter,
    planning: PlanningLoop,
    usage: UsageWindows,
    cache: RouteCache,
    *,
    worker_id: str,
    planner: bool | None,
    topic: str | None = None,
) -> dict[str, Any]:
    """Everything the live page shows, as JSON."""
    return {
        "worker_id": worker_id,
        "planner": planner,
        "time_ms": int(time.time() * 1000),
        "stats": {
            "decisions": writer.counters.get("decisions", 0),
            "commands_applied": writer.counters.get("commands_applied", 0),
            "commands_rejected": writer.counters.get("commands_rejected", 0),
            "cycles": planning.counters.get("cycles", 0),
            "last_cycle_ms": round(float(planning.counters.get("last_cycle_ms", 0.0)), 1),
            "tenants_tracked": planning.counters.get("tenants_tracked", 0),
            "windows_closed": usage.counters.get("windows_closed", 0),
            "routes": len(cache),
        },
        "heatmap": heatmap(planning.load_history, topic),
        "top_tenants": top_tenants(planning.last_window, cache),
        "decisions": [decision_json(e) for e in reversed(list(writer.recent)[-RECENT_DECISIONS:])],
    }


def heatmap(
    history: Iterable[tuple[int, Mapping[tuple[str, int], PartitionLoad]]],
    topic: str | None = None,
    columns: int = HEATMAP_COLUMNS,
) -> dict[str, Any]:
    """Partition write rates over the last ``columns`` planned windows of one data topic.

    Without ``topic`` (or one never sampled), the topic with the most traffic is shown.
    """
    entries = list(history)[-columns:]
    totals: dict[str, float] = {}
    for _, loads in entries:
        for (t, _), load in loads.items():
            totals[t] = totals.get(t, 0.0) + load.records_per_s
    topics = sorted(totals)
    if topic not in totals:
        topic = min(totals, key=lambda t: (-totals[t], t)) if totals else None
    partitions = sorted({p for _, loads in entries for (t, p) in loads if t == topic})
    shown = [(end, loads) for end, loads in entries if any(t == topic for t, _ in loads)]
    rates: list[list[float | None]] = []
    lags: list[list[int | None]] = []
    for _, loads in shown:
        cells = [loads.get((topic, p)) for p in partitions] if topic is not None else []
        rates.append([None if c is None else round(c.records_per_s, 2) for c in cells])
        lags.append([None if c is None else int(c.lag) for c in cells])
    return {
        "topic": topic,
        "topics": topics,
        "partitions": partitions,
        "window_ends_ms": [end for end, _ in shown],
        "rates": rates,
        "lags": lags,
    }


def top_tenants(window: Any, cache: RouteCache, limit: int = TOP_TENANTS) -> dict[str, Any]:
    """The busiest tenants of the last planned window, with their share and current route."""
    if window is None:
        return {"window_start_ms": None, "window_end_ms": None, "tenants": []}
    seconds = max((window.window_end - window.window_start) / 1000.0, 1e-3)
    totals: dict[tuple[str, str], tuple[int, int]] = window.tenant_totals()
    by_topic: dict[str, int] = {}
    for (topic, _), (records, _) in totals.items():
        by_topic[topic] = by_topic.get(topic, 0) + records
    ranked = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
    tenants = []
    for (topic, tenant), (records, nbytes) in ranked:
        route = cache.get(topic, tenant)
        tenants.append(
            {
                "topic": topic,
                "tenant": tenant,
                "records": records,
                "records_per_s": round(records / seconds, 2),
                "bytes_per_s": round(nbytes / seconds, 1),
                "share": round(records / by_topic[topic], 4) if by_topic.get(topic) else 0.0,
                "partitions": list(route.partitions) if route is not None else None,
            }
        )
    return {
        "window_start_ms": window.window_start,
        "window_end_ms": window.window_end,
        "complete": bool(window.complete),
        "tenants": tenants,
    }


def decision_json(event: ReassignmentEvent) -> dict[str, Any]:
    _, kind = event_labels(event)
    return {
        "decided_at_ms": event.decided_at_ms,
        "topic": event.topic,
        "tenant": event.tenant,
        "action": event.action,
        "reason": event.reason,
        "reason_kind": kind,
        "from_partitions": list(event.from_partitions),
        "to_partitions": list(event.to_partitions),
        "from_epoch": event.from_epoch,
        "to_epoch": event.to_epoch,
        "status": event.status,
        "by": "operator" if event.command_id is not None else "planner",
        "applied": event.applied,
    }
