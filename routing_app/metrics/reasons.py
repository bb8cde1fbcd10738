"""A decision's *reason kind*: a short, bounded label for the free-text reason of an event.

The reasons the planner (``routing_app.planner``) and the command rules
(``routing_app/control/decide.py``) write are sentences with tenant names and figures in them;
as a metric label they would make one time series per decision. The kind keeps what a dashboard
wants to group by (why the route moved), and the event on the events topic keeps the sentence.

Every event carries its kind (``ReassignmentEvent.reason_kind``), set where the decision is
made: the planner step's ``ReasonKind``, or the writer's own (``WriterReasonKind``: operator,
rejected, repair, how a drain ended). Only events written before that field existed are read
by their words (``_legacy_kind``, see there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from routing_app.planner import Action, PlannedChange, ReasonKind
from routing_app.routes.events import ADOPT, REPAIR, ReassignmentEvent, WriterReasonKind

# Actions as written on events; anything else is counted as "other" (labels stay bounded).
ACTIONS = frozenset(
    {
        "isolate",
        "shard",
        "merge",
        "rebalance",
        "evacuate",
        "expand",
        "rebase",
        "pin",
        "unpin",
        "freeze",
        "unfreeze",
        "rejected",
        "drain-complete",
        "drain-forced",
        "drain-abort",
        REPAIR,
        ADOPT,
    }
)
# Actions renamed since: events already on the topic count under today's name. "drain" was
# both the operator's command and the planner step that carries it out, now "evacuate" (drain
# means only a strict move's ordering pause).
_RENAMED_ACTIONS = {"drain": Action.EVACUATE.value}

# The second write of a strict move (routing_app/control/drain.py): how the drain ended.
_DRAIN_ENDS = {
    "drain-complete": WriterReasonKind.DRAINED.value,
    "drain-forced": WriterReasonKind.DRAIN_FORCED.value,
    "drain-abort": WriterReasonKind.DRAIN_ABORTED.value,
}

OTHER = "other"
# Every kind a label can take: the planner's, the writer's own, and "other".
REASON_KINDS = frozenset(
    {kind.value for kind in ReasonKind} | {kind.value for kind in WriterReasonKind} | {OTHER}
)


def action_label(action: str) -> str:
    action = _RENAMED_ACTIONS.get(action, action)
    return action if action in ACTIONS else OTHER


def reason_kind(action: str, reason: str, *, operator: bool = False, kind: ReasonKind | None = None) -> str:
    """The kind of a decision's reason from its action and words: what an event without its
    ``reason_kind`` (written before the field existed) is labelled with. ``operator`` is true
    for an operator command's event; ``kind`` is the planner's own when known (its words are
    then not read)."""
    if action == "rejected":
        return WriterReasonKind.REJECTED.value
    if action in _DRAIN_ENDS:
        return _DRAIN_ENDS[action]
    if action in (REPAIR, ADOPT):
        return WriterReasonKind.REPAIR.value
    if kind is not None:
        return kind.value
    if operator or reason.startswith("operator "):
        return WriterReasonKind.OPERATOR.value
    return _legacy_kind(_RENAMED_ACTIONS.get(action, action), reason)


def change_labels(change: PlannedChange) -> tuple[str, str]:
    """(action, reason kind) of one planner change: its kind, never its words."""
    return action_label(change.action.value), change.kind.value


def event_labels(event: ReassignmentEvent) -> tuple[str, str]:
    """(action, reason kind) of one event, both from bounded sets: the kind the event carries,
    or, for an event written before events carried one, the kind its words say."""
    if event.reason_kind is not None:
        kind = event.reason_kind if event.reason_kind in REASON_KINDS else OTHER
        return action_label(event.action), kind
    return action_label(event.action), reason_kind(
        event.action, event.reason, operator=event.command_id is not None
    )


# -- LEGACY: reading the kind from the words ------------------------------------------------------
# Only for events without ``reason_kind``: those written before the field existed
# (routing_app/routes/events.py, schemas/reassignment_event.avsc). The phrases are the planner's
# sentences as written then (routing_app/planner/reasons.py); they must keep matching records
# already on the topic, so none may be removed, whatever the planner says today. Actions are
# today's names (see _RENAMED_ACTIONS).

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
    ("evacuate", "does not exist", ReasonKind.PARTITION_MISSING),
    ("evacuate", "is being drained", ReasonKind.PARTITION_EVACUATED),  # old events: action "drain"
    ("evacuate", "is being evacuated", ReasonKind.PARTITION_EVACUATED),
    ("evacuate", "names a partition twice", ReasonKind.DUPLICATE_PARTITION),
)


def _legacy_kind(action: str, reason: str) -> str:
    for phrase_action, phrase, kind in _PLANNER_PHRASES:
        if action == phrase_action and phrase in reason:
            return kind.value
    return OTHER


# -- counting -------------------------------------------------------------------------------------


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
