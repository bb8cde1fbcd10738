"""The benchmarks run end to end at a tiny size; only their shape is checked, never their speed."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from routing_app.bench.producer import run_producer
from routing_app.bench.propagation import run_propagation
from routing_app.bench.rebuild import run_rebuild
from routing_app.config import Settings

pytestmark = pytest.mark.integration


def _positive_figures(result: dict[str, Any], keys: list[str]) -> None:
    json.loads(json.dumps(result))  # one JSON line is printable
    for key in keys:
        assert key in result, f"{key} missing from {sorted(result)}"
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)


def test_producer_bench(stack_settings: Settings) -> None:
    result = run_producer(stack_settings, records=2_000, rounds=1, tenants=100, warmup_records=100)
    _positive_figures(
        result,
        [
            "ratio_vs_raw",
            "ratio_vs_aiokafka",
            "routing_rps",
            "raw_rps",
            "aiokafka_rps",
            "records",
            "tenants",
            "rounds",
            "paired_ratio_median",
            "cpu_ratio_vs_raw",
            "routing_cpu_us_per_record",
            "raw_cpu_us_per_record",
        ],
    )
    assert (result["records"], result["tenants"], result["rounds"]) == (2_000, 100, 1)


def test_rebuild_bench(stack_settings: Settings) -> None:
    result = run_rebuild(stack_settings, routes=1_000, profile=True, timeout=120)
    _positive_figures(
        result, ["routes", "seconds", "rss_mb", "routes_per_s", "consume_only_seconds", "peak_rss_mb"]
    )
    assert result["routes"] == 1_000
    assert result["cache_routes"] == 1_000
    assert set(result["us_per_route"]) >= {
        "consume",
        "avro_decode",
        "route_construction",
        "dict_insert_and_bookkeeping",
    }
    assert "cumulative" in result["cprofile"] or "tottime" in result["cprofile"]


def test_propagation_bench(stack_settings: Settings) -> None:
    result = run_propagation(stack_settings, producers=2, changes=20, tenants=50, max_gap_ms=20.0, seed=1)
    _positive_figures(result, ["p50_ms", "p99_ms", "max_ms", "changes", "producers"])
    assert (result["changes"], result["producers"]) == (20, 2)
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_aggregate_bench(stack_settings: Settings) -> None:
    """Small, but through real workers: every report is aggregated exactly once (the bench
    raises otherwise), and the two workers split the usage partitions between them."""
    from routing_app.bench.aggregate import run_aggregate

    result = run_aggregate(stack_settings, reports=20_000, tenants=600, top_k=200, rounds=1)
    _positive_figures(
        result, ["events_per_s_1w", "events_per_s_2w", "scale_2w", "records_per_s_1w", "reports_per_record"]
    )
    assert result["reports"] == 20_000
    assert sum(result["worker_reports_2w"]) == 20_000
    assert all(share > 0 for share in result["worker_reports_2w"]), result["worker_reports_2w"]
    assert sorted(result["worker_planning_2w"]) == [False, True]
