"""Sends operator commands to the route writer and waits for its answer on the events topic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable, registry_client
from routing_app.config import Settings
from routing_app.connection import (
    CLI_GROUP_PREFIX,
    KafkaUnreachable,
    polled_client_settings,
    reader_group,
    unreachable_message,
)
from routing_app.control.commands import CONTROL_SCHEMA, ControlCommand
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.routes.model import route_key

_WATERMARK_TIMEOUT_S = 10.0
_FLUSH_TIMEOUT_S = 10.0


class CommandRefused(RuntimeError):
    """Kafka did not take the command (not allowed to write the control topic, say)."""


@dataclass(frozen=True)
class CommandOutcome:
    """The writer's answers to one command.

    ``answer``: its event for the command (applied, rejected, or the start of a strict move,
    status ``draining``); ``end``: a strict move's closing event (``drain-complete``,
    ``drain-abort`` or ``drain-forced``), None if the move had not ended within the wait.
    """

    answer: ReassignmentEvent | None
    end: ReassignmentEvent | None = None

    @property
    def final(self) -> ReassignmentEvent | None:
        return self.end or self.answer

    @property
    def moving(self) -> bool:
        """A strict move still draining when the wait ran out."""
        return self.answer is not None and self.answer.status == "draining" and self.end is None

    @property
    def aborted(self) -> bool:
        """The move was applied, timed out draining and went back: the tenant did not move."""
        return self.end is not None and self.end.action == "drain-abort"

    @property
    def forced(self) -> bool:
        return self.end is not None and self.end.action == "drain-forced"


class ControlClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        registry = registry_client(settings.registry_config())
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._producer = Producer(
            polled_client_settings(settings.kafka, acks="all", **{"enable.idempotence": True})
        )

    def send(self, command: ControlCommand, wait_s: float = 15.0) -> ReassignmentEvent | None:
        """The writer's event for the command (applied or rejected; for a strict move its
        draining event, returned once the move ended or the wait ran out); None if none came
        in time. Whether a move completed or was aborted is in :meth:`submit`'s outcome."""
        return self.submit(command, wait_s).answer

    def submit(self, command: ControlCommand, wait_s: float = 15.0) -> CommandOutcome:
        """Sends the command and waits up to ``wait_s`` for the writer's answers."""
        if "_producer" not in self.__dict__:
            raise RuntimeError("this ControlClient is closed")
        bootstrap = self._settings.kafka
        consumer = Consumer(
            polled_client_settings(
                bootstrap, **{"group.id": reader_group(CLI_GROUP_PREFIX), "enable.auto.commit": False}
            )
        )
        try:
            events = TopicPartition(self._settings.events_topic, 0)
            try:
                _, high = consumer.get_watermark_offsets(events, timeout=_WATERMARK_TIMEOUT_S)
            except KafkaException as exc:
                raise KafkaUnreachable(unreachable_message(bootstrap, _WATERMARK_TIMEOUT_S, exc)) from exc
            consumer.assign([TopicPartition(self._settings.events_topic, 0, high)])
            try:
                value = self._commands.encode(command.to_record())
            except RegistryUnavailable as exc:
                raise RegistryUnavailable(
                    f"{exc} (schema registry at {self._settings.registry_url})"
                ) from exc
            refused: list[KafkaError] = []

            def delivered(error: KafkaError | None, _: object) -> None:
                if error is not None:
                    refused.append(error)

            self._producer.produce(
                self._settings.control_topic,
                value,
                route_key(command.topic, command.tenant).encode("utf-8"),
                on_delivery=delivered,
            )
            if self._producer.flush(_FLUSH_TIMEOUT_S):
                raise KafkaUnreachable(
                    f"command not acknowledged by Kafka at {bootstrap} within "
                    f"{_FLUSH_TIMEOUT_S:g}s; is the broker reachable?"
                )
            if refused:
                error = refused[0]
                who = self._settings.principal or "an unauthenticated client"
                hint = (
                    f"; {who} may not write it: commands are for operator principals (README, Security)"
                    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                    else ""
                )
                raise CommandRefused(
                    f"Kafka at {bootstrap} refused the command on "
                    f"{self._settings.control_topic!r}: {error.str()}{hint}"
                )
            if wait_s <= 0:
                return CommandOutcome(None)
            return self._await_answers(consumer, command, wait_s)
        finally:
            consumer.close()

    def _await_answers(self, consumer: Consumer, command: ControlCommand, wait_s: float) -> CommandOutcome:
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
                    return CommandOutcome(event)
                # A strict move: the answer counts once the move is over, so the next
                # command for the tenant is not refused for a drain still running, and an
                # aborted move is not taken for a done one.
                answer = event
            elif (
                answer is not None
                and event.action.startswith("drain-")
                and (event.topic, event.tenant) == (answer.topic, answer.tenant)
                and event.to_epoch == answer.to_epoch
            ):
                return CommandOutcome(answer, event)
        return CommandOutcome(answer)

    def close(self) -> None:
        """Flushes and drops the producer (its librdkafka threads end with it)."""
        producer = self.__dict__.pop("_producer", None)
        if producer is not None:
            producer.flush(_FLUSH_TIMEOUT_S)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def now_ms() -> int:
    return int(time.time() * 1000)
