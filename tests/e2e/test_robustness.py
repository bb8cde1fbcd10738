"""Poison records, wrong topic settings, and a worker restart: nothing dies, nothing is lost."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Producer

from routing_app.client import RoutingProducer
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.topics import create_topic
from routing_app.usage import USAGE_SCHEMA, reports_of
from tests.e2e.support import Worker, cli, consume_all, start_worker, wait_for
from tests.e2e.test_routing import producer_conf

pytestmark = pytest.mark.integration


def produce_raw(settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(client_settings(settings.bootstrap))
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(10) == 0


def test_poison_on_routes_topic_is_skipped_and_counted(
    routing_settings: Settings,
    worker: Worker,
    data_topic: Callable[[int], str],
    tmp_path: Path,
) -> None:
    topic = data_topic(4)
    with RoutingProducer(producer_conf(routing_settings)) as before:
        # Poison read while catching up is counted once checked: settled, not just ready.
        before.wait_ready(30)
        assert before.cache is not None
        assert before.cache.wait_settled(30)
        skipped_before = before.cache.stats().undecodable
    unknown_schema_id = struct.pack(">bI", 0, 987_654) + b"\x02xx"
    poison = [
        (f"{topic}/garbage".encode(), b"\x00\x00\x00\x00\x01not avro at all"),
        (f"{topic}/unknown-id".encode(), unknown_schema_id),
        (f"{topic}/bad-magic".encode(), b"\x07\x00\x00\x00\x01\x02"),
        (b"no-separator-key", b"\x00\x00\x00\x00\x01"),
    ]
    produce_raw(routing_settings, routing_settings.routes_topic, poison)
    # The writer keeps working after reading the poison into its table's topic.
    out = cli(routing_settings, "routes", "pin", topic, "after-poison", "-p", "3")
    assert out.returncode == 0, out.stderr

    with RoutingProducer(producer_conf(routing_settings)) as producer:
        producer.wait_ready(30)
        wait_for(
            lambda: producer.route_for(topic, "after-poison") is not None,
            what="route written after the poison",
        )
        assert producer.cache is not None and producer.cache.wait_settled(30)
        assert producer.cache.stats().undecodable - skipped_before == len(poison)
        assert producer.send(topic, b"v", b"after-poison").result(10).partition == 3
    assert worker.process.poll() is None

    # A fresh worker recovers the routes table through the poison and keeps writing.
    worker.stop()
    restarted = start_worker(routing_settings, tmp_path / "restarted")
    try:
        assert restarted.process.poll() is None, restarted.log()[-3000:]
        out = cli(routing_settings, "routes", "pin", topic, "after-restart", "-p", "1")
        assert out.returncode == 0, out.stderr + restarted.log()[-3000:]
        out = cli(routing_settings, "routes", "pin", topic, "after-poison", "-p", "2")
        assert out.returncode == 0, out.stderr
        assert "epoch 2" in out.stderr, "the recovered table must remember epoch 1"
    finally:
        # The restarted worker serves the rest of the session in place of the stopped one.
        worker.process, worker.web_port, worker.log_path = (
            restarted.process,
            restarted.web_port,
            restarted.log_path,
        )


def test_poison_control_command_is_rejected_and_worker_goes_on(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(2)
    produce_raw(
        routing_settings, routing_settings.control_topic, [(b"x", b"definitely not a command"), (b"y", None)]
    )
    out = cli(routing_settings, "routes", "pin", topic, "survivor", "-p", "1")
    assert out.returncode == 0, out.stderr
    assert worker.get("/writer/stats")["control_undecodable"] >= 2


def test_worker_refuses_a_routes_topic_that_is_not_compacted(
    routing_settings: Settings, tmp_path: Path
) -> None:
    bad = f"bad.routes.{uuid.uuid4().hex[:6]}"
    create_topic(routing_settings.bootstrap, bad, 1, {"cleanup.policy": "delete"})
    settings = routing_settings.replace(routes_topic=bad, app_id=f"refuse-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    w = start_worker(settings, tmp_path / "refusing", wait_s=60)
    try:
        w.process.wait(60)
    finally:
        w.stop()
    log = w.log()
    assert w.process.returncode not in (None, 0), log[-2000:]
    assert bad in log and "cleanup.policy is delete, expected compact" in log, log[-2000:]
    assert "kafka-configs.sh" in log
    assert time.monotonic() - started < 60


def test_usage_reports_reach_the_usage_topic(
    routing_settings: Settings, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(3)
    with RoutingProducer(producer_conf(routing_settings, **{"routing.usage.interval.ms": 200})) as producer:
        producer.wait_ready(30)
        for _i in range(50):
            producer.produce(topic, b"x" * 10, b"heavy")
        for _i in range(5):
            producer.produce(topic, b"y" * 3, b"light")
        producer.flush(10)
        producer_id = producer.producer_id
    codec = AvroCodec(
        registry_client(routing_settings.registry_url), USAGE_SCHEMA, routing_settings.usage_topic
    )

    def mine() -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for _, _, value in consume_all(
            routing_settings.bootstrap, routing_settings.usage_topic, expected=10**9, timeout=3
        ):
            # One usage record carries the reports of many tenants (those of its partition).
            for report in reports_of(codec.decode(value)):
                if report.producer_id == producer_id and report.topic == topic:
                    records, nbytes = totals.get(report.tenant, (0, 0))
                    totals[report.tenant] = (records + report.records, nbytes + report.bytes)
        return totals

    totals = wait_for(lambda: (t := mine()) and len(t) == 2 and t, timeout=30, what="usage reports")
    assert totals == {"heavy": (50, 500), "light": (5, 15)}
