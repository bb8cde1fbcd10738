"""The single route writer: turns decisions into routes-table writes and events. Worker-side I/O.

Only the control agent calls it, and the control topic has one partition, so exactly one worker
writes routes at a time. Its tables (routes, epochs, planner state) are co-partitioned with the
control topic and move together to whichever worker takes that partition over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.control import (
    CONTROL_SCHEMA,
    ControlAction,
    ControlCommand,
    Decision,
    apply_command,
)
from routing_app.planner import PartitionKey, TenantHistory, TenantKey
from routing_app.routes import Route
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.routes.model import route_key
from routing_app.topics import partition_count

log = logging.getLogger(__name__)

_PARTITION_COUNT_TTL_S = 30.0
RECENT_EVENTS = 200


@dataclass
class WriterTables:
    routes: Any  # route key -> Route (changelog: the routes topic)
    epochs: Any  # route key -> highest epoch ever written (survives tombstones)
    history: Any  # route key -> [last_moved_ms, cool_since_ms] (-1 = none)
    frozen: Any  # route key -> True
    drained: Any  # data topic -> sorted partition list


class RouteWriter:
    def __init__(self, settings: Settings, registry: SchemaRegistryClient, tables: WriterTables,
                 events_topic: faust.TopicT, worker_id: str) -> None:
        self._settings = settings
        self.tables = tables
        self._events_topic = events_topic
        self.worker_id = worker_id
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._partition_counts: dict[str, tuple[float, int | None]] = {}
        self.counters: dict[str, int] = {"commands_applied": 0, "commands_rejected": 0,
                                         "control_undecodable": 0, "decisions": 0}
        self.decisions_by_action: dict[str, int] = {}
        # The newest events this writer appended, newest last: for the live page and metrics.
        self.recent: deque[ReassignmentEvent] = deque(maxlen=RECENT_EVENTS)

    # -- reading the writer's view -------------------------------------------------------------
    def current(self, topic: str, tenant: str) -> Route | None:
        value = self.tables.routes.get(route_key(topic, tenant))
        return value if isinstance(value, Route) else None

    def last_epoch(self, key: str) -> int:
        return int(self.tables.epochs.get(key) or 0)

    def routes(self) -> dict[TenantKey, Route]:
        return {(r.topic, r.tenant): r for r in self.tables.routes.values()
                if isinstance(r, Route)}

    def history(self) -> dict[TenantKey, TenantHistory]:
        found: dict[TenantKey, TenantHistory] = {}
        for key, (moved, cool) in self.tables.history.items():
            found[_split_key(key)] = TenantHistory(None if moved < 0 else moved,
                                                   None if cool < 0 else cool)
        return found

    def save_history(self, history: dict[TenantKey, TenantHistory] | Any) -> None:
        keep = {route_key(t, n): h for (t, n), h in history.items()}
        for key in [k for k in self.tables.history if k not in keep]:
            del self.tables.history[key]
        for key, h in keep.items():
            value = [-1 if h.last_moved_ms is None else h.last_moved_ms,
                     -1 if h.cool_since_ms is None else h.cool_since_ms]
            if self.tables.history.get(key) != value:
                self.tables.history[key] = value

    def frozen(self) -> frozenset[TenantKey]:
        return frozenset(_split_key(k) for k in self.tables.frozen)

    def drained(self) -> frozenset[PartitionKey]:
        return frozenset((topic, int(p)) for topic, parts in self.tables.drained.items()
                         for p in parts)

    async def partition_count(self, topic: str) -> int | None:
        cached = self._partition_counts.get(topic)
        if cached is not None and time.monotonic() - cached[0] < _PARTITION_COUNT_TTL_S:
            return cached[1]
        count = await asyncio.to_thread(partition_count, self._settings.bootstrap, topic)
        self._partition_counts[topic] = (time.monotonic(), count)
        return count

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        counts = {}
        for topic in sorted(set(topics)):
            count = await self.partition_count(topic)
            if count is not None:
                counts[topic] = count
        return counts

    # -- writing -------------------------------------------------------------------------------
    async def handle_command_bytes(self, raw: bytes | None, offset: int) -> None:
        try:
            command = ControlCommand.from_record(self._commands.decode(raw))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable command skipped: %s", offset, exc)
            return
        count = await self.partition_count(command.topic)
        key = route_key(command.topic, command.tenant)
        decision = apply_command(
            command, self.current(command.topic, command.tenant), self.last_epoch(key),
            count, worker_id=self.worker_id, now_ms=int(time.time() * 1000))
        if decision.event.applied:
            self._apply_operator_state(command)
        await self.apply(decision)

    def _apply_operator_state(self, command: ControlCommand) -> None:
        key = route_key(command.topic, command.tenant)
        if command.action is ControlAction.FREEZE:
            self.tables.frozen[key] = True
        elif command.action is ControlAction.UNFREEZE and key in self.tables.frozen:
            del self.tables.frozen[key]
        elif command.action is ControlAction.DRAIN:
            if command.partitions:
                self.tables.drained[command.topic] = sorted(set(command.partitions))
            elif command.topic in self.tables.drained:
                del self.tables.drained[command.topic]

    async def apply(self, decision: Decision) -> None:
        """Writes the route change (if any) and appends its event."""
        event = decision.event
        key = route_key(event.topic, event.tenant)
        if decision.route is not None:
            self.tables.epochs[key] = decision.route.epoch
            self.tables.routes[key] = decision.route
        elif decision.tombstone:
            if event.to_epoch is not None:
                self.tables.epochs[key] = event.to_epoch
            if key in self.tables.routes:
                del self.tables.routes[key]
        await self._events_topic.send(key=key.encode("utf-8"),
                                      value=self._events.encode(event.to_record()))
        self.recent.append(event)
        if event.command_id is None:
            self.counters["decisions"] += 1
            self.decisions_by_action[event.action] = self.decisions_by_action.get(
                event.action, 0) + 1
        elif event.applied:
            self.counters["commands_applied"] += 1
        else:
            self.counters["commands_rejected"] += 1
        log_at = logging.INFO if event.applied else logging.WARNING
        log.log(log_at, "%s %s -> %s (epoch %s): %s", event.action, key,
                list(event.to_partitions), event.to_epoch, event.reason)


def _split_key(key: str) -> TenantKey:
    topic, _, tenant = key.partition("/")
    return topic, tenant
