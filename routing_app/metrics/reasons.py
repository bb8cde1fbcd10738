"""A decision's *reason kind*: a short, bounded label for the free-text reason of an event.

The reasons the planner (``routing_app/planner.py``) and the command rules
(``routing_app/control/decide.py``) write are sentences with tenant names and figures in them;
as a metric label they would make one time series per decision. The kind keeps what a dashboard
wants to group by (why the route moved), and the event on the events topic keeps the sentence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from routing_app.routes.events import ReassignmentEvent

# Actions as written on events; anything else is counted as "other" (labels stay bounded).
ACTIONS = frozenset({"isolate", "shard", "merge", "rebalance", "drain", "pin", "unpin", "freeze",
                     "unfreeze", "rejected", "drain-complete", "drain-forced", "drain-abort"})

# Every kind ``reason_kind`` can return.
REASON_KINDS = frozenset({
    "operator", "rejected", "hot_partition", "shard_grow", "shard_shrink", "shard_split",
    "cooled_kept_one_shard", "cooled", "unsplittable", "over_mean", "making_room", "partition_missing",
    "partition_drained", "duplicate_partition", "drained", "drain_timeout_forced",
    "drain_timeout_aborted", "other",
})
# The second write of a strict move (routing_app/control/drain.py): how the drain ended.
_DRAIN_ENDS = {"drain-complete": "drained", "drain-forced": "drain_timeout_forced",
               "drain-abort": "drain_timeout_aborted"}

# (action, phrase in the planner's reason, kind): the first match wins.
_PLANNER_PHRASES: tuple[tuple[str, str, str], ...] = (
    ("shard", "no tenant there fits elsewhere whole", "shard_split"),
    ("shard", "kept on partition", "cooled_kept_one_shard"),
    ("shard", "shrunk from", "shard_shrink"),
    ("shard", "sharded over", "shard_grow"),
    ("rebalance", "making room for", "making_room"),
    ("rebalance", "", "over_mean"),
    ("isolate", "not sharded", "unsplittable"),
    ("isolate", "", "hot_partition"),
    ("merge", "", "cooled"),
    ("drain", "does not exist", "partition_missing"),
    ("drain", "is being drained", "partition_drained"),
    ("drain", "names a partition twice", "duplicate_partition"),
)


def action_label(action: str) -> str:
    return action if action in ACTIONS else "other"


def reason_kind(action: str, reason: str, *, operator: bool = False) -> str:
    """The kind of a decision's reason; ``operator`` is true for an operator command's event."""
    if action == "rejected":
        return "rejected"
    if action in _DRAIN_ENDS:
        return _DRAIN_ENDS[action]
    if operator or reason.startswith("operator "):
        return "operator"
    for phrase_action, phrase, kind in _PLANNER_PHRASES:
        if action == phrase_action and phrase in reason:
            return kind
    return "other"


def event_labels(event: ReassignmentEvent) -> tuple[str, str]:
    """(action, reason kind) of one event, both from bounded sets."""
    return action_label(event.action), reason_kind(event.action, event.reason,
                                                   operator=event.command_id is not None)


@dataclass
class DecisionTally:
    """Events applied by the writer, counted by (action, reason kind); read by the collector."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def observe(self, event: ReassignmentEvent) -> None:
        key = event_labels(event)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe_all(self, events: Iterable[ReassignmentEvent]) -> None:
        for event in events:
            self.observe(event)

    def snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self.counts)
