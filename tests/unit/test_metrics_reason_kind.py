"""Metric labels of planner decisions come from the planner's ReasonKind, not from its words."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing_app.metrics.reasons import (
    REASON_KINDS,
    DecisionTally,
    change_labels,
    event_labels,
    reason_kind,
)
from routing_app.planner import PlannedChange, ReasonKind
from routing_app.routes.events import ReassignmentEvent

REWORDED = "a sentence nobody has written yet, 1,234/s"


def planned(kind: ReasonKind, reason: str = REWORDED) -> PlannedChange:
    return PlannedChange("orders", "acme", kind.action, (3,), reason, kind=kind)


def event_of(change: PlannedChange) -> ReassignmentEvent:
    return ReassignmentEvent(topic=change.topic, tenant=change.tenant,
                             action=change.action.value, reason=change.reason,
                             decided_at_ms=1_700_000_000_000, to_partitions=(3,), to_epoch=2)


@pytest.mark.parametrize("kind", list(ReasonKind), ids=str)
def test_rewording_a_sentence_does_not_change_the_label(kind: ReasonKind) -> None:
    change = planned(kind)
    assert change_labels(change) == (kind.action.value, kind.value)
    assert reason_kind(change.action.value, change.reason, kind=kind) == kind.value
    assert event_labels(event_of(change), kind) == (kind.action.value, kind.value)


def test_the_tally_counts_by_kind_whatever_the_words() -> None:
    tally = DecisionTally()
    grow, split = planned(ReasonKind.SHARD_GROW), planned(ReasonKind.SHARD_SPLIT)
    tally.observe(event_of(grow), grow.kind)
    tally.observe(event_of(replace(grow, reason="grown, in other words")), grow.kind)
    tally.observe(event_of(split), split.kind)
    assert tally.snapshot() == {("shard", "shard_grow"): 2, ("shard", "shard_split"): 1}


def test_drain_ends_and_rejections_keep_their_own_kinds() -> None:
    # The second write of a strict move keeps the move's reason; its label is how it ended.
    assert reason_kind("drain-complete", REWORDED, kind=ReasonKind.HOT_PARTITION) == "drained"
    assert reason_kind("rejected", REWORDED, kind=ReasonKind.COOLED) == "rejected"


def test_the_label_set_is_the_one_dashboards_know() -> None:
    assert {kind.value for kind in ReasonKind} <= REASON_KINDS
    assert {
        "operator", "rejected", "hot_partition", "shard_grow", "shard_shrink", "shard_split",
        "cooled_kept_one_shard", "cooled", "unsplittable", "over_mean", "making_room",
        "partition_missing", "partition_drained", "duplicate_partition", "drained",
        "drain_timeout_forced", "drain_timeout_aborted", "other"} == REASON_KINDS


def test_an_event_without_its_kind_is_still_read_by_its_words() -> None:
    """LEGACY path: events read back from the events topic carry no kind."""
    sentence = "big sends 5,000/s ...: sharded over 3 partitions (was 1)"
    assert event_labels(event_of(planned(ReasonKind.SHARD_GROW, sentence))) == ("shard",
                                                                                  "shard_grow")
    assert event_labels(event_of(planned(ReasonKind.SHARD_GROW))) == ("shard", "other")
