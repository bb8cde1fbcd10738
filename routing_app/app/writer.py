"""The single route writer: turns decisions into routes-table writes and events. Worker-side I/O.

Only the control agent calls it, and the control topic has one partition, so exactly one worker
writes routes at a time. Its tables (routes, epochs, planner state) are co-partitioned with the
control topic and move together to whichever worker takes that partition over.

This module is the writer's front door: the view the planner reads, and the write of each
decision. Its parts live next to it: its tables (``writer_tables``), reading its records
(``writer_records``), operators' rules (``writer_commands``), the events topic, route changes
written ahead and held closing events (``writer_events``), strict moves' drains
(``writer_drains``, asking the broker through ``writer_broker``), and repairs of routes it did
not write (``writer_repair``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust
from confluent_kafka.admin import OffsetSpec
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.app.producers import ProducerRoll, RollCalls
from routing_app.app.writer_broker import WriterBroker
from routing_app.app.writer_commands import OperatorCommands
from routing_app.app.writer_drains import DrainSupervisor
from routing_app.app.writer_events import EventLog
from routing_app.app.writer_records import RecordReader
from routing_app.app.writer_repair import RouteRepair
from routing_app.app.writer_tables import WriterTables
from routing_app.codec import AvroCodec
from routing_app.config import Settings
from routing_app.control import CONTROL_SCHEMA, ControlAction, Decision, apply_command
from routing_app.control.decision import rejected
from routing_app.control.drain import Drain, needs_drain
from routing_app.planner import PartitionKey, TenantHistory, TenantKey
from routing_app.planner.model import HashBase
from routing_app.routes import Route
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, drain_ack_subject
from routing_app.routes.events import EVENT_SCHEMA, REPAIR, ReassignmentEvent
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus, hash_base_of, route_key
from routing_app.topics import partition_count

log = logging.getLogger(__name__)

_PARTITION_COUNT_TTL_S = 30.0


class RouteWriter:
    """The writer's front door (WriterInput, the planning loop and the web views call it): the
    view the planner reads, and every write of the routes table, which it alone makes. The rest
    is delegated: a command's operator rules, the events (some held until the producers'
    release reports), the drains of strict moves, the repair of routes it did not write."""

    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistryClient,
        tables: WriterTables,
        events_topic: faust.TopicT,
        worker_id: str,
    ) -> None:
        self._settings = settings
        self.tables = tables
        self.worker_id = worker_id
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._acks = AvroCodec(
            registry,
            DRAIN_ACK_SCHEMA,
            settings.answers_topic,
            subject=drain_ack_subject(settings.answers_topic),
        )
        self._partition_counts: dict[str, tuple[float, int | None]] = {}
        self.counters: dict[str, int] = {
            "commands_applied": 0,
            "commands_rejected": 0,
            "control_undecodable": 0,
            "decisions": 0,
            "commands_unauthorized": 0,
            "messages_misplaced": 0,
            "foreign_routes": 0,
            "handler_errors": 0,
            "drains_started": 0,
            "drains_completed": 0,
            "drains_aborted": 0,
            "drains_forced": 0,
            "drain_acks": 0,
            "drain_acks_stale": 0,
            "routes_reasserted": 0,
            "release_reports": 0,
            "release_reports_late": 0,
        }
        window_ms = int(settings.window_s * 1000)
        # Who strict moves wait for: hellos, usage reports and answers (see control.drain).
        self.roll = ProducerRoll(tables.members, tables.closed, settings.producer_expiry, window_ms)
        self._broker = WriterBroker(settings)
        # When each drain's roll call is over (see control.drain). Late-bound: tests stub them.
        self.roll_calls = RollCalls(
            settings.answers_topic,
            lambda spec: self._answers_offsets(spec),
            lambda: self._answers_committed(),
        )
        self._records = RecordReader(settings, self._commands, self._acks, self.counters)
        self._operators = OperatorCommands(settings, tables, self.counters)
        self._event_log = EventLog(
            events_topic,
            self._events,
            tables.releases,
            self.counters,
            settings.drain_ack_grace_ms,
            tables.acks,
        )
        self._drains = DrainSupervisor(
            settings,
            tables,
            self.counters,
            self.roll,
            self.roll_calls,
            self._broker,
            lambda spec: self._answers_offsets(spec),
            self._write,
            worker_id,
        )
        self._repair = RouteRepair(tables, self.counters, self._write_put, worker_id)

    def codecs(self) -> tuple[AvroCodec, ...]:
        """The schemas this writer reads and writes (the worker resolves them at start)."""
        return self._commands, self._events, self._acks

    @property
    def control_topic(self) -> faust.TopicT | None:
        """Where drains send their wake-ups; set by the app."""
        return self._drains.control_topic

    @control_topic.setter
    def control_topic(self, topic: faust.TopicT | None) -> None:
        self._drains.control_topic = topic

    @property
    def recent(self) -> deque[ReassignmentEvent]:
        """The newest events this writer appended, newest last: for the live page and metrics."""
        return self._event_log.recent

    @property
    def listeners(self) -> list[Callable[[ReassignmentEvent], None]]:
        """Called with each event once the events topic took it (metrics count them)."""
        return self._event_log.listeners

    @property
    def decisions_by_action(self) -> dict[str, int]:
        return self._event_log.decisions_by_action

    # -- reading the writer's view -------------------------------------------------------------
    def current(self, topic: str, tenant: str) -> Route | None:
        return self.tables.route(route_key(topic, tenant))

    def last_epoch(self, key: str) -> int:
        return self.tables.last_epoch(key)

    def routes(self) -> dict[TenantKey, Route]:
        """Every tenant's route (topics' hash bases are not tenants: see hash_bases)."""
        return {
            (r.topic, r.tenant): r
            for r in self.tables.routes.values()
            if isinstance(r, Route) and r.tenant != HASH_BASE_TENANT
        }

    def hash_bases(self) -> dict[str, HashBase]:
        """The data topics that hash unrouted keys by a base (``topics expand``), draining or
        active: from the base's first write on, producers hash by it."""
        return {
            r.topic: HashBase.of(r)
            for r in self.tables.routes.values()
            if isinstance(r, Route) and r.tenant == HASH_BASE_TENANT
        }

    def history(self) -> dict[TenantKey, TenantHistory]:
        found: dict[TenantKey, TenantHistory] = {}
        for key, (moved, cool) in self.tables.history.items():
            found[_split_key(key)] = TenantHistory(None if moved < 0 else moved, None if cool < 0 else cool)
        return found

    def save_history(self, history: dict[TenantKey, TenantHistory] | Any) -> None:
        keep = {route_key(t, n): h for (t, n), h in history.items()}
        for key in [k for k in self.tables.history if k not in keep]:
            del self.tables.history[key]
        for key, h in keep.items():
            value = [
                -1 if h.last_moved_ms is None else h.last_moved_ms,
                -1 if h.cool_since_ms is None else h.cool_since_ms,
            ]
            if self.tables.history.get(key) != value:
                self.tables.history[key] = value

    def frozen(self) -> frozenset[TenantKey]:
        return frozenset(_split_key(k) for k in self.tables.frozen)

    def evacuated(self) -> frozenset[PartitionKey]:
        return frozenset((topic, int(p)) for topic, parts in self.tables.evacuated.items() for p in parts)

    async def partition_count(self, topic: str) -> int | None:
        cached = self._partition_counts.get(topic)
        base = hash_base_of(self.current(topic, HASH_BASE_TENANT))
        # A topic whose base equals its count is about to grow (topics expand): no cache, so
        # the planner fills the new partitions from its first window after the growth.
        fresh = base is None or cached is None or cached[1] != base
        if cached is not None and fresh and time.monotonic() - cached[0] < _PARTITION_COUNT_TTL_S:
            return cached[1]
        count = await asyncio.to_thread(partition_count, self._settings.kafka, topic)
        self._partition_counts[topic] = (time.monotonic(), count)
        return count

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        counts = {}
        for topic in sorted(set(topics)):
            count = await self.partition_count(topic)
            if count is not None:
                counts[topic] = count
        return counts

    # -- records meant for the writer ----------------------------------------------------------
    def misplaced(self, topic: str, kind: MessageKind | None, offset: int) -> None:
        """A record of a kind its topic must not carry: skipped, counted, logged."""
        self._records.misplaced(topic, kind, offset)

    async def handle_command_bytes(self, raw: bytes | None, offset: int) -> None:
        command = await self._records.command(raw, offset)
        if command is None:
            return
        refusal = self._operators.unauthorized(command, offset)
        if refusal is not None:
            await self._write(rejected(command, refusal, self.worker_id, _now_ms()))
            return
        if command.action is ControlAction.EXPAND:
            # The base must be the count the broker has now, not one cached a while ago.
            self._partition_counts.pop(command.topic, None)
        count = await self.partition_count(command.topic)
        key = route_key(command.topic, command.tenant)
        current = self.current(command.topic, command.tenant)
        refusal = self._operators.busy(command, current)
        if refusal is not None:
            await self._write(rejected(command, refusal, self.worker_id, _now_ms()))
            return
        decision = apply_command(
            command, current, self.last_epoch(key), count, worker_id=self.worker_id, now_ms=_now_ms()
        )
        if decision.event.applied:
            self._operators.keep_state(command)
        await self.apply(decision)

    # -- writing -------------------------------------------------------------------------------
    async def apply(self, decision: Decision) -> None:
        """Writes the decision; a move of a strict tenant starts as a drain (see control.drain)."""
        event = decision.event
        current = self.current(event.topic, event.tenant)
        if needs_drain(decision, current):
            count = await self.partition_count(event.topic)
            if count is not None:
                draining = self._drains.start(decision, current, count)
                if draining is not None:
                    try:
                        await self._write(draining)
                    finally:
                        # Kept only once its draining route is written: if that failed, it
                        # would wait for answers that never come, then abort a move nobody saw.
                        self._drains.drop_stale([route_key(event.topic, event.tenant)])
                    return
        await self._write(decision)

    async def _write(
        self,
        decision: Decision,
        *,
        release_from: Sequence[str] = (),
        put: Callable[[], None] | None = None,
    ) -> None:
        """Writes the route change (if any) and appends its event; with ``release_from`` (the
        end of a move) the event waits for those producers' release reports (see
        control.drain: held records). ``put`` writes the change to the table in place of
        _set_route (a repair: writer_repair)."""
        event = decision.event
        key = route_key(event.topic, event.tenant)
        # The previous move's closing event first: per key, events stay in decision order.
        await self._event_log.flush(key)
        if not decision.changes_route:
            await self._event_log.append(event)
            return
        # Written ahead and acknowledged before the route: from here on, a writer killed at any
        # instant leaves its successor this change to finish (see writer_events).
        await self._event_log.stage(key, decision, release_from)
        if put is None:
            self._set_route(key, decision)
        else:
            put()
        if not release_from:
            await self._event_log.flush(key)

    async def _write_put(self, decision: Decision, put: Callable[[], None] | None) -> None:
        await self._write(decision, put=put)

    def _set_route(self, key: str, decision: Decision) -> None:
        """The decision's route (or tombstone) in the table, and its epoch (which never goes
        down); nothing already there is written again."""
        epoch = decision.route.epoch if decision.route is not None else decision.event.to_epoch
        if epoch is not None and self.tables.last_epoch(key) < epoch:
            self.tables.epochs[key] = epoch
        if decision.route is not None:
            if self.tables.routes.get(key) != decision.route:
                self.tables.routes[key] = decision.route
        elif decision.tombstone and key in self.tables.routes:
            del self.tables.routes[key]

    async def recover(self) -> None:
        """At takeover (and start): finishes what the writer before left half-written.

        Each route change it wrote ahead and did not see out (writer_events): its route is
        written where the table lacks it, and its event appended (a closing event held for
        release reports waits for them again, for their grace). A draining route whose drain
        is not in the table was never acknowledged ahead (the drain is written before it), so
        neither the route nor its event was written: it is dropped. Then a drain whose
        draining route is not in the table is dropped too: its move never started (or has
        ended). A repair whose foreign route is still in the table is put back again
        (writer_repair)."""
        for key, decision in self._event_log.staged().items():
            route = decision.route
            if (
                route is not None
                and route.status is RouteStatus.DRAINING
                and not self._drains.started(key, route.epoch)
            ):
                log.warning("%s: a move the writer before did not start (no drain): dropped", key)
                self._event_log.discard(key)
                continue
            current = self.tables.route(key)
            if decision.event.action == REPAIR and self._repair.foreign_epoch(key, current):
                # A repair whose tombstone never reached the broker: the foreign route is
                # still there, and the writer's own (lower epoch) alone would be stale to readers.
                self._repair.put_back(key, current, decision.route)
                continue
            self._set_route(key, decision)
        self._drains.drop_stale()
        await self._event_log.resume(_now_ms())

    async def handle_release(self, raw: bytes | None, offset: int) -> None:
        """A producer released a moved tenant: how many records it held during the move."""
        report = await self._records.release_report(raw, offset)
        if report is not None:
            await self._event_log.released(report)

    async def flush_releases(self, now_ms: int | None = None) -> None:
        """Appends the closing events whose producers did not all report in time."""
        await self._event_log.flush_due(now_ms or _now_ms())

    # -- routes the writer did not write (see writer_repair) -----------------------------------
    async def reassert(self, key: str) -> None:
        await self._repair.reassert(key)

    def foreign_epoch(self, key: str, seen: Route | None) -> bool:
        return self._repair.foreign_epoch(key, seen)

    async def repair(self, key: str, seen: Route | None) -> None:
        await self._repair.repair(key, seen)

    async def repair_table(self) -> None:
        await self._repair.repair_table()

    # -- producers and drains ------------------------------------------------------------------
    def saw_producers(self, producer_ids: Iterable[str], seen_ms: int) -> None:
        for pid in producer_ids:
            self.roll.saw(pid, seen_ms)

    def producer_closed(self, raw: bytes | None) -> None:
        pid = (raw or b"").decode("utf-8", "replace")
        if self.roll.goodbye(pid, _now_ms()):
            log.info("producer %s closed; drains no longer wait for it", pid)

    def producer_hello(self, raw: bytes | None, offset: int) -> None:
        """A producer starting (or an idle one still there): live from now on, and a drain
        whose roll call it belongs to waits for it (see control.drain)."""
        pid = (raw or b"").decode("utf-8", "replace")
        if not pid:
            return
        if self.roll.hello(pid, _now_ms()):
            log.info("producer %s said hello; strict moves wait for it", pid)
        self._drains.join(pid, offset)

    def live_producers(self, now_ms: int | None = None) -> set[str]:
        return self.roll.live(now_ms or _now_ms())

    # The answers topic's offsets, for roll calls; tests stand in for the broker here.
    def _answers_committed(self) -> int:
        return self._broker.answers_resume()

    def _answers_offsets(self, spec: OffsetSpec) -> int:
        return self._broker.answers_offset(spec)

    def pending_drains(self) -> dict[str, Drain]:
        return self._drains.pending()

    async def handle_drain_ack(self, raw: bytes | None, offset: int) -> None:
        ack = await self._records.drain_ack(raw, offset)
        if ack is not None:
            await self._drains.acked(ack)

    async def check_drains(self, keys: Iterable[str] | None = None) -> None:
        """Ends the drains that are done or out of time; wakes itself for consumer waits. A
        tick (no ``keys``) also appends the closing events whose release reports are late."""
        now = _now_ms()
        if keys is None:
            await self.flush_releases(now)
        await self._drains.check(keys, now)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_key(key: str) -> TenantKey:
    topic, _, tenant = key.partition("/")
    return topic, tenant
