"""Which producers have not answered a strict write yet, read from the answers topic: what an
operator needs when ``topics expand`` waits on a producer that cannot be reached.

The writer's own view (its roll call) lives in the worker; this is the same evidence, read
again by the CLI: every producer that said hello within ``producer_expiry_ms`` and did not say
goodbye, less those that acknowledged the write's epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, TopicPartition

from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable, registry_client
from routing_app.config import Settings
from routing_app.connection import CLI_GROUP_PREFIX, polled_client_settings, reader_group
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, DrainAck, drain_ack_subject
from routing_app.routes.messages import Headers, MessageKind
from routing_app.routes.model import route_key

_READ_TIMEOUT_S = 10.0
# Producers say hello every 10 s: a window this much wider than the expiry sees each live one.
_HELLO_MARGIN_MS = 15_000


@dataclass(frozen=True)
class Silent:
    producer_id: str
    last_heard_ms: int

    def describe(self, now_ms: int) -> str:
        return f"{self.producer_id} (last hello {max(now_ms - self.last_heard_ms, 0) / 1000:.0f} s ago)"


def unanswered(settings: Settings, topic: str, tenant: str, epoch: int) -> list[Silent]:
    """The producers that said hello lately, did not close, and did not answer ``epoch`` of
    ``topic``/``tenant``'s route, most recently heard first."""
    now = int(time.time() * 1000)
    since = now - settings.producer_expiry - _HELLO_MARGIN_MS
    codec = AvroCodec(
        registry_client(settings.registry_config()),
        DRAIN_ACK_SCHEMA,
        settings.answers_topic,
        subject=drain_ack_subject(settings.answers_topic),
    )
    wanted = route_key(topic, tenant).encode("utf-8")
    heard: dict[str, int] = {}
    gone: set[str] = set()
    answered: set[str] = set()
    consumer = Consumer(
        polled_client_settings(
            settings.kafka, **{"group.id": reader_group(CLI_GROUP_PREFIX), "enable.auto.commit": False}
        )
    )
    try:
        partition = TopicPartition(settings.answers_topic, 0, since)
        (start,) = consumer.offsets_for_times([partition], timeout=_READ_TIMEOUT_S)
        _, end = consumer.get_watermark_offsets(partition, timeout=_READ_TIMEOUT_S)
        position = start.offset if start.offset >= 0 else end
        consumer.assign([TopicPartition(settings.answers_topic, 0, position)])
        deadline = time.monotonic() + _READ_TIMEOUT_S
        while position < end and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                kind = MessageKind.of(cast(Headers, message.headers()))
                value = message.value() or b""
                if kind is MessageKind.PRODUCER_HELLO:
                    producer = value.decode("utf-8", "replace")
                    heard[producer] = max(heard.get(producer, 0), message.timestamp()[1])
                    gone.discard(producer)
                elif kind is MessageKind.PRODUCER_CLOSED:
                    gone.add(value.decode("utf-8", "replace"))
                elif kind is MessageKind.DRAIN_ACK and message.key() == wanted:
                    try:
                        ack = DrainAck.from_record(codec.decode(value))
                    except (DecodeError, RegistryUnavailable, KeyError, ValueError, TypeError):
                        continue  # untrusted: an answer that cannot be read answers nothing
                    if ack.epoch == epoch:
                        answered.add(ack.producer_id)
    finally:
        consumer.close()
    silent = [Silent(p, at) for p, at in heard.items() if p not in gone and p not in answered]
    return sorted(silent, key=lambda s: (-s.last_heard_ms, s.producer_id))
