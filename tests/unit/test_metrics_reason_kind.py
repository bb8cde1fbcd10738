"""Metric labels of decisions come from the kind the event carries, not from its words."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing_app.metrics.reasons import (
    REASON_KINDS,
    DecisionTally,
    action_label,
    change_labels,
    event_labels,
    reason_kind,
)
from routing_app.planner import PlannedChange, ReasonKind
from routing_app.routes.events import ReassignmentEvent, WriterReasonKind

REWORDED = "a sentence nobody has written yet, 1,234/s"


def planned(kind: ReasonKind, reason: str = REWORDED) -> PlannedChange:
    return PlannedChange("orders", "acme", kind.action, (3,), reason, kind=kind)


def event_of(change: PlannedChange, *, with_kind: bool = True) -> ReassignmentEvent:
    """The change's event as the writer appends it (``with_kind``) or as events written before
    the reason_kind field read back (None)."""
    return ReassignmentEvent(
        topic=change.topic,
        tenant=change.tenant,
        action=change.action.value,
        reason=change.reason,
        decided_at_ms=1_700_000_000_000,
        to_partitions=(3,),
        to_epoch=2,
        reason_kind=change.kind.value if with_kind else None,
    )


@pytest.mark.parametrize("kind", list(ReasonKind), ids=str)
def test_rewording_a_sentence_does_not_change_the_label(kind: ReasonKind) -> None:
    change = planned(kind)
    assert change_labels(change) == (kind.action.value, kind.value)
    assert reason_kind(change.action.value, change.reason, kind=kind) == kind.value
    assert event_labels(event_of(change)) == (kind.action.value, kind.value)


def test_the_tally_counts_by_kind_whatever_the_words() -> None:
    tally = DecisionTally()
    grow, split = planned(ReasonKind.SHARD_GROW), planned(ReasonKind.SHARD_SPLIT)
    tally.observe(event_of(grow))
    tally.observe(event_of(replace(grow, reason="grown, in other words")))
    tally.observe(event_of(split))
    assert tally.snapshot() == {("shard", "shard_grow"): 2, ("shard", "shard_split"): 1}


def test_the_carried_kind_wins_over_what_the_words_say() -> None:
    # Words that the legacy reader takes for a shard split; the event says it grew.
    sentence = "partition 2 at 3k/s is 3x the mean and no tenant there fits elsewhere whole"
    change = planned(ReasonKind.SHARD_GROW, sentence)
    assert event_labels(event_of(change, with_kind=False)) == ("shard", "shard_split")
    assert event_labels(event_of(change)) == ("shard", "shard_grow")
    # An operator's event whose words look like a planner's: its kind says operator.
    pin = ReassignmentEvent(
        topic="orders",
        tenant="acme",
        action="isolate",
        reason=sentence,
        decided_at_ms=1,
        reason_kind=WriterReasonKind.OPERATOR.value,
    )
    assert event_labels(pin) == ("isolate", "operator")


def test_a_carried_kind_outside_the_label_set_counts_as_other() -> None:
    """A newer writer's kind this reader does not know: labels stay bounded."""
    event = replace(event_of(planned(ReasonKind.COOLED)), reason_kind="made_up_12345")
    assert event_labels(event) == ("merge", "other")


def test_drain_ends_and_rejections_keep_their_own_kinds() -> None:
    # The second write of a strict move keeps the move's reason; its label is how it ended.
    assert reason_kind("drain-complete", REWORDED, kind=ReasonKind.HOT_PARTITION) == "drained"
    assert reason_kind("rejected", REWORDED, kind=ReasonKind.COOLED) == "rejected"
    assert reason_kind("repair", REWORDED) == "repair"


def test_the_label_set_is_the_one_dashboards_know() -> None:
    assert {kind.value for kind in ReasonKind} <= REASON_KINDS
    assert {kind.value for kind in WriterReasonKind} <= REASON_KINDS
    assert {
        "operator",
        "rejected",
        "repair",
        "hot_partition",
        "shard_grow",
        "shard_shrink",
        "shard_split",
        "cooled_kept_one_shard",
        "cooled",
        "unsplittable",
        "over_mean",
        "making_room",
        "fill",
        "rebase_home",
        "base_dropped",
        "partition_missing",
        "partition_evacuated",
        "duplicate_partition",
        "drained",
        "drain_timeout_forced",
        "drain_timeout_aborted",
        "other",
    } == REASON_KINDS


def test_events_of_the_old_drain_action_count_as_evacuate() -> None:
    """Before "drain" meant only the ordering pause, the operator's command and the planner
    step that carries it out were both "drain"; such events count under "evacuate"."""
    assert action_label("drain") == "evacuate"
    assert action_label("evacuate") == "evacuate"
    assert action_label("drain-complete") == "drain-complete"
    old = ReassignmentEvent(
        topic="orders",
        tenant="acme",
        action="drain",
        decided_at_ms=1,
        reason="partition 3 is being drained; acme (20/s) moves to [5]",
    )
    assert event_labels(old) == ("evacuate", "partition_evacuated")
    command = replace(old, tenant="", reason="operator drain partitions [3]", command_id="c1")
    assert event_labels(command) == ("evacuate", "operator")


def test_an_event_without_its_kind_is_still_read_by_its_words() -> None:
    """LEGACY path: events written before events carried their kind."""
    sentence = "big sends 5,000/s ...: sharded over 3 partitions (was 1)"
    old = event_of(planned(ReasonKind.SHARD_GROW, sentence), with_kind=False)
    assert event_labels(old) == ("shard", "shard_grow")
    assert event_labels(event_of(planned(ReasonKind.SHARD_GROW), with_kind=False)) == ("shard", "other")


def test_the_writers_repairs_carry_their_own_kind() -> None:
    from routing_app.app.writer_repair import repair_event
    from routing_app.routes.model import Route

    forged, mine = Route("orders", "acme", (6,), 9), Route("orders", "acme", (2,), 3)
    event = repair_event(forged, mine, forged, "w-1", 1_700_000_000_000)
    assert event.reason_kind == "repair"
    assert event_labels(event) == ("repair", "repair")
