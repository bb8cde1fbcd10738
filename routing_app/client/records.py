"""The public types of a send: its options, its delivery callback and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from confluent_kafka import KafkaError, Message
from confluent_kafka.serialization import SerializationContext

Serializer = Callable[[Any, SerializationContext], bytes | None]
DeliveryCallback = Callable[[KafkaError | None, "RecordMetadata | None"], None]
# librdkafka's own callback: (error, message)
DeliveryReport = Callable[[KafkaError | None, Message], None]


class ProduceOptions(TypedDict, total=False):
    """The keyword options of ``RoutingProducer.produce``."""

    tenant: str | bytes | None  # whose route places the record; defaults to the key
    partition: int | None  # explicit partition: overrides the route
    headers: Any
    timestamp: int | None  # CreateTime in ms since the epoch; default now
    on_delivery: DeliveryCallback | None  # called with (err, RecordMetadata | None)


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int
    timestamp: int

    @classmethod
    def of(cls, message: Message) -> RecordMetadata:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        return cls(topic, partition, offset, message.timestamp()[1])


def adapt(callback: DeliveryCallback, count_report: DeliveryReport) -> DeliveryReport:
    """The caller's callback, as librdkafka calls it: the producer counts the report first
    (a record with its own callback skips the producer-wide one)."""

    def on_delivery(err: KafkaError | None, message: Message) -> None:
        count_report(err, message)
        callback(err, None if err is not None else RecordMetadata.of(message))

    return on_delivery


def tenant_name(tenant: str | bytes | None, key: Any) -> str | None:
    """Whose record it is, as a name: the tenant, or else the key (undecodable bytes kept)."""
    who = tenant if tenant is not None else key
    if who is None:
        return None
    return who.decode("utf-8", "surrogateescape") if isinstance(who, bytes) else str(who)
