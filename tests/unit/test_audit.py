"""The audit's pure core: timelines, past tables, verify, time parsing; and the CLI's outputs."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from routing_app.audit.consistency import verify
from routing_app.audit.discrepancies import (
    EPOCH_CHAIN,
    EPOCH_REGRESSION,
    EVENT_WITHOUT_ROUTE,
    FINAL_STATE,
    RECORD_MISMATCH,
    ROUTE_WITHOUT_EVENT,
    UNDECODABLE,
)
from routing_app.audit.reader import AuditInput
from routing_app.audit.records import EVENTS, ROUTES, EventRecord, RouteRecord, RoutesLog, Undecodable
from routing_app.audit.replay import table_at, timeline
from routing_app.audit.times import parse_time
from routing_app.cli import audit as commands
from routing_app.config import Settings
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.control.decide import apply_command
from routing_app.control.decision import Decision
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import Route, RouteMode, RouteStatus, route_key

T0 = 1_700_000_000_000
TOPIC = "orders"


class FakeWriter:
    """Writes like RouteWriter: the route record (or tombstone) first, then the event."""

    def __init__(self) -> None:
        self.records: list[RouteRecord] = []
        self.events: list[EventRecord] = []
        self.routes: dict[str, Route] = {}
        self.epochs: dict[str, int] = {}
        self.now = T0

    def tick(self, ms: int = 60_000) -> int:
        self.now += ms
        return self.now

    def write(self, decision: Decision) -> None:
        e = decision.event
        key = route_key(e.topic, e.tenant)
        if decision.route is not None:
            self.routes[key] = decision.route
            self.epochs[key] = decision.route.epoch
            self.records.append(RouteRecord(len(self.records), self.now, e.topic, e.tenant, decision.route))
        elif decision.tombstone:
            self.routes.pop(key, None)
            if e.to_epoch is not None:
                self.epochs[key] = e.to_epoch
            self.records.append(RouteRecord(len(self.records), self.now, e.topic, e.tenant, None))
        self.events.append(EventRecord(len(self.events), self.now, e))

    def command(
        self,
        action: ControlAction,
        tenant: str,
        *partitions: int,
        reason: str = "",
        mode: RouteMode | None = None,
    ) -> Decision:
        key = route_key(TOPIC, tenant)
        decision = apply_command(
            ControlCommand(action, TOPIC, tenant, self.now, partitions, mode, reason),
            self.routes.get(key),
            self.epochs.get(key, 0),
            8,
            worker_id="w-1",
            now_ms=self.now,
        )
        self.write(decision)
        return decision

    def pin(self, tenant: str, *partitions: int, reason: str = "") -> Decision:
        return self.command(ControlAction.PIN, tenant, *partitions, reason=reason)

    def unpin(self, tenant: str) -> Decision:
        return self.command(ControlAction.UNPIN, tenant)

    def strict_move(
        self,
        tenant: str,
        to: tuple[int, ...] | None,
        *,
        pause_ms: float = 250.0,
        action: str = "isolate",
        outcome: str = "drain-complete",
    ) -> None:
        """A strict move as issue #4 writes it: draining(e+1) then active(e+1) or a tombstone."""
        key = route_key(TOPIC, tenant)
        current = self.routes.get(key)
        epoch = max(self.epochs.get(key, 0), current.epoch if current else 0) + 1
        before = current.partitions if current else (7,)
        target = to if to is not None else (7,)
        draining = Route(
            TOPIC,
            tenant,
            target,
            epoch,
            status=RouteStatus.DRAINING,
            reason=f"{action}: hot",
            updated_at_ms=self.now,
            previous_partitions=before,
        )
        self.write(
            Decision(
                replace(
                    ReassignmentEvent.for_change(
                        current,
                        draining,
                        action=action,
                        reason=f"{action}: hot",
                        decided_at_ms=self.now,
                        worker_id="w-1",
                    ),
                    from_partitions=before,
                ),
                route=draining,
            )
        )
        self.tick(int(pause_ms))
        forward = outcome != "drain-abort"
        final = target if forward else before
        tombstone = (to is None and forward) or (not forward and current is None)
        event = ReassignmentEvent(
            topic=TOPIC,
            tenant=tenant,
            action=outcome,
            reason=f"{action} drained",
            decided_at_ms=self.now,
            worker_id="w-1",
            from_partitions=before,
            to_partitions=() if tombstone else final,
            from_epoch=epoch,
            to_epoch=epoch,
            mode="strict",
            status="" if tombstone else "active",
            observed={"pause_ms": pause_ms},
        )
        if tombstone:
            self.write(Decision(event, tombstone=True))
        else:
            self.write(
                Decision(
                    event,
                    route=replace(
                        draining,
                        partitions=final,
                        status=RouteStatus.ACTIVE,
                        previous_partitions=(),
                        updated_at_ms=self.now,
                    ),
                )
            )

    def log(self, records: list[RouteRecord] | None = None, high: int | None = None) -> RoutesLog:
        return RoutesLog.of(
            self.records if records is None else records, high=len(self.records) if high is None else high
        )


def healthy() -> FakeWriter:
    w = FakeWriter()
    w.pin("acme", 3, reason="noisy since 10:02")
    w.tick()
    w.pin("bigco", 1, 4, 6)
    w.tick()
    w.pin("acme", 5)
    w.tick()
    w.command(ControlAction.FREEZE, "bigco")
    w.command(ControlAction.PIN, "acme", 9)  # rejected: no partition 9
    w.command(ControlAction.EVACUATE, "", 2)  # operator partition evacuation: no route change
    w.tick()
    w.unpin("acme")
    w.tick()
    w.pin("acme", 2)
    return w


def _route(record: RouteRecord) -> Route:
    assert record.route is not None
    return record.route


def kinds(report: Any) -> list[tuple[str, str]]:
    return [(d.key, d.kind) for d in report.discrepancies]


# -- verify --------------------------------------------------------------------------------------
def test_verify_passes_on_a_consistent_history() -> None:
    w = healthy()
    report = verify(w.log(), w.events)
    assert report.ok, report.discrepancies
    assert report.keys == 2  # acme and bigco; the operator evacuation's "orders/" changes no route
    assert report.route_changes == 5
    assert report.route_records == report.linked_records == 5
    assert not report.compacted


def test_verify_passes_with_drains_that_keep_their_epoch() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.strict_move("acme", (4,))  # draining e2 -> active e2
    w.strict_move("acme", None, action="merge")  # draining e3 -> tombstone e3
    w.strict_move("acme", (1, 2), action="shard", outcome="drain-abort")  # back to hashing
    w.strict_move("bigco", (5,), outcome="drain-forced")
    w.strict_move("bigco", (6,), outcome="drain-abort")  # back to [5], same epoch
    report = verify(w.log(), w.events)
    assert report.ok, report.discrepancies
    assert w.routes[route_key(TOPIC, "bigco")].partitions == (5,)


def test_a_route_record_without_event_is_found() -> None:
    w = healthy()
    ghost = Route(TOPIC, "ghost", (4,), 1, reason="hand-written")
    records = [*w.records, RouteRecord(len(w.records), w.now, TOPIC, "ghost", ghost)]
    report = verify(RoutesLog.of(records), w.events)
    assert kinds(report) == [("orders/ghost", ROUTE_WITHOUT_EVENT), ("orders/ghost", FINAL_STATE)]
    assert report.discrepancies[0].route_offset == len(w.records)


def test_an_event_without_its_route_record_is_found() -> None:
    w = healthy()
    lost = next(r for r in w.records if r.tenant == "acme" and r.route and r.route.partitions == (5,))
    records = [r for r in w.records if r is not lost]
    # No hole: the record is missing from an uncompacted topic, not removed by compaction.
    renumbered = [replace(r, offset=i) for i, r in enumerate(records)]
    report = verify(RoutesLog.of(renumbered), w.events)
    assert kinds(report) == [("orders/acme", EVENT_WITHOUT_ROUTE)]
    assert "[5] epoch 2" in report.discrepancies[0].expected


def test_compaction_holes_excuse_removed_history_but_not_the_latest_record() -> None:
    w = healthy()
    # Compaction keeps each key's last record, at their original offsets.
    last = {r.key: r for r in w.records}
    compacted = sorted(last.values(), key=lambda r: r.offset)
    report = verify(RoutesLog.of(compacted, high=len(w.records)), w.events)
    assert report.ok, report.discrepancies
    assert report.compacted

    # ... but a key whose latest record vanished is still reported.
    without_acme = [r for r in compacted if r.tenant != "acme"]
    report = verify(RoutesLog.of(without_acme, high=len(w.records)), w.events)
    assert ("orders/acme", EVENT_WITHOUT_ROUTE) in kinds(report)
    assert ("orders/acme", FINAL_STATE) in kinds(report)


def test_expired_tombstone_leaves_no_record_and_that_is_fine() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.pin("bigco", 1)
    w.unpin("acme")
    survivors = [r for r in w.records if r.tenant == "bigco"]  # acme's tombstone expired too
    assert verify(RoutesLog.of(survivors, high=len(w.records)), w.events).ok


def test_epoch_going_backwards_is_found_on_both_topics() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.pin("acme", 4)
    w.pin("acme", 5)
    # The third change claims epoch 1 again, on the route record and in its event.
    records = [*w.records[:2], replace(w.records[2], route=replace(_route(w.records[2]), epoch=1))]
    bad_event = replace(w.events[2].event, to_epoch=1)
    events = [*w.events[:2], replace(w.events[2], event=bad_event)]
    report = verify(RoutesLog.of(records), events)
    assert ("orders/acme", EPOCH_REGRESSION) in kinds(report)
    sources = {
        (d.event_offset is not None, d.route_offset is not None)
        for d in report.discrepancies
        if d.kind == EPOCH_REGRESSION
    }
    assert sources == {(True, False), (False, True)}


def test_equal_epoch_is_allowed_only_to_complete_a_drain() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.pin("acme", 4)
    same = replace(w.events[1].event, to_epoch=1, from_epoch=1)
    record = replace(w.records[1], route=replace(_route(w.records[1]), epoch=1))
    report = verify(RoutesLog.of([w.records[0], record]), [w.events[0], replace(w.events[1], event=same)])
    assert [k for _, k in kinds(report)].count(EPOCH_REGRESSION) == 2


def test_broken_epoch_chain_is_found() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.pin("acme", 4)
    skewed = replace(w.events[1].event, from_epoch=7)
    report = verify(w.log(), [w.events[0], replace(w.events[1], event=skewed)])
    assert kinds(report) == [("orders/acme", EPOCH_CHAIN)]


def test_final_state_mismatch_and_record_mismatch() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    w.pin("acme", 4)
    # The last record has the right epoch but other partitions.
    wrong = replace(w.records[1], route=replace(_route(w.records[1]), partitions=(6,)))
    report = verify(RoutesLog.of([w.records[0], wrong]), w.events)
    assert kinds(report) == [("orders/acme", RECORD_MISMATCH), ("orders/acme", FINAL_STATE)]
    final = report.discrepancies[1]
    assert "[4]" in final.expected and "[6]" in final.found

    # A bumped epoch on the last record: no event wrote it, and the final state differs.
    bumped = replace(w.records[1], offset=2, route=replace(_route(w.records[1]), epoch=9))
    report = verify(RoutesLog.of([*w.records, bumped]), w.events)
    assert kinds(report) == [("orders/acme", ROUTE_WITHOUT_EVENT), ("orders/acme", FINAL_STATE)]


def test_a_tombstone_on_the_topic_that_no_event_wrote() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    records = [*w.records, RouteRecord(1, w.now, TOPIC, "acme", None)]
    report = verify(RoutesLog.of(records), w.events)
    assert kinds(report) == [("orders/acme", ROUTE_WITHOUT_EVENT), ("orders/acme", FINAL_STATE)]


def test_the_writers_repair_of_a_forged_route_leaves_only_the_forgery_reported() -> None:
    w = FakeWriter()
    w.pin("acme", 3)
    mine = _route(w.records[0])
    forged = replace(mine, partitions=(6,), epoch=9)
    # What RouteWriter.repair writes: a tombstone over the forgery, then its route again.
    records = [
        *w.records,
        RouteRecord(1, w.now, TOPIC, "acme", forged),
        RouteRecord(2, w.now, TOPIC, "acme", None),
        RouteRecord(3, w.now, TOPIC, "acme", mine),
    ]
    without_event = verify(RoutesLog.of(records), w.events)
    # Unexplained, the tombstone is a second foreign record; the epochs never go down for the
    # forgery alone (it is reported once, as a record without event).
    assert kinds(without_event) == [("orders/acme", ROUTE_WITHOUT_EVENT)] * 2

    repair = ReassignmentEvent(
        TOPIC,
        "acme",
        "repair",
        "removed",
        w.now,
        from_partitions=(6,),
        to_partitions=(3,),
        from_epoch=9,
        to_epoch=1,
    )
    events = [*w.events, EventRecord(len(w.events), w.now, repair)]
    report = verify(RoutesLog.of(records), events)
    assert kinds(report) == [("orders/acme", ROUTE_WITHOUT_EVENT)]
    assert report.discrepancies[0].route_offset == 1
    assert "the writer repaired it: event offset 1" in report.discrepancies[0].found
    assert report.duplicate_records == 1  # the route written again

    # A tenant the writer never routed: the forgery repeated (held for the delete), then gone.
    ghost = Route(TOPIC, "ghost", (5,), 1, reason="hand-written")
    ghost_records = [RouteRecord(i, w.now, TOPIC, "ghost", r) for i, r in enumerate((ghost, ghost, None))]
    ghost_repair = ReassignmentEvent(
        TOPIC, "ghost", "repair", "removed", w.now, from_partitions=(5,), from_epoch=1
    )
    report = verify(RoutesLog.of(ghost_records), [EventRecord(0, w.now, ghost_repair)])
    assert kinds(report) == [("orders/ghost", ROUTE_WITHOUT_EVENT)]
    assert timeline([EventRecord(0, w.now, ghost_repair)])[0].changes_route is False


def test_undecodable_records_and_duplicates() -> None:
    w = healthy()
    poison = [
        Undecodable(ROUTES, "routing.routes", 0, 99, "orders/x", "DecodeError: bad magic"),
        Undecodable(EVENTS, "routing.events", 0, 98, None, "DecodeError: short"),
    ]
    report = verify(w.log(), w.events, poison)
    assert sorted(kinds(report)) == [("?", UNDECODABLE), ("orders/x", UNDECODABLE)]

    # A repeated event (producer retry) and a repeated route record are not discrepancies.
    events = [*w.events, replace(w.events[-1], offset=len(w.events))]
    records = [*w.records, replace(w.records[-1], offset=len(w.records))]
    report = verify(RoutesLog.of(records), events)
    assert report.ok, report.discrepancies
    assert (report.duplicate_events, report.duplicate_records) == (1, 1)


# -- timelines and past tables -------------------------------------------------------------------
def test_timeline_carries_placements_epochs_pauses_and_route_links() -> None:
    w = FakeWriter()
    w.pin("acme", 3, reason="noisy")
    w.tick()
    w.strict_move("acme", (4, 5), pause_ms=120.0, action="shard")
    w.tick()
    w.command(ControlAction.FREEZE, "acme")
    w.unpin("acme")
    first_two_gone = RoutesLog.of(w.records[2:], high=len(w.records))
    steps = timeline(w.events, first_two_gone, tenant="acme")
    assert [s.action for s in steps] == ["pin", "shard", "drain-complete", "freeze", "unpin"]
    assert [s.placement for s in steps] == [(3,), (4, 5), (4, 5), (4, 5), None]
    assert [s.to_epoch for s in steps] == [1, 2, 2, 2, 3]
    assert [s.status for s in steps][:3] == ["active", "draining", "active"]
    assert steps[2].pause_ms == 120.0 and steps[0].pause_ms is None
    assert [s.route_offset for s in steps] == [None, None, 2, None, 3]
    assert steps[0].reason == "operator pin (noisy)"
    assert json.loads(json.dumps([s.to_json() for s in steps]))[1]["placement"] == [4, 5]


def test_timeline_filters_keep_the_fold() -> None:
    w = healthy()
    later = timeline(w.events, tenant="acme", since_ms=T0 + 150_000)
    assert [s.action for s in later] == ["rejected", "unpin", "pin"]
    assert [s.placement for s in later] == [(5,), None, (2,)]  # the fold began before `since`
    assert all(s.tenant == "acme" for s in later)
    until = timeline(w.events, until_ms=T0 + 60_000)
    assert [s.tenant for s in until] == ["acme", "bigco"]


def test_table_at_answers_where_and_why() -> None:
    w = healthy()
    assert table_at(w.events, T0 - 1) == {}
    at = table_at(w.events, T0 + 30_000)
    assert {k: p.partitions for k, p in at.items()} == {"orders/acme": (3,)}
    assert at["orders/acme"].reason == "operator pin (noisy since 10:02)"
    assert at["orders/acme"].since_ms == T0
    later = table_at(w.events, T0 + 150_000)
    assert later["orders/acme"].partitions == (5,) and later["orders/bigco"].partitions == (1, 4, 6)
    after_unpin = table_at(w.events, T0 + 270_000)
    assert "orders/acme" not in after_unpin
    hashed = table_at(w.events, T0 + 270_000, include_hashed=True)["orders/acme"]
    assert hashed.partitions is None and hashed.action == "unpin"
    assert table_at(w.events, w.now)["orders/acme"].partitions == (2,)


# -- times ---------------------------------------------------------------------------------------
NOW = datetime(2025, 3, 4, 10, 30, 0, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-15m", _ms(NOW - timedelta(minutes=15))),
        ("-2h", _ms(NOW - timedelta(hours=2))),
        ("-1d", _ms(NOW - timedelta(days=1))),
        ("-90s", _ms(NOW - timedelta(seconds=90))),
        ("15m ago", _ms(NOW - timedelta(minutes=15))),
        ("now", _ms(NOW)),
        ("1700000000123", 1_700_000_000_123),
        ("2025-03-04T10:02:00Z", _ms(datetime(2025, 3, 4, 10, 2, tzinfo=UTC))),
        ("2025-03-04T10:02:00+02:00", _ms(datetime(2025, 3, 4, 8, 2, tzinfo=UTC))),
        ("2025-03-04 10:02", _ms(datetime(2025, 3, 4, 10, 2).astimezone())),
        (
            "10:02",
            _ms(
                datetime.combine(NOW.astimezone().date(), datetime.min.time())
                .replace(hour=10, minute=2)
                .astimezone()
            ),
        ),
        (
            "10:02:30.5",
            _ms(
                datetime.combine(NOW.astimezone().date(), datetime.min.time())
                .replace(hour=10, minute=2, second=30, microsecond=500_000)
                .astimezone()
            ),
        ),
    ],
)
def test_parse_time_forms(text: str, expected: int) -> None:
    assert parse_time(text, now=NOW) == expected


def test_parse_time_without_zone_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time("2025-03-04 10:02", now=NOW) == _ms(datetime(2025, 3, 4, 15, 2, tzinfo=UTC))
        assert parse_time("10:02", now=NOW) == _ms(datetime(2025, 3, 4, 15, 2, tzinfo=UTC))
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "yesterday", "25:00", "1700000000", "-5y", "10:2"])
def test_parse_time_refuses_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"time|milliseconds"):
        parse_time(text, now=NOW)


# -- the commands, over an in-memory read ----------------------------------------------------------
@pytest.fixture
def fake_read(monkeypatch: pytest.MonkeyPatch) -> dict[str, AuditInput]:
    holder: dict[str, AuditInput] = {}

    def read(settings: Settings, **_: Any) -> AuditInput:
        return holder["input"]

    monkeypatch.setattr(commands, "read_history", read)
    return holder


def _run(*args: str) -> Any:
    return CliRunner().invoke(commands.audit, list(args), obj=Settings(), catch_exceptions=False)


def test_commands_print_json_csv_and_exit_codes(fake_read: dict[str, AuditInput]) -> None:
    w = healthy()
    fake_read["input"] = AuditInput(w.log(), w.events)

    done = _run("verify", "--json")
    assert done.exit_code == 0
    assert json.loads(done.stdout)["ok"] is True

    done = _run("at", str(T0 + 30_000), "--tenant", "acme", "--json")
    assert done.exit_code == 0
    [row] = json.loads(done.stdout)["routes"]
    assert (row["partitions"], row["reason"]) == ([3], "operator pin (noisy since 10:02)")

    done = _run("tenant", "acme", "--csv")
    assert done.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["action"] for r in rows] == ["pin", "pin", "rejected", "unpin", "pin"]
    assert [r["to_epoch"] for r in rows] == ["1", "2", "", "3", "4"]

    done = _run("tenant", "nobody", "--json")
    assert done.exit_code == 1
    assert json.loads(done.stdout)["history"] == []

    done = _run("replay", "--topic", TOPIC, "--since", str(T0 + 1), "--json")
    assert len(json.loads(done.stdout)["timeline"]) == len(w.events) - 1

    ghost = Route(TOPIC, "ghost", (4,), 1)
    fake_read["input"] = AuditInput(
        RoutesLog.of([*w.records, RouteRecord(len(w.records), w.now, TOPIC, "ghost", ghost)]), w.events
    )
    done = _run("verify", "--settle", "0")
    assert done.exit_code == 1
    assert "orders/ghost" in done.stdout and "route-without-event" in done.stdout
    done = _run("verify", "--settle", "0", "--json")
    assert done.exit_code == 1
    assert {d["key"] for d in json.loads(done.stdout)["discrepancies"]} == {"orders/ghost"}

    # "-2h" is a time, not the options -2 and -h (help).
    done = _run("at", "-2h", "--json")
    assert done.exit_code == 0, done.output
    assert [r["partitions"] for r in json.loads(done.stdout)["routes"]] == [[2], [1, 4, 6]]
    done = _run("replay", "--since", "-1d", "--until", "-1h", "--tenant", "acme", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["timeline"] == []

    assert _run("verify", "--json", "--csv").exit_code == 2
    bad = _run("at", "half past ten")
    assert bad.exit_code == 2 and "cannot read 'half past ten' as a time" in bad.output


def test_verify_understands_a_topics_hash_base_expand_rebase_and_its_drop() -> None:
    from routing_app.control import drain as drains
    from routing_app.control.decide import decide_planned
    from routing_app.planner import PlannedChange, ReasonKind
    from routing_app.routes.model import HASH_BASE_TENANT

    w = FakeWriter()
    w.pin("acme", 3)
    key = route_key(TOPIC, HASH_BASE_TENANT)

    def drained(decision: Decision) -> None:
        current = w.routes.get(key)
        draining, drain = drains.start(
            decision, current, None, now_ms=w.now, timeout_ms=30_000, live_producers={"p"}
        )
        w.write(draining)
        w.tick(40)
        done = drains.finish(
            drain, draining.route, drains.Phase.DONE, drains.OnTimeout.ABORT, now_ms=w.now, worker_id="w-1"
        )
        w.write(done)

    expand = apply_command(
        ControlCommand(ControlAction.EXPAND, TOPIC, HASH_BASE_TENANT, w.now, (16,)),
        None,
        0,
        8,
        worker_id="w-1",
        now_ms=w.now,
    )
    drained(expand)  # the base, answered by the producers: expand (draining), drain-complete
    w.tick()
    w.command(ControlAction.EXPAND, HASH_BASE_TENANT, 32)  # grown again: the base is kept, no write
    w.command(ControlAction.REBASE, HASH_BASE_TENANT)
    w.tick()
    drop = PlannedChange(
        TOPIC,
        HASH_BASE_TENANT,
        ReasonKind.BASE_DROPPED.action,
        None,
        "rebase done",
        kind=ReasonKind.BASE_DROPPED,
    )
    decision = decide_planned(drop, w.routes[key], w.epochs[key], worker_id="w-1", now_ms=w.now)
    assert decision is not None and decision.tombstone
    drained(decision)
    actions = [e.event.action for e in w.events if e.event.tenant == HASH_BASE_TENANT]
    assert actions == ["expand", "drain-complete", "expand", "rebase", "rebase", "drain-complete"]
    assert key not in w.routes
    report = verify(w.log(), w.events)
    assert report.ok, report.discrepancies
    assert report.keys == 2 and report.route_changes == 6
    steps = timeline(w.events, w.log(), tenant=HASH_BASE_TENANT)
    assert [s.action for s in steps] == actions
