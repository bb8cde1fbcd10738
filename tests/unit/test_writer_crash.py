"""A route writer killed at any instant, and the writer that takes over: the routes topic and the
events topic still agree (`audit verify`), and no move is left half done.

No Kafka. The writer's tables are dicts whose every write sends a changelog record to a stand-in
broker, as Faust does; the events topic sends there too. The broker keeps what was acknowledged
(the writer waited for it: WriterTables.acks) and, of what was not, any prefix of each topic's
records: a partition keeps its records in order, but what a dead producer had in flight to
different partitions may be there or not, whatever order it was sent in. The writer
is killed after each record it sends, with each such choice of what the broker kept; a new
writer is restored from what the broker kept (its tables from their changelogs) and takes over,
reading the producers' answers again from the start, as a worker after a takeover does.

The failure this was written for (tests/e2e/test_expand.py, planner killed -9 mid-fill): the
route of a finished strict move was on the routes topic, its closing event (held for the
producers' release reports) in no changelog, so nobody ever appended it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest

from routing_app.app.main import writer_table
from routing_app.app.writer import RouteWriter
from routing_app.app.writer_input import WriterInput
from routing_app.app.writer_tables import Acknowledgements, WriterTables
from routing_app.audit.consistency import verify
from routing_app.audit.records import EventRecord, RouteRecord, RoutesLog
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlCommand
from routing_app.control.decide import apply_command
from routing_app.routes import Route
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteMode, RouteStatus, parse_route_key, route_key
from tests.unit.writer_fakes import Answers, Event, Message, RoutesRead

TOPIC = "orders"
ACME = route_key(TOPIC, "acme")
EVENTS = "events"
TABLES = ("routes", "epochs", "history", "frozen", "evacuated", "drains", "releases", "closed", "members")
REGISTRY = registry_client("mock://writer-crash")


@dataclass(frozen=True)
class Sent:
    stream: str  # a table's changelog, or EVENTS
    key: str
    value: Any  # None: a tombstone


@dataclass
class Broker:
    """What the writer sent, and where it waited for the broker's acknowledgements."""

    sent: list[Sent] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)  # len(sent) at each wait

    def send(self, stream: str, key: str, value: Any) -> None:
        self.sent.append(Sent(stream, key, value))

    def kept(self, killed_after: int) -> Iterator[list[Sent]]:
        """What the broker may hold of a writer killed after its first ``killed_after`` sends:
        everything before a wait it came back from, and of the rest a prefix per topic."""
        acked = max((w for w in self.waits if w < killed_after), default=0)
        loose: dict[str, list[Sent]] = defaultdict(list)
        for s in self.sent[acked:killed_after]:
            loose[s.stream].append(s)
        streams = sorted(loose)
        # None, the first, all but the last, or all of each topic's records in flight.
        choices = [sorted({0, 1, len(loose[s]) - 1, len(loose[s])}) for s in streams]
        for lengths in itertools.product(*choices):
            kept = {id(s) for stream, n in zip(streams, lengths, strict=True) for s in loose[stream][:n]}
            yield self.sent[:acked] + [s for s in self.sent[acked:killed_after] if id(s) in kept]


class BrokerAcks(Acknowledgements):
    """Waiting for the acknowledgements: the broker has everything sent so far."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self._broker = broker

    async def wait(self) -> None:
        self._broker.waits.append(len(self._broker.sent))


class Changelogged(dict[str, Any]):
    """A writer table as Faust keeps one: it changes at once, its changelog record is sent."""

    def __init__(self, name: str, broker: Broker, restored: dict[str, Any]) -> None:
        super().__init__(restored)
        self._name, self._broker = name, broker

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._broker.send(self._name, key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._broker.send(self._name, key, None)


class EventsTopic:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def send(self, *, key: bytes, value: bytes) -> None:
        self._broker.send(EVENTS, key.decode(), value)


class App:
    loop: Any = None

    def is_writer(self) -> bool:
        return True


class Worker:
    """A writer and its input, on tables restored from what the broker kept."""

    def __init__(self, answers: Answers, kept: Sequence[Sent] = ()) -> None:
        self.broker = Broker()
        restored: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
        for s in kept:
            if s.stream == EVENTS:
                continue
            if s.value is None:
                restored[s.stream].pop(s.key, None)
            else:  # as read back from a JSON changelog (the routes topic's codec keeps a Route)
                restored[s.stream][s.key] = (
                    s.value if s.stream == "routes" else json.loads(json.dumps(s.value))
                )
        table = {name: Changelogged(name, self.broker, restored[name]) for name in TABLES}
        tables = WriterTables(
            routes=table["routes"],
            epochs=table["epochs"],
            history=table["history"],
            frozen=table["frozen"],
            evacuated=table["evacuated"],
            drains=table["drains"],
            releases=table["releases"],
            closed=table["closed"],
            members=table["members"],
        )
        # Set apart from the constructor so that this test runs on the writer of before the
        # write-ahead too (it fails there: test_a_writer_killed_just_after_...).
        tables.acks = BrokerAcks(self.broker)
        self.settings = Settings(producer_expiry_ms=60_000)
        self.tables = tables
        self.writer = RouteWriter(self.settings, REGISTRY, tables, EventsTopic(self.broker), "w")  # type: ignore[arg-type]
        self.routes = RoutesRead(tables)
        self.input = WriterInput(
            App(),
            self.writer,
            None,  # type: ignore[arg-type]
            self.routes,  # type: ignore[arg-type]
            EventsTopic(self.broker),  # type: ignore[arg-type]
            self.settings.answers_topic,
        )
        self.answers = answers
        self.control_offset = 0

        async def twelve(topic: str) -> int | None:
            return 12

        self.writer.partition_count = twelve  # type: ignore[method-assign]
        self.writer._answers_offsets = lambda spec: answers.end  # type: ignore[method-assign]
        self.writer._answers_committed = lambda: 0  # type: ignore[method-assign]

    def handle(self, event: Event) -> None:
        asyncio.run(self.input.handle(event))

    def control(self, kind: MessageKind, key: str = "", value: bytes = b"") -> None:
        """A record on the control topic: what the worker's cache, ticks and operators send."""
        self.control_offset += 1
        self.handle(
            Event(
                Message(self.settings.control_topic, self.control_offset, [kind.header]), key.encode(), value
            )
        )

    def answer(self, kind: MessageKind, key: str, value: bytes) -> None:
        self.handle(self.answers.write(kind, key.encode(), value))

    def command(
        self, action: ControlAction, tenant: str, *partitions: int, mode: RouteMode | None = None
    ) -> None:
        command = ControlCommand(action, TOPIC, tenant, _now(), partitions, mode, issued_by="op")
        key = route_key(TOPIC, tenant)
        decision = apply_command(
            command,
            self.writer.current(TOPIC, tenant),
            self.writer.last_epoch(key),
            12,
            worker_id="w",
            now_ms=_now(),
        )
        # What handle_command_bytes does with a command (without the control topic's codec).
        asyncio.run(self.writer.apply(decision))

    def strict_move_of_acme(self, producer_id: str) -> None:
        """The worker's cache reads the draining route, the producer answers; the move ends,
        its closing event held until the producer's release report, which follows."""
        self.control(MessageKind.DRAIN_CHECK, ACME)
        assert self.tables.routes[ACME].status is RouteStatus.DRAINING
        self.answer(MessageKind.DRAIN_ACK, ACME, self.answer_for_acme(producer_id))
        assert ACME not in self.tables.drains and ACME in self.tables.releases, "held for the report"
        self.answer(MessageKind.DRAIN_RELEASED, ACME, self.answer_for_acme(producer_id))
        assert ACME not in self.tables.releases

    def answer_for_acme(self, producer_id: str) -> bytes:
        """A drain ack, or a release report: what the producer held during acme's move."""
        epoch = self.writer.last_epoch(ACME)
        ack = DrainAck(producer_id, TOPIC, "acme", epoch, {3: 10}, held=4, acked_at_ms=_now())
        return self.writer._acks.encode(ack.to_record())


def _now() -> int:
    return int(time.time() * 1000)


def run_the_dead_writer() -> tuple[Worker, Answers]:
    """The writer that will be killed, through to the end: a producer says hello, acme moves
    strictly (drain start, the producer's ack, the end held for its release report, the report),
    bigco is pinned relaxed (no drain), a command is refused (an event, no route), and acme goes
    back to default hashing strictly (its move ends in a tombstone)."""
    answers = Answers(Settings().answers_topic)
    worker = Worker(answers)
    worker.answer(MessageKind.PRODUCER_HELLO, "p1", b"p1")
    worker.command(ControlAction.PIN, "acme", 7)
    worker.strict_move_of_acme("p1")
    assert worker.tables.routes[ACME].status is RouteStatus.ACTIVE
    worker.command(ControlAction.PIN, "bigco", 2, mode=RouteMode.RELAXED)
    worker.command(ControlAction.PIN, "acme", 99)  # no partition 99: refused
    worker.command(ControlAction.UNPIN, "acme")
    worker.strict_move_of_acme("p1")
    assert ACME not in worker.tables.routes
    return worker, answers


def take_over(answers: Answers, kept: list[Sent]) -> tuple[Worker, list[Sent]]:
    """The next writer, restored from ``kept``: it reads the answers topic again from the start
    (its group committed nothing), ticks, and lets every held closing event's bound pass."""
    successor = Worker(Answers(answers.topic), kept)
    successor.input.took_over()
    for record in answers.written:
        successor.answers.written.append(record)
        successor.handle(record)
    successor.control(MessageKind.DRAIN_CHECK)  # a tick: every drain, every due event
    asyncio.run(successor.writer.flush_releases(_now() + 60_000))
    return successor, kept + successor.broker.sent


def discrepancies(log: list[Sent], worker: Worker) -> list[str]:
    """What `audit verify` says of the two topics, and any move left half done."""
    codec = worker.writer._events
    routes: list[RouteRecord] = []
    events: list[EventRecord] = []
    for s in log:
        if s.stream == "routes":
            topic, tenant = parse_route_key(s.key)
            route = s.value if isinstance(s.value, Route) else None
            routes.append(RouteRecord(len(routes), 0, topic, tenant, route))
        elif s.stream == EVENTS:
            events.append(EventRecord(len(events), 0, ReassignmentEvent.from_record(codec.decode(s.value))))
    found = [f"{d.key} {d.kind}: {d.found}" for d in verify(RoutesLog.of(routes), events).discrepancies]
    tables = worker.tables
    found += [f"{key}: a drain left" for key in tables.drains]
    found += [f"{key}: an event never appended" for key in tables.releases]
    found += [
        f"{key}: draining, and nothing will end it"
        for key, route in tables.routes.items()
        if route.status is RouteStatus.DRAINING
    ]
    return found


def test_the_whole_history_is_consistent_without_a_kill() -> None:
    worker, _ = run_the_dead_writer()
    assert discrepancies(worker.broker.sent, worker) == []


def test_a_writer_killed_after_any_record_leaves_both_topics_in_agreement() -> None:
    dead, answers = run_the_dead_writer()
    sent = dead.broker.sent
    tried = 0
    for killed_after in range(len(sent) + 1):
        for kept in dead.broker.kept(killed_after):
            successor, log = take_over(answers, kept)
            found = discrepancies(log, successor)
            tried += 1
            assert not found, _story(sent, killed_after, kept, found)
    assert tried > len(sent)


def test_a_writer_killed_just_after_the_end_of_a_move_reached_the_routes_topic() -> None:
    """The e2e failure itself: killed once the finished move's route was on the broker (and
    everything sent before it), its closing event still held for the producer's release
    report. Before the write-ahead, that event was in no changelog: `audit verify` found the
    route with no event, and the events' replay still draining."""
    dead, answers = run_the_dead_writer()
    sent = dead.broker.sent
    active = next(
        i
        for i, s in enumerate(sent)
        if s.stream == "routes" and isinstance(s.value, Route) and s.value.status is RouteStatus.ACTIVE
    )
    successor, log = take_over(answers, sent[: active + 1])
    assert discrepancies(log, successor) == []
    closing = [
        e
        for e in (
            ReassignmentEvent.from_record(dead.writer._events.decode(s.value))
            for s in log
            if s.stream == EVENTS
        )
        if e.action == "drain-complete"
    ]
    # Appended by the successor, with the release report it read again.
    assert len(closing) == 1 and closing[0].observed["held_reports"] == 1.0, closing


BIGCO = route_key(TOPIC, "bigco")


def run_a_repair(forged_tombstone: bool = False) -> tuple[Worker, Answers, Route, int]:
    """The writer that will be killed: bigco is pinned (relaxed: no drain), somebody else writes
    a route of a higher epoch (or a tombstone) under its key, the worker's cache reads it and
    asks for a check, and the writer puts its route back (a tombstone, then its route)."""
    answers = Answers(Settings().answers_topic)
    worker = Worker(answers)
    worker.command(ControlAction.PIN, "bigco", 2, mode=RouteMode.RELAXED)
    mine = worker.tables.routes[BIGCO]
    forged = None if forged_tombstone else dataclasses.replace(mine, partitions=(5,), epoch=mine.epoch + 40)
    forged_at = len(worker.broker.sent)
    worker.broker.send("routes", BIGCO, forged)  # not the writer's: its table never saw it
    worker.broker.waits.append(len(worker.broker.sent))
    worker.routes.get = lambda topic, tenant: forged  # type: ignore[method-assign]
    worker.control(MessageKind.ROUTE_CHECK, BIGCO)
    assert worker.tables.routes[BIGCO] == mine
    return worker, answers, mine, forged_at


@pytest.mark.parametrize("forged_tombstone", [False, True], ids=["forged-route", "forged-tombstone"])
def test_a_writer_killed_during_a_repair_leaves_the_tenant_routed_and_the_repair_told(
    forged_tombstone: bool,
) -> None:
    """Killed after any record of a repair: the tenant keeps the writer's route on the topic,
    and the repair's event is there. Before repairs were written ahead, a kill after the
    tombstone over a forged route left the tenant on default hashing, with no event."""
    dead, answers, mine, forged_at = run_a_repair(forged_tombstone)
    sent = dead.broker.sent
    # Killed once the repair is written ahead (the pin and the forgery acknowledged before it).
    # Killed before that, the successor takes the topic as it finds it: it adopts a forged route
    # (test_a_foreign_route_restored_into_the_table_is_adopted_as_found), and a forged tombstone
    # leaves the tenant unrouted (not covered: only the events topic still names its route).
    # With no wait for the write-ahead (the code before it): from the repair's first record on.
    staged = min((w for w in dead.broker.waits if w > forged_at + 1), default=forged_at + 1)
    first = staged + 1
    tried = 0
    for killed_after in range(first, len(sent) + 1):
        for kept in dead.broker.kept(killed_after):
            successor, log = take_over(answers, kept)
            # The check's control record, redelivered (its offset was not committed).
            successor.control(MessageKind.ROUTE_CHECK, BIGCO)
            log = kept + successor.broker.sent
            found = discrepancies(log, successor)
            # The forgery itself is reported, once, as a record the writer repaired.
            forgery = "default hashing (tombstone)" if forged_tombstone else "[5] epoch 41"
            tried += 1
            assert len(found) == 1, _story(sent, killed_after, kept, found)
            assert forgery in found[0] and "the writer repaired it" in found[0], _story(
                sent, killed_after, kept, found
            )
            assert successor.tables.routes.get(BIGCO) == mine
            last = [s.value for s in log if s.stream == "routes" and s.key == BIGCO][-1]
            assert last == mine, _story(sent, killed_after, kept, found)
    assert tried >= len(sent) - first


def test_a_foreign_route_restored_into_the_table_is_adopted_as_found() -> None:
    """A route somebody wrote while no writer ran, with an epoch the writer never issued, is all
    the restored table holds for the key, and producers follow it: the new writer keeps it
    (removing it would move the tenant without a drain), counts its epoch as issued, writes
    nothing to the routes topic, and says so in an ``adopt`` event that the audit replays. A
    later takeover does not adopt it again; the next decision takes a higher epoch."""
    answers = Answers(Settings().answers_topic)
    dead = Worker(answers)
    dead.command(ControlAction.PIN, "bigco", 2, mode=RouteMode.RELAXED)
    mine = dead.tables.routes[BIGCO]
    forged = dataclasses.replace(mine, partitions=(5,), epoch=mine.epoch + 40)
    kept = [*dead.broker.sent, Sent("routes", BIGCO, forged)]
    successor, log = take_over(answers, kept)
    successor.control(MessageKind.ROUTE_CHECK, BIGCO)  # what its cache asks on reading it
    log = kept + successor.broker.sent
    assert successor.tables.routes[BIGCO] == forged
    assert successor.writer.last_epoch(BIGCO) == forged.epoch
    assert not [s for s in successor.broker.sent if s.stream == "routes"], "nothing written"
    events = [
        ReassignmentEvent.from_record(successor.writer._events.decode(s.value))
        for s in log
        if s.stream == EVENTS
    ]
    adopted = events[-1]
    assert (adopted.action, adopted.to_partitions, adopted.to_epoch) == ("adopt", (5,), forged.epoch)
    assert adopted.from_epoch == mine.epoch
    assert discrepancies(log, successor) == []

    again, log = take_over(answers, log)
    assert not [s for s in again.broker.sent if s.stream in ("routes", EVENTS)], "adopted once"
    again.command(ControlAction.PIN, "bigco", 3, mode=RouteMode.RELAXED)
    assert again.tables.routes[BIGCO].epoch == forged.epoch + 1
    assert discrepancies(log + again.broker.sent, again) == []


def test_the_writer_waits_until_the_broker_has_every_record_its_tables_sent() -> None:
    """What the write-ahead stands on, with Faust's tables: a writer table reports each
    changelog record it sends, and waiting returns only once every one is acknowledged (and
    raises if one failed)."""

    async def scenario() -> None:
        app = faust.App("writer-crash-acks", broker="kafka://127.0.0.1:1", store="memory://")
        acks = Acknowledgements()
        table = writer_table(app, "entries", acks)
        sent = [table.send_changelog(0, key, {"n": 1}) for key in ("a", "b")]
        waiting = asyncio.ensure_future(acks.wait())
        _acknowledge(sent[0])
        await asyncio.sleep(0.01)
        assert not waiting.done(), "b is not acknowledged yet"
        _acknowledge(sent[1])
        await asyncio.wait_for(waiting, 1)
        failed = table.send_changelog(0, "c", None)
        failed.set_exception(RuntimeError("broker said no"))
        with pytest.raises(RuntimeError, match="broker said no"):
            await acks.wait()
        await acks.wait()  # nothing left to wait for

    asyncio.run(scenario())


def _acknowledge(sent: asyncio.Future[Any]) -> None:
    sent.set_result(None)  # the broker's answer (its metadata is of no use here)


def _story(sent: list[Sent], killed_after: int, kept: list[Sent], found: list[str]) -> str:
    lines = [f"killed after {killed_after} of {len(sent)} records; the broker kept:"]
    for i, s in enumerate(sent[:killed_after]):
        mark = "kept" if any(s is k for k in kept) else "LOST"
        value = s.value if not isinstance(s.value, Route) else f"{s.value.status.value} epoch {s.value.epoch}"
        lines.append(f"  {i:2} {mark:4} {s.stream:9} {s.key:12} {str(value)[:70]}")
    return "\n".join([*lines, "found:", *found])


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR")
