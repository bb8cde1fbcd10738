"""The proof of ordering-safe moves (issue #4), on the real stack, kept in the suite.

Continuous numbered traffic from an idempotent RoutingProducer (restarted in the middle of a
drain), a second producer process killed with -9 just before its tenant moves, a consumer group
checking every number per tenant / per secondary key, and 31 live moves of every kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routing_app.bench.drain import run_drain
from routing_app.config import Settings

pytestmark = pytest.mark.integration


def test_strict_moves_lose_duplicate_and_reorder_nothing(stack_settings: Settings, tmp_path: Path) -> None:
    result = run_drain(stack_settings, rate=1000.0, workdir=tmp_path)
    print("worker log:", *tmp_path.glob("worker-*/*.log"))
    print("bench drain figures:", json.dumps(result))
    assert result["moves"] >= 20
    assert result["strict_moves"] >= 20
    assert {"isolate", "shard", "grow", "shrink", "merge-back", "move", "relaxed"} <= set(result["kinds"])
    assert result["received"] >= result["records"] > 10_000
    assert result["lost_strict"] == 0
    assert result["duplicated_strict"] == 0
    assert result["reordered_strict"] == 0
    assert result["unsent_at_close"] == 0
    # The producer killed with -9 just before its tenant moved: the move waited for it to
    # expire, and all it wrote was consumed before anything sent to the new partition.
    assert "crash" in result["kinds"]
    assert result["crashed_producer_records"] > 100
    assert result["crashed_before_moved"]
    # Every strict move ended by completing, not by its time limit.
    assert result["drains_timed_out"] == 0, result["timeouts"]
