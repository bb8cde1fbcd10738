"""Where a topic's records were put, against where RoutingProducers put them: what finds a
producer that hashes by the partition count on a topic grown by ``topics expand`` (a plain
Kafka client, or one that does not know the hash base).

Only key-only records (the key is the tenant) can be judged: a record sent with ``tenant=``
and a secondary key names its tenant nowhere in the record, and an explicit ``partition=``
goes where it was told. Those are counted as not judged."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from routing_app.client.partitioner import java_partition
from routing_app.connection import CLI_GROUP_PREFIX, Kafka, polled_client_settings, reader_group
from routing_app.routes.model import HASH_BASE_TENANT, Route, hash_modulus

_TIMEOUT_S = 10.0


@dataclass
class HashingCheck:
    partitions: int
    base: int | None
    records: int = 0
    as_routed: int = 0  # where a RoutingProducer puts the key (its route, or its hash by the base)
    by_count: int = 0  # where only hashing by the partition count puts it: a producer without the base
    elsewhere: int = 0  # neither (tenant= records, explicit partitions, routes changed since)
    samples: list[tuple[bytes, int]] = field(default_factory=list)  # (key, partition) hashed by count

    def judge(self, key: bytes | None, partition: int, routes: Mapping[str, Route]) -> None:
        if key is None:
            return  # no key: librdkafka's sticky partitioner, anywhere is right
        self.records += 1
        route = routes.get(key.decode("utf-8", "surrogateescape")) if key else None
        by_base = java_partition(key, hash_modulus(self.partitions, self.base))
        expected = route.partitions if route is not None and key else (by_base,)
        if partition in expected or (route is not None and partition in route.previous_partitions):
            self.as_routed += 1
        elif partition == java_partition(key, self.partitions) and route is None:
            self.by_count += 1
            if len(self.samples) < 10:
                self.samples.append((key, partition))
        else:
            self.elsewhere += 1


def check_hashing(
    kafka: Kafka, topic: str, partitions: int, routes: Mapping[str, Route], per_partition: int
) -> HashingCheck:
    """Judges the last ``per_partition`` records of every partition (see the module's text)."""
    base_route = routes.get(HASH_BASE_TENANT)
    check = HashingCheck(partitions, None if base_route is None else len(base_route.partitions))
    tenants = {name: route for name, route in routes.items() if name != HASH_BASE_TENANT}
    for key, partition in _last_records(kafka, topic, partitions, per_partition):
        check.judge(key, partition, tenants)
    return check


def _last_records(
    kafka: Kafka, topic: str, partitions: int, per_partition: int
) -> Iterable[tuple[bytes | None, int]]:
    settings = {"group.id": reader_group(CLI_GROUP_PREFIX), "enable.auto.commit": False}
    consumer = Consumer(polled_client_settings(kafka, **settings))
    try:
        starts, ends = [], {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT_S)
            if high > low:
                starts.append(TopicPartition(topic, p, max(low, high - per_partition)))
                ends[p] = high
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + _TIMEOUT_S + partitions * 0.1
        left = dict(ends)
        while left and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                p, offset = message.partition() or 0, message.offset() or 0
                yield message.key(), p
                if offset + 1 >= ends.get(p, 0):
                    left.pop(p, None)
    finally:
        consumer.close()
