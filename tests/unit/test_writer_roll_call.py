"""The route writer's roll call (control.drain): which producers a strict move waits for, from
their hellos and the answers topic's end offset, through WriterInput as records come. No Kafka:
tables are dicts, the broker's offsets and the worker's route cache are stand-ins."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from routing_app.app.writer import RouteWriter
from routing_app.app.writer_input import WriterInput
from routing_app.app.writer_tables import WriterTables
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlCommand
from routing_app.control.decide import apply_command
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteStatus, route_key
from tests.unit.writer_fakes import Answers, Event, Message, RoutesRead

TOPIC, TENANT = "orders", "acme"
KEY = route_key(TOPIC, TENANT)
_registries = itertools.count()


class Topic:
    async def send(self, **_: object) -> None:
        return None


class Plane:
    """A writer and its input, the answers topic and the clock of the broker's offsets."""

    def __init__(self, tables: WriterTables | None = None) -> None:
        self.settings = Settings(producer_expiry_ms=60_000)
        self.tables = tables or WriterTables(
            routes={}, epochs={}, history={}, frozen={}, evacuated={}, drains={}
        )
        registry = registry_client(f"mock://roll-call-{next(_registries)}")
        self.writer = RouteWriter(
            self.settings,
            registry,
            self.tables,
            Topic(),  # type: ignore[arg-type]
            "w",
        )
        self.routes = RoutesRead(self.tables)
        self.input = WriterInput(
            _App(),
            self.writer,
            None,  # type: ignore[arg-type]
            self.routes,  # type: ignore[arg-type]
            Topic(),  # type: ignore[arg-type]
            self.settings.answers_topic,
        )
        self.answers = Answers(self.settings.answers_topic)
        # What the broker says: where this worker's group resumes (after a takeover).
        self.committed = 0
        self.control_offset = 0

        async def twelve(topic: str) -> int | None:
            return 12

        self.writer.partition_count = twelve  # type: ignore[method-assign]
        self.writer._answers_offsets = lambda spec: self.answers.end  # type: ignore[method-assign]
        self.writer._answers_committed = lambda: self.committed  # type: ignore[method-assign]

    def hello(self, producer_id: str) -> Event:
        return self.answers.write(MessageKind.PRODUCER_HELLO, producer_id.encode(), producer_id.encode())

    def ack(self, producer_id: str) -> Event:
        drain = self.writer.pending_drains()[KEY]
        ack = DrainAck(producer_id, TOPIC, TENANT, drain.epoch, {3: 10}, acked_at_ms=_now())
        return self.answers.write(
            MessageKind.DRAIN_ACK, KEY.encode(), self.writer._acks.encode(ack.to_record())
        )

    def read(self, *events: Event) -> None:
        for event in events:
            asyncio.run(self.input.handle(event))

    def move(self) -> None:
        """Pins the tenant elsewhere: a strict move, so a drain."""
        command = ControlCommand(ControlAction.PIN, TOPIC, TENANT, _now(), (7,), issued_by="op")
        decision = apply_command(
            command,
            self.writer.current(TOPIC, TENANT),
            self.writer.last_epoch(KEY),
            12,
            worker_id="w",
            now_ms=_now(),
        )
        asyncio.run(self.writer.apply(decision))
        if not self.routes.lagging:
            self.cache_read_the_route()

    def cache_read_the_route(self) -> None:
        """What WriterInput's cache listener sends when the cache reads a draining route."""
        self.control_offset += 1
        check = Event(
            Message(self.settings.control_topic, self.control_offset, [MessageKind.DRAIN_CHECK.header]),
            KEY.encode(),
            b"",
        )
        asyncio.run(self.input.handle(check))

    @property
    def draining(self) -> bool:
        route = self.tables.routes.get(KEY)
        return KEY in self.tables.drains and route is not None and (route.status is RouteStatus.DRAINING)

    def ended_waiting_for(self) -> float:
        """The move is over (active); how many producers its closing event says it expected."""
        route = self.tables.routes.get(KEY)
        assert route is not None and route.status is RouteStatus.ACTIVE, route
        assert KEY not in self.tables.drains
        if KEY in self.tables.releases:  # the closing event waits for the release reports
            observed = self.tables.releases[KEY]["event"]["observed"]
        else:
            observed = next(e.observed for e in reversed(self.writer.recent) if e.action == "drain-complete")
        return float(observed["producers_expected"])


class _App:
    loop: Any = None

    def is_writer(self) -> bool:
        return True


def _now() -> int:
    import time

    return int(time.time() * 1000)


@pytest.fixture
def plane() -> Plane:
    return Plane()


def test_a_producer_known_only_by_its_hello_is_waited_for(plane: Plane) -> None:
    plane.read(plane.hello("p1"))  # no usage report from it yet: only the hello
    plane.move()
    assert plane.draining, "p1 may have read the routes before the move: it must answer"
    plane.read(plane.ack("p1"))
    assert plane.ended_waiting_for() == 1


def test_without_producers_the_move_ends_as_it_starts(plane: Plane) -> None:
    plane.move()
    assert plane.ended_waiting_for() == 0


def test_a_hello_after_the_moves_end_offset_is_not_waited_for(plane: Plane) -> None:
    plane.read(plane.hello("p1"))
    plane.move()
    # p2 said hello after the draining route was committed: it reads that route before its
    # first send, so the move does not wait for it (its hello is read, it is live).
    plane.read(plane.hello("p2"))
    assert "p2" in plane.writer.live_producers()
    plane.read(plane.ack("p1"))
    assert plane.ended_waiting_for() == 1


def test_a_hello_written_before_the_move_but_read_after_joins_it(plane: Plane) -> None:
    late = plane.hello("p2")  # on the topic before the move starts; the writer reads it after
    plane.move()
    assert plane.draining, "the answers topic is not read up to the move's end offset yet"
    plane.read(late)
    assert plane.draining, "p2 may have read the routes before the move: it must answer"
    assert plane.writer.pending_drains()[KEY].expected == {"p2"}
    plane.read(plane.ack("p2"))
    assert plane.ended_waiting_for() == 1


def test_the_roll_call_waits_for_the_draining_route_to_be_committed(plane: Plane) -> None:
    plane.read(plane.hello("p1"))
    plane.routes.lagging = True  # the worker's cache has not read the draining route yet
    plane.move()
    late = plane.hello("p2")  # after the draining route was written, before it was committed
    plane.read(late, plane.ack("p1"))
    assert plane.draining
    assert plane.writer.pending_drains()[KEY].expected == {"p1", "p2"}
    plane.read(plane.ack("p2"))
    assert plane.draining, "its draining route may not be committed yet: p3 may come"
    plane.routes.lagging = False
    plane.cache_read_the_route()
    assert plane.ended_waiting_for() == 2


def test_a_goodbye_ends_the_wait_and_a_new_hello_brings_the_producer_back(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A producer gone without answering: the old partitions' end offsets stand in for it.
    monkeypatch.setattr("routing_app.app.writer_broker.admin_client", lambda _: object())
    monkeypatch.setattr("routing_app.app.writer_broker.end_offsets", lambda *_: {3: 0})
    plane.read(plane.hello("p1"))
    plane.move()
    plane.read(plane.answers.write(MessageKind.PRODUCER_CLOSED, b"p1", b"p1"))
    assert plane.ended_waiting_for() == 1
    plane.read(plane.hello("p1"))  # restarted under the same id
    assert "p1" in plane.writer.live_producers()


def test_the_writer_that_takes_over_knows_who_said_hello_before(plane: Plane) -> None:
    plane.read(plane.hello("p1"))
    plane.committed = plane.answers.end  # the hello is behind the group's committed offset
    successor = Plane(plane.tables)  # the same tables, restored from their changelogs
    successor.answers, successor.committed = plane.answers, plane.committed
    successor.input.took_over()
    successor.move()
    assert successor.draining, "the hello was read by the writer before: p1 must answer"
    successor.read(successor.ack("p1"))
    assert successor.ended_waiting_for() == 1
