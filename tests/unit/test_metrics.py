"""The Prometheus collectors (worker and producer), the reason kinds, and the live page's data."""

from __future__ import annotations

import gc
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import routing_app.simulate.run as simulate_run
from routing_app.app.web import decision_json, heatmap, live_data, top_tenants
from routing_app.client.cache import CacheStats
from routing_app.metrics import DecisionTally, ProducerMetrics, WorkerCollector, reason_kind
from routing_app.metrics.reasons import REASON_KINDS, event_labels
from routing_app.planner import PartitionLoad, Plan, PlannerInput, plan
from routing_app.routes import Route
from routing_app.routes.events import ReassignmentEvent
from routing_app.simulate.traffic import TrafficConfig


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of the registry's text exposition."""
    text = generate_latest(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def event(
    tenant: str, action: str, reason: str, *, command: bool = False, to: tuple[int, ...] = (3,)
) -> ReassignmentEvent:
    return ReassignmentEvent(
        topic="orders",
        tenant=tenant,
        action=action,
        reason=reason,
        decided_at_ms=1_700_000_000_000,
        to_partitions=to,
        to_epoch=2,
        command_id="c1" if command else None,
    )


# -- reason kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "reason", "operator", "kind"),
    [
        ("pin", "operator pin (noisy since 10:02)", True, "operator"),
        ("unpin", "operator unpin", True, "operator"),
        ("evacuate", "operator evacuate partitions [3, 4]", True, "operator"),
        ("drain", "operator drain partitions [3, 4]", True, "operator"),  # before evacuate's name
        ("rejected", "pin rejected: partition 9 does not exist", True, "rejected"),
        (
            "isolate",
            "partition 4 at 900/s is 2.10x the mean 430/s; t sends 500/s: isolated on partition 7 (300/s)",
            False,
            "hot_partition",
        ),
        (
            "shard",
            "t sends 5.0k/s, 9.0x the mean partition load 550/s; a partition should carry at "
            "most 1.0k/s of it: sharded over 5 partitions (was 1)",
            False,
            "shard_grow",
        ),
        (
            "shard",
            "t now sends 900/s, less than 4 shards of 1.0k/s (minus 10% hysteresis): shrunk "
            "from 5 to 1 partitions",
            False,
            "shard_shrink",
        ),
        (
            "shard",
            "partition 2 at 3k/s is 3x the mean 1k/s and no tenant there fits elsewhere whole: "
            "t (2k/s) sharded over 3 partitions (was 1) so its shares (700/s) fit the room left",
            False,
            "shard_split",
        ),
        (
            "shard",
            "t sends 5/s, cool for 60 s, but its hash partition 3 (900/s) has no room: kept "
            "on partition 5 only (was 3 shards)",
            False,
            "cooled_kept_one_shard",
        ),
        (
            "rebalance",
            "partition 1 at 700/s is 1.40x the mean 500/s (tolerance 20%); moving t "
            "(150/s) to partition 6 (380/s)",
            False,
            "over_mean",
        ),
        (
            "rebalance",
            "making room for big (400/s) from hot partition 1 at 900/s is 1.8x the mean "
            "500/s: moving small (50/s) to partition 2 (300/s)",
            False,
            "making_room",
        ),
        (
            "merge",
            "t sends 2/s, below 10% of the mean 500/s for 300 s: back to hashing (partition 4, 480/s)",
            False,
            "cooled",
        ),
        ("drain", "partition 3 is being drained; t (20/s) moves to [5]", False, "partition_evacuated"),
        ("evacuate", "partition 3 is being evacuated; t (20/s) moves to [5]", False, "partition_evacuated"),
        ("drain", "partition 12 does not exist (0..11); t (20/s) moves to [5]", False, "partition_missing"),
        (
            "drain",
            "route names a partition twice: [2, 2]; t (20/s) moves to [2, 7]",
            False,
            "duplicate_partition",
        ),
        ("drain-complete", "operator pin (drained in 250 ms)", False, "drained"),
        (
            "drain-forced",
            "pin forced after 30000 ms without p1: order may break",
            False,
            "drain_timeout_forced",
        ),
        (
            "drain-abort",
            "pin aborted after 30000 ms waiting for p1: back to [2]",
            False,
            "drain_timeout_aborted",
        ),
        (
            "isolate",
            "t sends 1,400/s, more than a shard's 521/s, but it is one ordered stream (records "
            "without a secondary key) carries 1,400/s: not sharded (strict order keeps each "
            "stream on one partition); isolated on partition 8 (100/s) instead",
            False,
            "unsplittable",
        ),
        (
            "isolate",
            "t sends 9,000/s, more than a shard's 2,000/s, but its heaviest of 12 ordered "
            "streams carries 3,000/s: not sharded (strict order keeps each stream on one "
            "partition); isolated on partition 2 (10/s) instead",
            False,
            "unsplittable",
        ),
        ("isolate", "a future wording", False, "hot_partition"),
        ("shard", "a future wording", False, "other"),
    ],
)
def test_reason_kind(action: str, reason: str, operator: bool, kind: str) -> None:
    assert reason_kind(action, reason, operator=operator) == kind
    assert kind in REASON_KINDS


def test_labels_are_bounded_whatever_the_event_says() -> None:
    action, kind = event_labels(event("t", "something-new", "free text 12345"))
    assert (action, kind) == ("other", "other")
    assert event_labels(event("t", "pin", "because", command=True)) == ("pin", "operator")


def test_every_reason_the_real_planner_writes_has_a_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs the planner over simulated traffic: no reason it writes falls into "other". The
    simulated tenants carry key distributions (30% send key-only records): elephants whose
    heaviest stream fits a shard are sharded, the others isolated instead ("unsplittable")."""
    seen: dict[tuple[str, str], int] = {}
    unknown: list[str] = []

    def spy(inp: PlannerInput) -> Plan:
        result = plan(inp)
        for change in result.changes:
            kind = reason_kind(change.action.value, change.reason)
            seen[(change.action.value, kind)] = seen.get((change.action.value, kind), 0) + 1
            if kind == "other":
                unknown.append(change.reason)
        return result

    monkeypatch.setattr(simulate_run, "plan", spy)
    traffic = TrafficConfig(tenants=2000, flash_every_s=600, flash_duration_s=200)
    simulate_run.run_simulation(simulate_run.SimConfig(traffic=traffic, partitions=20, hours=0.5))
    assert not unknown, unknown[:5]
    assert {"shard_grow", "over_mean", "unsplittable"} <= {kind for _, kind in seen}, seen


# -- the worker collector ------------------------------------------------------------------------


@dataclass
class FakeCache:
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    undecodable: int = 0

    def stats(self) -> CacheStats:
        return CacheStats(
            routes=len(self.routes),
            position=17,
            end_offset_at_start=10,
            ready=True,
            undecodable=self.undecodable,
            stale_ignored=0,
            applied=len(self.routes),
        )

    def get(self, topic: str, tenant: str) -> Route | None:
        return self.routes.get((topic, tenant))

    def __len__(self) -> int:
        return len(self.routes)


def fake_window(
    totals: dict[tuple[str, str], tuple[int, int]], start: int = 1_000_000, end: int = 1_010_000
) -> Any:
    return SimpleNamespace(
        window_start=start, window_end=end, complete=True, tenant_totals=lambda: dict(totals)
    )


def worker_parts() -> tuple[Any, Any, Any, FakeCache, DecisionTally]:
    writer = SimpleNamespace(
        counters={
            "commands_applied": 2,
            "commands_rejected": 1,
            "control_undecodable": 0,
            "decisions": 5,
            "drains_started": 1,
        },
        decisions_by_action={},
        recent=deque(maxlen=200),
    )
    planning = SimpleNamespace(
        counters={
            "summaries": 12,
            "cycles": 4,
            "incomplete_cycles": 1,
            "last_cycle_ms": 37.5,
            "stale_decisions": 0,
            "planner_errors": 0,
            "tenants_tracked": 42,
        },
        last_loads={
            ("orders", 0): PartitionLoad("orders", 0, 120.5, 7),
            ("orders", 1): PartitionLoad("orders", 1, 3.0, 0),
        },
        last_window=fake_window({("orders", "acme"): (900, 9000)}),
        load_history=deque(),
    )
    usage = SimpleNamespace(counters={"usage_reports": 30, "windows_closed": 6, "usage_undecodable": 0})
    tally = DecisionTally()
    tally.observe(event("acme", "pin", "operator pin (x)", command=True))
    tally.observe(event("acme", "pin", "operator pin (y)", command=True))
    tally.observe(event("big", "shard", "big sends 5k/s ...: sharded over 3 partitions (was 1)"))
    return writer, planning, usage, FakeCache(undecodable=2), tally


def test_worker_collector_exposes_decisions_planner_usage_load_and_cache() -> None:
    writer, planning, usage, cache, tally = worker_parts()
    registry = CollectorRegistry()
    registry.register(
        WorkerCollector(
            writer, planning, usage, cache, tally, is_planner=lambda: True, undecodable_routes=lambda: 3
        )
    )
    found = samples(registry)

    assert found[("routing_decisions_total", (("action", "pin"), ("reason_kind", "operator")))] == 2
    assert found[("routing_decisions_total", (("action", "shard"), ("reason_kind", "shard_grow")))] == 1
    assert found[("routing_writer_decisions_total", ())] == 5
    assert found[("routing_writer_commands_rejected_total", ())] == 1
    assert found[("routing_writer_drains_started_total", ())] == 1  # a key added later shows up
    assert found[("routing_writer_undecodable_routes_total", ())] == 3
    assert found[("routing_planner_cycles_total", ())] == 4
    assert found[("routing_planner_last_cycle_seconds", ())] == pytest.approx(0.0375)
    assert found[("routing_planner_tenants_tracked", ())] == 42
    assert ("routing_planner_last_cycle_ms_total", ()) not in found
    assert found[("routing_planner_last_window_end_timestamp_seconds", ())] == 1010.0
    assert found[("routing_usage_windows_closed_total", ())] == 6
    assert (
        found[("routing_partition_load_records_per_second", (("partition", "0"), ("topic", "orders")))]
        == 120.5
    )
    assert found[("routing_partition_lag_records", (("partition", "0"), ("topic", "orders")))] == 7
    assert found[("routing_route_cache_undecodable_total", ())] == 2
    assert found[("routing_route_cache_position", ())] == 17
    assert found[("routing_worker_planner", ())] == 1

    text = generate_latest(registry).decode()
    assert "# TYPE routing_decisions_total counter" in text
    assert "operator pin (x)" not in text  # free-text reasons never become labels


def test_worker_collector_survives_a_worker_that_is_still_starting() -> None:
    writer, planning, usage, cache, tally = worker_parts()
    planning.last_window = None
    planning.last_loads = {}

    def no_consumer_yet() -> bool:
        raise RuntimeError("no consumer")

    registry = CollectorRegistry()
    registry.register(WorkerCollector(writer, planning, usage, cache, tally, is_planner=no_consumer_yet))
    found = samples(registry)
    assert ("routing_worker_planner", ()) not in found
    assert found[("routing_planner_cycles_total", ())] == 4


def test_the_writer_tells_the_tally_of_each_event_once_and_keeps_a_bounded_log() -> None:
    import asyncio

    from routing_app.app.writer import RouteWriter
    from routing_app.app.writer_events import RECENT_EVENTS
    from routing_app.app.writer_tables import WriterTables
    from routing_app.codec import registry_client
    from routing_app.config import Settings
    from routing_app.control import Decision

    class Topic:
        async def send(self, **_: object) -> None:
            return None

    tables = WriterTables(routes={}, epochs={}, history={}, frozen={}, evacuated={}, drains={})
    writer = RouteWriter(Settings(), registry_client("mock://metrics-test"), tables, Topic(), "w")  # type: ignore[arg-type]
    tally = DecisionTally()
    writer.recent.append(event("old", "pin", "operator pin", command=True))
    tally.observe_all(writer.recent)  # what install_views does
    writer.listeners.append(tally.observe)
    for i in range(3):
        asyncio.run(writer.apply(Decision(event(f"t{i}", "merge", "t sends 1/s, below 10% of the mean"))))
    assert [e.tenant for e in writer.recent] == ["old", "t0", "t1", "t2"]
    assert writer.recent.maxlen == RECENT_EVENTS
    assert tally.snapshot() == {("pin", "operator"): 1, ("merge", "cooled"): 3}


# -- the producer collector ----------------------------------------------------------------------


class FakeProducer:
    def __init__(self, producer_id: str, counters: dict[str, int], cache: FakeCache | None) -> None:
        self.producer_id = producer_id
        self.counters = counters
        self.cache = cache


class FixedWatermark:
    def __init__(self, value: int | None) -> None:
        self.value = value

    def get(self) -> int | None:
        return self.value

    def close(self) -> None:
        pass


PRODUCER_COUNTERS = {
    "explicit": 1,
    "routed": 20,
    "sharded": 5,
    "hashed": 300,
    "unkeyed": 2,
    "delivery_failed": 1,
    "route_out_of_range": 0,
    "usage_reports": 9,
    "usage_deferred": 0,
    "held": 4,
    "held_total": 11,
    "draining_tenants": 1,
    "drain_acks": 2,
}


def test_producer_metrics_records_by_path_counters_cache_and_lag() -> None:
    producer = FakeProducer("p-1", dict(PRODUCER_COUNTERS), FakeCache(undecodable=3))
    metrics = ProducerMetrics()
    metrics.add(producer, watermark=FixedWatermark(25))
    registry = CollectorRegistry()
    registry.register(metrics)
    found = samples(registry)

    for path in ("explicit", "routed", "sharded", "hashed", "unkeyed"):
        key = ("routing_producer_records_total", (("path", path), ("producer", "p-1")))
        assert found[key] == PRODUCER_COUNTERS[path]
    me = (("producer", "p-1"),)
    assert found[("routing_producer_drain_acks_total", me)] == 2  # any key appears by itself
    assert found[("routing_producer_held_records", me)] == 4  # a level: a gauge
    assert found[("routing_producer_held_total", me)] == 11
    assert found[("routing_producer_draining_tenants", me)] == 1
    assert found[("routing_producer_delivery_failed_total", me)] == 1
    assert found[("routing_producer_usage_reports_total", me)] == 9
    assert found[("routing_producer_route_cache_routes", me)] == 0
    assert found[("routing_producer_route_cache_undecodable_total", me)] == 3
    assert found[("routing_producer_route_cache_ready", me)] == 1
    assert found[("routing_producer_routes_end_offset", me)] == 25
    assert found[("routing_producer_route_cache_lag_records", me)] == 25 - 17
    text = generate_latest(registry).decode()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families)), families  # no family twice (gauge vs counter)


def test_producer_metrics_several_producers_one_family_each_and_dropped_ones_leave() -> None:
    metrics = ProducerMetrics()
    first = FakeProducer("a", {"hashed": 1}, FakeCache())
    second = FakeProducer("b", {"hashed": 2}, None)  # cache disabled
    metrics.add(first, watermark=FixedWatermark(None))  # broker not answering: no lag
    metrics.add(second, name="billing")
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE routing_producer_records_total counter") == 1
    found = samples(registry)
    assert found[("routing_producer_records_total", (("path", "hashed"), ("producer", "a")))] == 1
    assert found[("routing_producer_records_total", (("path", "hashed"), ("producer", "billing")))] == 2
    assert ("routing_producer_route_cache_lag_records", (("producer", "a"),)) not in found
    assert ("routing_producer_route_cache_routes", (("producer", "billing"),)) not in found

    del first
    gc.collect()
    assert all(dict(labels).get("producer") != "a" for _, labels in samples(registry))
    metrics.remove(second)
    assert not any(name.startswith("routing_producer") for name, _ in samples(registry))


def test_producer_metrics_gauge_keys_are_levels() -> None:
    metrics = ProducerMetrics(gauges={"holding": ("holding", "records held now")})
    producer = FakeProducer("p", {"holding": 7, "held": 9}, None)
    metrics.add(producer)  # held weakly: the test keeps it alive
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert "# TYPE routing_producer_holding gauge" in text
    assert 'routing_producer_holding{producer="p"} 7.0' in text
    assert 'routing_producer_held_total{producer="p"} 9.0' in text


# -- the live page's data ------------------------------------------------------------------------


def test_heatmap_picks_the_busiest_topic_or_the_one_asked_for() -> None:
    history = [
        (
            1000,
            {
                ("a", 0): PartitionLoad("a", 0, 10.0),
                ("a", 1): PartitionLoad("a", 1, 30.0, 5),
                ("b", 0): PartitionLoad("b", 0, 1.0),
            },
        ),
        (2000, {("a", 0): PartitionLoad("a", 0, 12.0)}),
        (3000, {("b", 0): PartitionLoad("b", 0, 2.0)}),
    ]
    busiest = heatmap(history)
    assert busiest["topic"] == "a" and busiest["topics"] == ["a", "b"]
    assert busiest["partitions"] == [0, 1]
    assert busiest["window_ends_ms"] == [1000, 2000]
    assert busiest["rates"] == [[10.0, 30.0], [12.0, None]]
    assert busiest["lags"] == [[0, 5], [0, None]]
    asked = heatmap(history, "b")
    assert asked["window_ends_ms"] == [1000, 3000] and asked["rates"] == [[1.0], [2.0]]
    assert heatmap([])["topic"] is None
    assert heatmap(history, columns=1)["topic"] == "b"  # only the newest window counts


def test_top_tenants_rates_shares_and_routes() -> None:
    cache = FakeCache(
        routes={("orders", "big"): Route(topic="orders", tenant="big", partitions=(1, 2), epoch=1)}
    )
    window = fake_window(
        {("orders", "big"): (6000, 60000), ("orders", "small"): (2000, 1000), ("other", "x"): (10, 10)}
    )
    top = top_tenants(window, cast(Any, cache), limit=2)
    assert [t["tenant"] for t in top["tenants"]] == ["big", "small"]
    assert top["tenants"][0]["records_per_s"] == 600.0
    assert top["tenants"][0]["share"] == 0.75
    assert top["tenants"][0]["partitions"] == [1, 2]
    assert top["tenants"][1]["partitions"] is None
    assert top_tenants(None, cast(Any, cache))["tenants"] == []


def test_live_data_lists_decisions_newest_first_with_their_reasons() -> None:
    writer, planning, usage, cache, _ = worker_parts()
    writer.recent.append(event("first", "pin", "operator pin (a)", command=True))
    writer.recent.append(event("second", "isolate", "partition 4 is hot; isolated on partition 7"))
    data = live_data(
        cast(Any, writer),
        cast(Any, planning),
        cast(Any, usage),
        cast(Any, cache),
        worker_id="w1",
        planner=True,
    )
    assert [d["tenant"] for d in data["decisions"]] == ["second", "first"]
    assert data["decisions"][1]["reason"] == "operator pin (a)"
    assert data["decisions"][1]["by"] == "operator"
    assert data["decisions"][0]["reason_kind"] == "hot_partition"
    assert data["stats"]["cycles"] == 4 and data["stats"]["windows_closed"] == 6
    assert data["top_tenants"]["tenants"][0]["tenant"] == "acme"
    assert decision_json(event("t", "rejected", "pin rejected: x", command=True))["applied"] is False
