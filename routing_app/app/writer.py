"""The single route writer: turns decisions into routes-table writes and events. Worker-side I/O."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.app.codecs import UndecodableRoute
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.control import CONTROL_SCHEMA, ControlCommand, Decision, apply_command
from routing_app.routes import Route
from routing_app.routes.events import EVENT_SCHEMA
from routing_app.routes.model import route_key
from routing_app.topics import partition_count

log = logging.getLogger(__name__)

_PARTITION_COUNT_TTL_S = 30.0


class RouteWriter:
    def __init__(self, settings: Settings, registry: SchemaRegistryClient, routes: Any,
                 epochs: Any, events_topic: faust.TopicT, worker_id: str) -> None:
        self._settings = settings
        self._routes = routes
        self._epochs = epochs
        self._events_topic = events_topic
        self.worker_id = worker_id
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._partition_counts: dict[str, tuple[float, int | None]] = {}
        self.counters: dict[str, int] = {"commands_applied": 0, "commands_rejected": 0,
                                         "control_undecodable": 0}

    def current(self, topic: str, tenant: str) -> Route | None:
        value = self._routes.get(route_key(topic, tenant))
        return value if isinstance(value, Route) else None

    async def handle_command_bytes(self, raw: bytes | None, offset: int) -> None:
        try:
            command = ControlCommand.from_record(self._commands.decode(raw))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable command skipped: %s", offset, exc)
            return
        count = await self._partition_count(command.topic)
        key = route_key(command.topic, command.tenant)
        decision = apply_command(
            command, self.current(command.topic, command.tenant), int(self._epochs[key]),
            count, worker_id=self.worker_id, now_ms=int(time.time() * 1000))
        await self.apply(decision)

    async def apply(self, decision: Decision) -> None:
        """Writes the route change (if any) and appends its event."""
        event = decision.event
        key = route_key(event.topic, event.tenant)
        if decision.route is not None:
            self._epochs[key] = decision.route.epoch
            self._routes[key] = decision.route
        elif decision.tombstone:
            if event.to_epoch is not None:
                self._epochs[key] = event.to_epoch
            if isinstance(self._routes.get(key), Route | UndecodableRoute):
                del self._routes[key]
        await self._events_topic.send(key=key.encode("utf-8"),
                                      value=self._events.encode(event.to_record()))
        if event.applied:
            self.counters["commands_applied"] += 1
            log.info("%s %s -> %s (epoch %s): %s", event.action, key, list(event.to_partitions),
                     event.to_epoch, event.reason)
        else:
            self.counters["commands_rejected"] += 1
            log.warning("%s: %s", key, event.reason)

    async def _partition_count(self, topic: str) -> int | None:
        cached = self._partition_counts.get(topic)
        if cached is not None and time.monotonic() - cached[0] < _PARTITION_COUNT_TTL_S:
            return cached[1]
        count = await asyncio.to_thread(partition_count, self._settings.bootstrap, topic)
        self._partition_counts[topic] = (time.monotonic(), count)
        return count
