"""A decision's *reason kind*: a short, bounded label for the free-text reason of an event.

The reasons the planner (``routing_app.planner``) and the command rules
(``routing_app/control/decide.py``) write are sentences with tenant names and figures in them;
as a metric label they would make one time series per decision. The kind keeps what a dashboard
wants to group by (why the route moved), and the event on the events topic keeps the sentence.

A planner decision's kind is its ``ReasonKind``, set by the step that decided; the command
rules' kinds follow from the event's action. Only an event that does not carry its planner
kind is read by its words (``_legacy_kind``, see there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from routing_app.planner import PlannedChange, ReasonKind
from routing_app.routes.events import ReassignmentEvent

# Actions as written on events; anything else is counted as "other" (labels stay bounded).
ACTIONS = frozenset({"isolate", "shard", "merge", "rebalance", "drain", "pin", "unpin", "freeze",
                     "unfreeze", "rejected", "drain-complete", "drain-forced", "drain-abort",
                     "repair"})

# The second write of a strict move (routing_app/control/drain.py): how the drain ended.
_DRAIN_ENDS = {"drain-complete": "drained", "drain-forced": "drain_timeout_forced",
               "drain-abort": "drain_timeout_aborted"}

# Every kind ``reason_kind`` can return: the planner's, and those of commands and drain ends.
REASON_KINDS = frozenset({kind.value for kind in ReasonKind}
                         | {"operator", "rejected", "other"} | set(_DRAIN_ENDS.values()))


def action_label(action: str) -> str:
    return action if action in ACTIONS else "other"


def reason_kind(action: str, reason: str, *, operator: bool = False,
                kind: ReasonKind | None = None) -> str:
    """The kind of a decision's reason; ``operator`` is true for an operator command's event,
    ``kind`` is the planner's own when the decision carries it (its words are then not read)."""
    if action == "rejected":
        return "rejected"
    if action in _DRAIN_ENDS:
        return _DRAIN_ENDS[action]
    if kind is not None:
        return kind.value
    if operator or reason.startswith("operator "):
        return "operator"
    return _legacy_kind(action, reason)


def change_labels(change: PlannedChange) -> tuple[str, str]:
    """(action, reason kind) of one planner change: its kind, never its words."""
    return action_label(change.action.value), change.kind.value


def event_labels(event: ReassignmentEvent, kind: ReasonKind | None = None) -> tuple[str, str]:
    """(action, reason kind) of one event, both from bounded sets; ``kind``: the planner's
    ``ReasonKind`` of the change the event records, when known."""
    return action_label(event.action), reason_kind(event.action, event.reason, kind=kind,
                                                   operator=event.command_id is not None)


# -- LEGACY: reading the kind from the words ------------------------------------------------------
# Only for events that do not carry their planner kind: ReassignmentEvent has no field for it
# (routing_app/routes/events.py, schemas/reassignment_event.avsc), so events read back from the
# events topic are read by their words, and so is every event until the writer passes
# ``PlannedChange.kind`` along (control/decide.py: decide_planned). The phrases are the
# planner's sentences as written so far (routing_app/planner/reasons.py); they must keep matching
# records already on the topic, so rewording a sentence must not remove a phrase from here.

# (action, phrase in the planner's reason, kind): the first match wins.
_PLANNER_PHRASES: tuple[tuple[str, str, ReasonKind], ...] = (
    ("shard", "no tenant there fits elsewhere whole", ReasonKind.SHARD_SPLIT),
    ("shard", "kept on partition", ReasonKind.COOLED_KEPT_ONE_SHARD),
    ("shard", "shrunk from", ReasonKind.SHARD_SHRINK),
    ("shard", "sharded over", ReasonKind.SHARD_GROW),
    ("rebalance", "making room for", ReasonKind.MAKING_ROOM),
    ("rebalance", "", ReasonKind.OVER_MEAN),
    ("isolate", "not sharded", ReasonKind.UNSPLITTABLE),
    ("isolate", "", ReasonKind.HOT_PARTITION),
    ("merge", "", ReasonKind.COOLED),
    ("drain", "does not exist", ReasonKind.PARTITION_MISSING),
    ("drain", "is being drained", ReasonKind.PARTITION_DRAINED),
    ("drain", "names a partition twice", ReasonKind.DUPLICATE_PARTITION),
)


def _legacy_kind(action: str, reason: str) -> str:
    for phrase_action, phrase, kind in _PLANNER_PHRASES:
        if action == phrase_action and phrase in reason:
            return kind.value
    return "other"


# -- counting -------------------------------------------------------------------------------------


@dataclass
class DecisionTally:
    """Events applied by the writer, counted by (action, reason kind); read by the collector."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def observe(self, event: ReassignmentEvent, kind: ReasonKind | None = None) -> None:
        key = event_labels(event, kind)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe_all(self, events: Iterable[ReassignmentEvent]) -> None:
        for event in events:
            self.observe(event)

    def snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self.counts)
