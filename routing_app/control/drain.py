"""Ordering-safe moves: the stop-and-wait protocol's rules. Pure; the writer does the I/O.

A strict tenant moves in two writes with one epoch: ``draining(e+1, from, to)`` and then
``active(e+1, to)`` (or a tombstone when it goes back to default hashing). Between the two,
every producer holds the tenant's new records and answers with a DrainAck once all it sent
before is acknowledged; the writer waits for the acks of the live producers, then for the
configured consumer groups to commit past the offsets those producers wrote to the old
partitions. Only then may a record reach a new partition, so none can overtake an older one.

Held records: a producer's DrainAck says how many records it held when it answered
(``held``), which is early in the hold: records keep queueing until the move ends. Each producer
therefore reports again when it releases the tenant (a DrainAck under the ``drain-released``
header, ``held`` = every record it held during the move), and the writer appends the closing
event once those reports are in (or after a short bound): its ``observed`` has
``held_records``, the records really held during the move by the producers that reported,
``held_reports`` / ``held_unreported`` (how many producers did / did not report; a producer
that died does not), and ``held_at_ack``, the sum of what the acks said.

Who the writer waits for (``expected``): every producer it knows to be live when the move
starts: it said hello, sent usage reports or answered within ``producer_expiry_ms``, and did
not say goodbye. A producer says hello on the answers topic before its first send (and every
few seconds after, so that an idle one stays known), waits for the broker to acknowledge it,
and only then reads the routes topic up to an end offset it fetched after that
acknowledgement. The writer, once the draining route is committed, fetches the answers topic's
end offset E, and ends the drain's roll call only when it has read the answers topic up to E.
A hello before E names a producer that may have read the routes before the draining route: it
joins ``expected``. A hello at E or after was acknowledged after the draining route was
committed, so that producer reads the draining route before its first send and holds the
tenant from the start: nobody waits for it. Hence no grace period: the producers' phase ends
on the last answer. (Hellos and routes need ``acks=all``: an acknowledged record is then below
the end offset any later reader is given.) ``ack_grace_ms`` (``drain_ack_grace_ms``, 0 by
default) is left for producers of versions without hellos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from routing_app.control.decision import Decision
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, DrainAck, drain_ack_subject
from routing_app.routes.events import ReassignmentEvent, WriterReasonKind
from routing_app.routes.model import Route, RouteMode, RouteStatus

__all__ = [
    "DRAIN_ACK_SCHEMA",
    "Drain",
    "DrainAck",
    "OnTimeout",
    "Phase",
    "Progress",
    "describe_wait",
    "drain_ack_subject",
    "finish",
    "hello_joins",
    "needs_drain",
    "progress",
    "start",
]

# A draining route that ends in a tombstone (merge back, unpin) says so, for every reader...
THEN_TOMBSTONE = "drain.then"
# ... and one whose tenant was on default hashing before: aborting goes back there.
WAS_HASHED = "drain.from"
_MARKERS = (THEN_TOMBSTONE, WAS_HASHED)


class OnTimeout(StrEnum):
    ABORT = "abort"  # back to the old placement: order kept, the move did not happen
    FORCE = "force"  # to the new placement anyway: the move happens, order may break


@dataclass(frozen=True)
class Drain:
    """A strict move in progress, as the writer keeps it (JSON-able through to_record)."""

    topic: str
    tenant: str
    epoch: int
    from_partitions: tuple[int, ...]
    to_partitions: tuple[int, ...]
    then_tombstone: bool  # the move ends on default hashing: a tombstone, not a route
    started_ms: int
    deadline_ms: int
    expected: frozenset[str]  # producers live when it started
    action: str  # the move's own action (isolate, pin, merge...), for the closing event
    acks: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    held: int = 0  # what the acks said was held when each answered (not the final figure)
    # When the producers' phase ended (every answer in, roll call over): the rest of the pause
    # is the consumer groups'.
    answered_ms: int | None = None

    def with_expected(self, producer_id: str) -> Drain:
        """A producer whose hello came before the cut: it may have read the routes before the
        draining route, so the drain waits for its answer too."""
        return replace(self, expected=self.expected | {producer_id})

    def with_ack(self, ack: DrainAck) -> Drain:
        acks = {**self.acks, ack.producer_id: dict(ack.offsets)}
        return replace(self, acks=acks, held=self.held + ack.held)

    def to_record(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "tenant": self.tenant,
            "epoch": self.epoch,
            "from": list(self.from_partitions),
            "to": list(self.to_partitions),
            "then_tombstone": self.then_tombstone,
            "started_ms": self.started_ms,
            "deadline_ms": self.deadline_ms,
            "expected": sorted(self.expected),
            "action": self.action,
            "held": self.held,
            "answered_ms": self.answered_ms,
            "acks": {pid: {str(p): o for p, o in offsets.items()} for pid, offsets in self.acks.items()},
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Drain:
        return cls(
            topic=r["topic"],
            tenant=r["tenant"],
            epoch=int(r["epoch"]),
            from_partitions=tuple(r["from"]),
            to_partitions=tuple(r["to"]),
            then_tombstone=bool(r["then_tombstone"]),
            started_ms=int(r["started_ms"]),
            deadline_ms=int(r["deadline_ms"]),
            expected=frozenset(r["expected"]),
            action=r["action"],
            held=int(r.get("held", 0)),
            answered_ms=None if r.get("answered_ms") is None else int(r["answered_ms"]),
            acks={
                pid: {int(p): int(o) for p, o in offsets.items()}
                for pid, offsets in (r.get("acks") or {}).items()
            },
        )


class Phase(StrEnum):
    PRODUCERS = "producers"  # waiting for live producers' acks
    CONSUMERS = "consumers"  # waiting for the consumer groups to pass the targets
    DONE = "done"
    TIMED_OUT = "timed-out"


@dataclass(frozen=True)
class Progress:
    phase: Phase
    waiting_for: tuple[str, ...] = ()  # producers not yet answered
    targets: Mapping[int, int] = field(default_factory=dict)  # partition -> next offset to pass
    needs_end_offsets: bool = False  # a producer went silent unanswered: use end offsets
    stuck_in: Phase | None = None  # TIMED_OUT: what the drain was still waiting for
    # PRODUCERS: the writer has not read the answers topic up to the cut yet (hellos unread)
    roll_call_open: bool = False


def needs_drain(decision: Decision, current: Route | None) -> bool:
    """True when the decision moves records of a strict tenant to other partitions."""
    if not decision.changes_route:
        return False
    after = decision.route
    mode = after.mode if after is not None else (current.mode if current else RouteMode.STRICT)
    if mode is not RouteMode.STRICT:
        return False
    before = current.partitions if current is not None else None
    return (after.partitions if after is not None else None) != before


def start(
    decision: Decision,
    current: Route | None,
    hashed_partition: int | None,
    *,
    now_ms: int,
    timeout_ms: int,
    live_producers: Set[str],
) -> tuple[Decision, Drain]:
    """The draining route (same epoch the decision would have used) and the drain to follow.

    ``hashed_partition``: where default hashing puts the tenant; None for a topic's hash base,
    which places no records of its own: its drain leaves no partition, so it waits for the
    producers' answers only (each one's acknowledgement that it knows the base)."""
    event = decision.event
    epoch = event.to_epoch if decision.route is None else decision.route.epoch
    assert epoch is not None, "a route change always has an epoch"
    hashed = () if hashed_partition is None else (hashed_partition,)
    from_partitions = current.partitions if current is not None else hashed
    then_tombstone = decision.route is None
    to_partitions = hashed if then_tombstone else decision.route.partitions  # type: ignore[union-attr]
    # A hash base going away goes nowhere, yet a route names a partition: while it drains it
    # keeps naming its own (producers keep hashing by it until the tombstone).
    shown = to_partitions or from_partitions
    template = decision.route or current
    assert template is not None
    attributes = dict(template.attributes)
    if then_tombstone:
        attributes[THEN_TOMBSTONE] = "tombstone"
    if current is None:
        attributes[WAS_HASHED] = "hashed"
    draining = replace(
        template,
        partitions=shown,
        previous_partitions=from_partitions,
        epoch=epoch,
        status=RouteStatus.DRAINING,
        reason=event.reason,
        updated_at_ms=now_ms,
        attributes=attributes,
    )
    drain = Drain(
        topic=event.topic,
        tenant=event.tenant,
        epoch=epoch,
        from_partitions=from_partitions,
        to_partitions=to_partitions,
        then_tombstone=then_tombstone,
        started_ms=now_ms,
        deadline_ms=now_ms + timeout_ms,
        expected=frozenset(live_producers),
        action=event.action,
    )
    draining_event = replace(
        event,
        from_partitions=from_partitions,
        to_partitions=shown,
        to_epoch=epoch,
        status=RouteStatus.DRAINING.value,
        mode=draining.mode.value,
    )
    return Decision(draining_event, route=draining), drain


def hello_joins(roll_call_end: int | None, hello_offset: int) -> bool:
    """Whether a hello read during a drain adds its producer to ``expected``: yes below the
    drain's end offset, or while that is not known yet (it can only be higher); no from it on,
    as that producer reads the draining route before its first send."""
    return roll_call_end is None or hello_offset < roll_call_end


def progress(
    drain: Drain,
    now_ms: int,
    live_producers: Set[str],
    *,
    ack_grace_ms: int,
    roll_call_done: bool = True,
    committed: Mapping[int, int] | None = None,
    end_offsets: Mapping[int, int] | None = None,
) -> Progress:
    """Where the drain stands. ``roll_call_done``: the writer has read the answers topic up to
    the drain's E, so ``expected`` names every producer that may have read the routes before
    the draining route (see the module's text); ``committed``: the lowest offset the consumer
    groups committed on each old partition (None: no group is configured or consumes the
    topic); ``end_offsets``: the old partitions' end offsets, used only when a producer went
    silent without answering. Past the deadline a drain that is not done is TIMED_OUT, with what
    it was waiting for."""
    timed_out = now_ms >= drain.deadline_ms
    waiting = tuple(sorted(p for p in drain.expected - set(drain.acks) if p in live_producers))
    if waiting or not roll_call_done or now_ms < drain.started_ms + ack_grace_ms:
        open_ = not roll_call_done
        if timed_out:
            return Progress(
                Phase.TIMED_OUT, waiting_for=waiting, stuck_in=Phase.PRODUCERS, roll_call_open=open_
            )
        return Progress(Phase.PRODUCERS, waiting_for=waiting, roll_call_open=open_)
    silent = bool(drain.expected - set(drain.acks) - set(live_producers))
    targets = {p: 0 for p in drain.from_partitions}
    for offsets in drain.acks.values():
        for partition, last in offsets.items():
            if partition in targets:
                targets[partition] = max(targets[partition], last + 1)
    if silent:
        if end_offsets is None:
            if timed_out:
                return Progress(Phase.TIMED_OUT, targets=targets, stuck_in=Phase.CONSUMERS)
            return Progress(Phase.CONSUMERS, targets=targets, needs_end_offsets=True)
        for partition in targets:
            targets[partition] = max(targets[partition], end_offsets.get(partition, 0))
    if committed is not None and any(committed.get(p, -1) < t for p, t in targets.items() if t > 0):
        if timed_out:
            return Progress(Phase.TIMED_OUT, targets=targets, stuck_in=Phase.CONSUMERS)
        return Progress(Phase.CONSUMERS, targets=targets, needs_end_offsets=silent)
    return Progress(Phase.DONE, targets=targets)


def describe_wait(drain: Drain, step: Progress, groups: Sequence[str]) -> tuple[str, ...]:
    """What a timed-out drain was waiting for, in words for its closing event."""
    if step.stuck_in is Phase.PRODUCERS:
        if step.waiting_for:
            return (
                f"{'producer' if len(step.waiting_for) == 1 else 'producers'} "
                f"{', '.join(step.waiting_for)} (no drain ack)",
            )
        if step.roll_call_open:
            return ("the writer to read the producers' hellos up to the move's start (the answers topic)",)
        return ("producers unknown to the writer (drain_ack_grace_ms)",)
    behind = {p: t for p, t in sorted(step.targets.items()) if t > 0}
    where = ", ".join(f"partition {p} up to offset {t}" for p, t in behind.items())
    if groups:
        return (
            f"{'consumer group' if len(groups) == 1 else 'consumer groups'} "
            f"{', '.join(groups)} to read {drain.topic} {where or 'to its end'}",
        )
    return (
        f"the end offsets of {drain.topic} {list(drain.from_partitions)} (a producer went "
        "silent without answering)",
    )


def finish(
    drain: Drain,
    draining: Route | None,
    outcome: Phase,
    on_timeout: OnTimeout,
    *,
    now_ms: int,
    worker_id: str,
    waiting_for: tuple[str, ...] = (),
) -> Decision:
    """The second write: the new placement (done, forced) or the old one (aborted)."""
    pause_ms = float(now_ms - drain.started_ms)
    # held_records comes from the producers' release reports (see the module's docstring).
    observed = {
        "pause_ms": pause_ms,
        "producers_acked": float(len(drain.acks)),
        "producers_expected": float(len(drain.expected)),
        "held_at_ack": float(drain.held),
    }
    if drain.answered_ms is not None:
        observed["answered_ms"] = float(drain.answered_ms - drain.started_ms)
    if outcome is Phase.DONE:
        # The route keeps the move's own reason; the drain's figures follow it.
        why = draining.reason if draining is not None and draining.reason else drain.action
        action, reason = "drain-complete", f"{why} (drained in {pause_ms:.0f} ms)"
        forward, kind = True, WriterReasonKind.DRAINED
    elif on_timeout is OnTimeout.FORCE:
        action, forward, kind = "drain-forced", True, WriterReasonKind.DRAIN_FORCED
        reason = (
            f"{drain.action} forced after {pause_ms:.0f} ms waiting for "
            f"{', '.join(waiting_for) or _UNNAMED}: order may break"
        )
    else:
        action, forward, kind = "drain-abort", False, WriterReasonKind.DRAIN_ABORTED
        reason = (
            f"{drain.action} aborted after {pause_ms:.0f} ms waiting for "
            f"{', '.join(waiting_for) or _UNNAMED}: back to "
            f"{list(drain.from_partitions)}"
        )
    partitions = drain.to_partitions if forward else drain.from_partitions
    tombstone = drain.then_tombstone if forward else draining is None or _was_hashed(draining)
    base = ReassignmentEvent(
        topic=drain.topic,
        tenant=drain.tenant,
        action=action,
        reason=reason,
        decided_at_ms=now_ms,
        worker_id=worker_id,
        from_partitions=drain.from_partitions,
        to_partitions=() if tombstone else partitions,
        from_epoch=drain.epoch,
        to_epoch=drain.epoch,
        mode=draining.mode.value if draining else RouteMode.STRICT.value,
        status="" if tombstone else RouteStatus.ACTIVE.value,
        observed=observed,
        reason_kind=kind.value,
    )
    if tombstone or draining is None:
        return Decision(base, tombstone=True)
    attributes = {k: v for k, v in draining.attributes.items() if k not in _MARKERS}
    route = replace(
        draining,
        partitions=partitions,
        previous_partitions=(),
        status=RouteStatus.ACTIVE,
        reason=reason,
        updated_at_ms=now_ms,
        attributes=attributes,
    )
    return Decision(base, route=route)


_UNNAMED = "its producers' acknowledgements and the consumer groups"


def _was_hashed(draining: Route) -> bool:
    return draining.attributes.get(WAS_HASHED) == "hashed"
