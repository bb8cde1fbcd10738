"""The producer's side of a strict move, driven by hand-written route records (no worker).

Hold on `draining`, answer with a DrainAck naming the last offset written to the old
partition, block then fail clearly when the hold is full, release in order on `active`.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from routing_app.client import HoldTimeout, RoutingProducer
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, DrainAck, drain_ack_subject
from routing_app.routes.model import RouteStatus
from routing_app.topics import create_topic
from tests.e2e.support import wait_for

pytestmark = pytest.mark.integration


def _read(bootstrap: str, topic: str, partition: int) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer(
        client_settings(bootstrap, **{"group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 20
        while len(found) < high and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.2):
                if m.error() is None:
                    found.append((m.offset() or 0, m.key(), m.value()))
        return found
    finally:
        consumer.close()


def test_hold_ack_bound_and_ordered_release(stack_settings: Settings) -> None:
    suffix = uuid.uuid4().hex[:8]
    s = stack_settings.replace(
        routes_topic=f"holds.routes.{suffix}",
        answers_topic=f"holds.answers.{suffix}",
        usage_topic=f"holds.usage.{suffix}",
    )
    create_topic(s.bootstrap, s.routes_topic, 1, {"cleanup.policy": "compact"})
    create_topic(s.bootstrap, s.answers_topic, 1)
    create_topic(s.bootstrap, s.usage_topic, 1)
    data = f"holds-data-{suffix}"
    create_topic(s.bootstrap, data, 6)
    registry = registry_client(s.registry_url)
    routes = RouteCodec(registry, s.routes_topic)
    writer = Producer(client_settings(s.bootstrap, acks="all"))

    def write(route: Route) -> None:
        writer.produce(s.routes_topic, routes.encode(route), RouteCodec.encode_key(data, "acme"))
        assert writer.flush(10) == 0

    conf = s.producer_config(
        **{
            "enable.idempotence": True,
            "linger.ms": 5,
            "routing.hold.max.records": 50,
            "routing.max.block.ms": 500,
            "routing.usage.enabled": False,
            "routing.producer.id": "holder",
        }
    )
    write(Route(data, "acme", (1,), 1, reason="start"))
    with RoutingProducer(conf) as producer:
        producer.wait_ready(30)
        wait_for(lambda: producer.route_for(data, "acme") is not None, what="route")
        for seq in range(20):
            producer.produce(data, b"%d" % seq, b"acme")
        assert producer.flush(10) == 0

        write(Route(data, "acme", (4,), 2, status=RouteStatus.DRAINING, previous_partitions=(1,)))
        wait_for(lambda: producer.counters["draining_tenants"] == 1, what="the hold")
        for seq in range(20, 70):
            producer.produce(data, b"%d" % seq, b"acme")
        assert producer.counters["held"] == 50
        started = time.monotonic()
        with pytest.raises(HoldTimeout, match=r"acme.*draining"):
            producer.produce(data, b"70", b"acme")
        assert time.monotonic() - started >= 0.45  # blocked for routing.max.block.ms first

        # A producer that starts during the drain holds from its first record and answers too.
        with RoutingProducer({**conf, "routing.producer.id": "latecomer"}) as late:
            late.wait_ready(30)
            late.produce(data, b"late", b"acme")
            assert late.counters["held"] == 1

            acks = AvroCodec(
                registry, DRAIN_ACK_SCHEMA, s.answers_topic, subject=drain_ack_subject(s.answers_topic)
            )
            answers: dict[str, DrainAck] = {}

            def both_answered() -> bool:
                # Hellos share the topic (keyed by producer id); acks are keyed by the route.
                for _, key, value in _read(s.bootstrap, s.answers_topic, 0):
                    if key == RouteCodec.encode_key(data, "acme"):
                        answer = DrainAck.from_record(acks.decode(value))
                        answers[answer.producer_id] = answer
                return len(answers) >= 2

            wait_for(both_answered, what="both drain acks")
            assert set(answers) == {"holder", "latecomer"}
            on_one = _read(s.bootstrap, data, 1)
            assert answers["holder"].offsets == {1: on_one[-1][0]} and answers["holder"].epoch == 2
            assert answers["latecomer"].offsets == {1: -1}
            assert not _read(s.bootstrap, data, 4), "nothing may reach the new partition yet"

            write(Route(data, "acme", (4,), 2, reason="moved"))
            assert producer.flush(20) == 0 and late.flush(20) == 0
            producer.produce(data, b"70", b"acme")  # after the release: behind the held ones
            assert producer.flush(10) == 0

    assert [v for _, _, v in _read(s.bootstrap, data, 1)] == [b"%d" % i for i in range(20)]
    on_four = [v for _, _, v in _read(s.bootstrap, data, 4)]
    assert [v for v in on_four if v != b"late"] == [b"%d" % i for i in range(20, 71)]
    assert b"late" in on_four
