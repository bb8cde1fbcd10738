"""Bad input on the real stack: invalid and poison routes, forged usage reports, and clients
that must not outlive what owns them (issue 12, items 8, 9, 10 and 12)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from routing_app.client import RoutingProducer, RoutingProducerError, java_partition
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.metrics import producer_metrics
from routing_app.routes import RouteCodec
from routing_app.topics import create_topic, ensure_topics, routing_topics
from routing_app.usage import USAGE_SCHEMA
from routing_app.windows import WINDOW_SUMMARY_SCHEMA, WindowSummary
from tests.conftest import kafka_client_threads, leaked_since
from tests.e2e.support import (
    Worker,
    cli,
    events,
    fresh_routing_settings,
    start_writer,
    wait_for,
)
from tests.e2e.test_routing import producer_conf

pytestmark = pytest.mark.integration


# Forged routes and usage reports stay on topics of this module's own (a session worker that
# read them would count them in other tests, and a forged producer would be one its drains
# wait for), with windows short enough to close within the test.
@pytest.fixture(scope="module")
def own_settings(stack_settings: Settings) -> Settings:
    return fresh_routing_settings(stack_settings, "bad", min_compaction_lag_ms=0, window_s=5.0)


@pytest.fixture(scope="module")
def own_worker(own_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = start_writer(own_settings, tmp_path_factory.mktemp("bad-input-worker"))
    assert worker.alive, worker.log()[-3000:]
    yield worker
    worker.stop()


def new_topic(settings: Settings, partitions: int) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(settings.bootstrap, name, partitions)
    return name


# -- item 12: no client outlives its owner ------------------------------------------------------


def test_a_closed_producer_and_its_metrics_leave_no_kafka_client(own_settings: Settings) -> None:
    topic = new_topic(own_settings, 2)
    before = kafka_client_threads()
    conf = producer_conf(own_settings)
    registry = CollectorRegistry()
    producer = RoutingProducer(conf)
    try:
        producer.wait_ready(30)
        producer.send(topic, b"v", b"tenant").result(10)
        producer_metrics(registry).add(producer, conf)
        # A scrape asks the broker for the routes topic's end: the metrics' own client.
        wait_for(
            lambda: (
                registry.get_sample_value(
                    "routing_producer_routes_end_offset", {"producer": producer.producer_id}
                )
                is not None
            ),
            what="the routes topic's end offset in the producer's metrics",
        )
        assert leaked_since(before), "the producer's clients are alive while it is open"
    finally:
        producer.close()
    # The producer object is still referenced here: nothing but close() may end its clients.
    assert not leaked_since(before)
    with pytest.raises(RoutingProducerError, match="closed"):
        producer.produce(topic, b"late", b"tenant")
    assert (
        registry.get_sample_value("routing_producer_routes_end_offset", {"producer": producer.producer_id})
        is None
    )
    assert not leaked_since(before), "a scrape after close started a client again"


# -- helpers ---------------------------------------------------------------------------------------


def forge(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes, bytes | None]],
    partition: int | None = None,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> int:
    """Writes ``records`` as anyone with network access can (plain confluent-kafka, no
    credentials); returns the offset after the last one."""
    offsets: list[int] = []

    def delivered(err: KafkaError | None, message: Message) -> None:
        assert err is None, err
        offsets.append(message.offset() or 0)

    producer = Producer(client_settings(settings.bootstrap))
    for key, value in records:
        producer.produce(
            topic,
            value,
            key,
            on_delivery=delivered,
            partition=-1 if partition is None else partition,
            headers=headers,
        )
    assert producer.flush(10) == 0
    return max(offsets) + 1


class MetadataRequests:
    """A librdkafka statistics callback: the Metadata requests the client has sent so far."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def __call__(self, stats: str) -> None:
        brokers = json.loads(stats).get("brokers", {}).values()
        sent = sum(b.get("req", {}).get("Metadata", 0) for b in brokers)
        self.samples.append((time.monotonic(), sent))

    def after(self, moment: float) -> int:
        """The count in the first sample taken after ``moment`` (monotonic)."""
        return (
            int(
                wait_for(
                    lambda: next((n + 1 for t, n in self.samples if t > moment), 0),
                    what="librdkafka statistics",
                )
            )
            - 1
        )


# -- item 8: routes that cannot be followed ---------------------------------------------------------


def test_routes_that_cannot_be_followed_leave_the_tenant_where_it_was(
    own_settings: Settings, own_worker: Worker
) -> None:
    routing_settings = own_settings
    topic = new_topic(routing_settings, 4)
    tenant = f"victim-{uuid.uuid4().hex[:6]}"
    target = (java_partition(tenant.encode(), 4) + 2) % 4  # never where hashing puts it
    out = cli(routing_settings, "routes", "pin", topic, tenant, "-p", str(target))
    assert out.returncode == 0, out.stderr
    requests = MetadataRequests()
    conf = producer_conf(routing_settings, **{"statistics.interval.ms": 100, "stats_cb": requests})
    with RoutingProducer(conf) as producer:
        producer.wait_ready(30)
        assert producer.cache is not None
        pinned = wait_for(lambda: producer.route_for(topic, tenant), what="the pinned route")
        assert pinned.partitions == (target,)
        producer.send(topic, b"before", tenant.encode()).result(10)  # partition counts known
        assert producer.cache.wait_settled(30)  # poison read while catching up counted by now
        skipped = producer.cache.stats().undecodable

        # Each newer than the pinned route: before, the cache applied each in turn. [] made
        # produce() raise ValueError (max() of nothing), [-1] let librdkafka place the tenant
        # (a move without a drain), [99] cost a warning and a metadata request per record.
        codec = RouteCodec(registry_client(routing_settings.registry_url), routing_settings.routes_topic)
        key = codec.encode_key(topic, tenant)
        bad = [
            dataclasses.replace(pinned, partitions=partitions, epoch=pinned.epoch + i)
            for i, partitions in enumerate([(), (-1,), (99,)], start=1)
        ]
        end = forge(
            routing_settings, routing_settings.routes_topic, [(key, codec.encode(route)) for route in bad]
        )
        wait_for(
            lambda: producer.cache.stats().position >= end,  # type: ignore[union-attr]
            what="the cache to read the forged routes",
        )
        read_at = time.monotonic()
        before = requests.after(read_at)
        futures = [producer.send(topic, b"v", tenant.encode()) for _ in range(300)]
        partitions = {future.result(10).partition for future in futures}
        after = requests.after(time.monotonic())

        assert partitions == {target}
        assert producer.route_for(topic, tenant) == pinned
        stats = producer.cache.stats()
        assert stats.undecodable - skipped == 2  # [] and [-1]: invalid whatever the topic
        assert stats.out_of_range == 1  # [99]: held back, asked of the broker once
        assert producer.counters["route_out_of_range"] == 0
        assert after - before == 0, f"{after - before} metadata requests for 300 records"
    # The writer never took them for its own: the tenant's route is still the one to unpin.
    out = cli(routing_settings, "routes", "unpin", topic, tenant)
    assert out.returncode == 0, out.stderr


# -- item 10: forged usage reports ---------------------------------------------------------------


def summaries_since(settings: Settings, since_ms: int) -> list[WindowSummary]:
    """Window summaries on the control topic for windows ending after ``since_ms``."""
    codec = AvroCodec(
        registry_client(settings.registry_url),
        WINDOW_SUMMARY_SCHEMA,
        settings.control_topic,
        subject=f"{settings.control_topic}-{WINDOW_SUMMARY_SCHEMA}",
    )
    consumer = Consumer(
        {**client_settings(settings.bootstrap), "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    found = []
    try:
        tp = TopicPartition(settings.control_topic, 0)
        _, end = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(settings.control_topic, 0, 0)])
        read = 0
        while read < end:
            for m in consumer.consume(1000, 1.0):
                if m.error() is not None:
                    continue
                read = (m.offset() or 0) + 1
                if dict(m.headers() or []).get("routing.type") == b"window-summary":
                    summary = WindowSummary.from_record(codec.decode(m.value()))
                    if summary.window_end > since_ms:
                        found.append(summary)
    finally:
        consumer.close()
    return found


def test_forged_usage_reports_are_refused_and_honest_ones_still_count(
    own_settings: Settings, own_worker: Worker
) -> None:
    worker = own_worker
    topic = new_topic(own_settings, 4)
    honest = f"honest-{uuid.uuid4().hex[:6]}"
    forger = f"forger-{uuid.uuid4().hex[:6]}"
    s = own_settings
    codec = AvroCodec(registry_client(s.registry_url), USAGE_SCHEMA, s.usage_topic)
    started = int(time.time() * 1000)

    def forged(records: int, start: int, end: int) -> tuple[bytes, bytes]:
        """A usage record claiming ``records`` of the honest tenant: on its usage partition,
        so whatever the forgery breaks there breaks the honest tenant's windows too."""
        key = f"{topic}/{honest}".encode()
        return key, codec.encode(
            {
                "producer_id": forger,
                "interval_start": start,
                "interval_end": end,
                "reports": [
                    {"topic": topic, "tenant": honest, "records": records, "bytes": 10, "partition": 0}
                ],
            }
        )

    sent = 0
    with RoutingProducer(producer_conf(s, **{"routing.usage.interval.ms": 200})) as producer:
        producer.wait_ready(30)
        deadline = time.monotonic() + 4
        forgeries_sent = False
        while time.monotonic() < deadline:
            producer.produce(topic, b"v", honest.encode())
            sent += 1
            if not forgeries_sent and sent == 50:
                now = int(time.time() * 1000)
                forgeries = [
                    forged(9 * 10**18, now - 1000, now),  # twice: the sum overflowed Avro's
                    forged(9 * 10**18, now - 1000, now),  # long (the usage agent crashed)
                    forged(10**18, now - 1000, now),  # sharded over every partition
                    forged(-5, now - 1000, now),
                    forged(1, now + 3_599_000, now + 3_600_000),  # closed an hour of windows
                    forged(1, now - 86_400_000, now),  # a day's interval
                ]
                for key, value in forgeries:  # where a producer would put them
                    forge(s, s.usage_topic, [(key, value)], partition=java_partition(key, s.usage_partitions))
                forgeries_sent = True
            time.sleep(0.02)
        producer.flush(10)

    def honest_total() -> int:
        return sum(
            records
            for summary in summaries_since(s, started)
            for (t, n), (records, _) in summary.tenants.items()
            if (t, n) == (topic, honest)
        )

    # The windows of the traffic close (by stream time or timer) with every honest record, and
    # nothing of what was forged.
    wait_for(
        lambda: honest_total() == sent,
        timeout=3 * s.window_s + 30,
        what=f"the window summaries to hold the {sent} honest records, no more",
    )
    usage = worker.get("/writer/stats")["usage"]
    assert worker.process.poll() is None, worker.log()[-3000:]
    assert usage["rejected_too_large"] >= 3
    assert usage["rejected_negative"] >= 1
    assert usage["rejected_future"] >= 1
    assert usage["rejected_interval"] >= 1
    assert usage["summary_errors"] == 0
    # Nothing closed ahead of the clock: the report stamped an hour ahead moved no stream time.
    now = int(time.time() * 1000)
    assert max(summary.window_end for summary in summaries_since(s, started)) <= now
    # And the planner made nothing of them (1e18 records a window sharded the tenant).
    assert not [e for e in events(s) if e.topic == topic], "decisions on the forged figures"
    log_text = worker.log()
    assert f"usage of producer '{forger}' refused" in log_text
    # The forger "closes", as a RoutingProducer does: drains no longer wait for it.
    forge(
        s,
        s.answers_topic,
        [(forger.encode(), forger.encode())],
        headers=[("routing.type", b"producer-closed")],
    )


# -- item 9: poison under a live route's key, and compaction ----------------------------------------

# Compaction as soon as the log cleaner looks (every log.cleaner.backoff.ms, 15 s by default):
# no lag, short segments, any dirt at all worth cleaning.
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.001",
    "delete.retention.ms": "100",
}


def routes_records(settings: Settings) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record on the routes topic, as a new reader finds them."""
    consumer = Consumer(
        {**client_settings(settings.bootstrap), "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    found: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        tp = TopicPartition(settings.routes_topic, 0)
        _, end = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(settings.routes_topic, 0, 0)])
        while not found or found[-1][0] < end - 1:
            batch = consumer.consume(1000, 1.0)
            if not batch:
                break
            found += [(m.offset() or 0, m.key(), m.value()) for m in batch if m.error() is None]
    finally:
        consumer.close()
    return found


def test_poison_under_a_live_route_survives_compaction_neither_for_producers_nor_workers(
    stack_settings: Settings, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    s = stack_settings.replace(
        routes_topic=f"bi.routes.{suffix}",
        events_topic=f"bi.events.{suffix}",
        usage_topic=f"bi.usage.{suffix}",
        control_topic=f"bi.control.{suffix}",
        answers_topic=f"bi.answers.{suffix}",
        app_id=f"bi-{suffix}",
        min_compaction_lag_ms=0,
    )
    create_topic(s.bootstrap, s.routes_topic, 1, FAST_COMPACTION)
    ensure_topics(s.bootstrap, routing_topics(s))
    topic = f"orders-{suffix}"
    create_topic(s.bootstrap, topic, 4)
    tenant = "victim"
    target = (java_partition(tenant.encode(), 4) + 1) % 4
    codec = RouteCodec(registry_client(s.registry_url), s.routes_topic)
    key = codec.encode_key(topic, tenant)
    garbage = b"\x00\x00\x00\x00\x01 not avro at all"

    def newest_is_good(after: int) -> bool:
        """The newest record under the key comes after offset ``after`` and is the route."""
        mine = [(o, v) for o, k, v in routes_records(s) if k == key]
        return bool(mine) and mine[-1][0] >= after and codec.decode(key, mine[-1][1])[2] == pinned

    workers: list[Worker] = []
    try:
        workers.append(start_writer(s, tmp_path / "first"))
        out = cli(s, "routes", "pin", topic, tenant, "-p", str(target))
        assert out.returncode == 0, out.stderr
        with RoutingProducer(producer_conf(s)) as running:
            running.wait_ready(30)
            pinned = wait_for(lambda: running.route_for(topic, tenant), what="the pinned route")

            # Poison under the live key while the writer runs: bytes nobody can decode, then a
            # route nobody can follow. The writer writes the route again, unchanged, after it.
            end = forge(
                s,
                s.routes_topic,
                [(key, garbage), (key, codec.encode(dataclasses.replace(pinned, partitions=(), epoch=99)))],
            )
            wait_for(
                lambda: newest_is_good(end),
                timeout=30,
                what="the writer to write the route again over the poison",
            )

            # Poison while no worker runs: the next one restores its table through it (keeping
            # the route), and writes the route again once it has read the topic.
            workers.pop().stop()
            end = forge(s, s.routes_topic, [(key, garbage)])
            workers.append(start_writer(s, tmp_path / "second"))
            wait_for(
                lambda: newest_is_good(end),
                timeout=30,
                what="the restarted writer to write the route again over the poison",
            )
            assert running.route_for(topic, tenant) == pinned  # the running producer kept it

            # Compaction: once the segment holding it all is closed (a record after segment.ms
            # rolls it), the cleaner keeps only the newest record of each key.
            def compacted() -> bool:
                time.sleep(0.5)
                forge(s, s.routes_topic, [(f"{topic}/filler".encode(), None)])
                return len([o for o, k, _ in routes_records(s) if k == key]) == 1

            wait_for(compacted, timeout=120, what="the log cleaner to compact the routes topic")
            assert newest_is_good(0)  # the one record left under the key is the route

        # A producer starting now reads the compacted topic: it still finds the route.
        with RoutingProducer(producer_conf(s)) as fresh:
            fresh.wait_ready(30)
            assert fresh.route_for(topic, tenant) == pinned
            assert fresh.send(topic, b"v", tenant.encode()).result(10).partition == target

            # A restarted worker restores its table from the compacted topic: unpin finds it.
            workers.pop().stop()
            workers.append(start_writer(s, tmp_path / "third"))
            out = cli(s, "routes", "unpin", topic, tenant)
            assert out.returncode == 0, out.stderr + workers[-1].log()[-3000:]
            wait_for(lambda: fresh.route_for(topic, tenant) is None, what="the unpin")
    finally:
        for w in workers:
            w.stop()
