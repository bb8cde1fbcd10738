"""Sends operator commands to the route writer and waits for its answer on the events topic."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import Settings
from routing_app.control.commands import CONTROL_SCHEMA, ControlCommand
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.routes.model import route_key


class ControlClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        registry = registry_client(settings.registry_url)
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._producer = Producer({"bootstrap.servers": settings.bootstrap, "acks": "all",
                                   "enable.idempotence": True})

    def send(self, command: ControlCommand, wait_s: float = 15.0) -> ReassignmentEvent | None:
        """The writer's event for the command (applied or rejected); None if none came in time."""
        consumer = Consumer({"bootstrap.servers": self._settings.bootstrap,
                             "group.id": f"routing-app-cli-{uuid.uuid4()}",
                             "enable.auto.commit": False})
        try:
            events = TopicPartition(self._settings.events_topic, 0)
            _, high = consumer.get_watermark_offsets(events, timeout=10.0)
            consumer.assign([TopicPartition(self._settings.events_topic, 0, high)])
            self._producer.produce(self._settings.control_topic,
                                   self._commands.encode(command.to_record()),
                                   route_key(command.topic, command.tenant).encode("utf-8"))
            if self._producer.flush(10.0):
                raise KafkaException(f"command not acknowledged by {self._settings.bootstrap}")
            if wait_s <= 0:
                return None
            deadline = time.monotonic() + wait_s
            answer: ReassignmentEvent | None = None
            while time.monotonic() < deadline:
                message = consumer.poll(min(0.2, max(deadline - time.monotonic(), 0.01)))
                if message is None or message.error() is not None:
                    continue
                try:
                    event = ReassignmentEvent.from_record(self._events.decode(message.value()))
                except (DecodeError, KeyError, ValueError):
                    continue
                if answer is None and event.command_id == command.command_id:
                    if event.status != "draining":
                        return event
                    # A strict move: the answer counts once the move is over, so the next
                    # command for the tenant is not refused for a drain still running.
                    answer = event
                elif (answer is not None and event.action.startswith("drain-")
                      and (event.topic, event.tenant) == (answer.topic, answer.tenant)
                      and event.to_epoch == answer.to_epoch):
                    return answer
            return answer
        finally:
            consumer.close()


def now_ms() -> int:
    return int(time.time() * 1000)
