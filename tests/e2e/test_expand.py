"""Adding partitions to a live topic without breaking any tenant's order (issue #14), on the
real stack: two workers, strict tenants sending key-only and tenant + key records, and a consumer
group checking every stream's numbers (the group strict drains wait for).

- 12 -> 24 partitions under load: the hash base is recorded and acknowledged before the broker's
  count grows, the planner fills the new partitions with strict moves (its worker killed -9
  midway, the other one finishing), nothing is lost,
  duplicated or reordered, and the broker's write rates end within 1.10 of their mean;
- producers started before, during and after the expansion put every key where the others do
  (by the base), where a plain client would now hash most keys elsewhere;
- a producer that cannot answer (stopped with SIGSTOP) keeps the topic from growing, with a
  message naming it, until it answers;
- a rebase moves the hashed tenants home by the new count, then drops the base.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from routing_app.client import RoutingProducer, java_partition
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.control.expand import expand_topic
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus
from routing_app.topics import create_topic, partition_count
from tests.e2e.ordered import NumberedStreams, OrderCheck, Stream, run_until
from tests.e2e.support import (
    QUICK_PLANNING,
    Worker,
    cli,
    events,
    fresh_routing_settings,
    leader,
    running_workers,
    wait_for,
)

pytestmark = pytest.mark.integration

WINDOW_S = 3.0
BEFORE, AFTER = 12, 24
# 88 key-only tenants and 8 tenants of 4 keys, 8 records/s each: 768/s, 32/s a partition once
# grown, every tenant a quarter of that (none big enough to shard or isolate).
KEY_ONLY = [f"solo-{i:02d}" for i in range(88)]
KEYED = [f"multi-{i}" for i in range(8)]
RATE = 8.0


@pytest.fixture(scope="module")
def plane(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, list[Worker]]]:
    group = f"expand-check-{uuid.uuid4().hex[:6]}"
    settings = fresh_routing_settings(
        stack_settings,
        "expand",
        **QUICK_PLANNING,
        lag_groups=group,
        drain_timeout_ms=30_000,
        # A stopped producer stays known for a minute: the expansion must wait for it.
        producer_expiry_ms=60_000,
        # Capacity 150/s: the grown topic's mean (32/s) is above the quiet-cluster floor (30/s).
        planner_policy="partition_capacity=150,min_dwell_s=3,cooldown_s=600,max_moves_per_cycle=8",
    )
    with running_workers(settings, tmp_path_factory.mktemp("expand"), 2) as workers:
        yield settings, workers


def _topic(settings: Settings, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_topic(settings.bootstrap, name, BEFORE)
    return name


def _producer(settings: Settings, name: str) -> RoutingProducer:
    producer = RoutingProducer(
        settings.producer_config(
            **{"routing.usage.interval.ms": 500, "linger.ms": 5, "acks": "all", "routing.producer.id": name}
        )
    )
    producer.wait_ready(30)
    return producer


def _write_rates(settings: Settings, topic: str, seconds: float) -> list[float]:
    """Records/s written to each partition over ``seconds`` (the broker's end offsets)."""
    consumer = Consumer(client_settings(settings.kafka, **{"group.id": f"rates-{uuid.uuid4().hex[:6]}"}))
    try:
        parts = [TopicPartition(topic, p) for p in range(AFTER)]

        def ends() -> list[int]:
            return [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]

        first = ends()
        time.sleep(seconds)
        last = ends()
    finally:
        consumer.close()
    return [(b - a) / seconds for a, b in zip(first, last, strict=True)]


def _spread(rates: list[float]) -> float:
    mean = sum(rates) / len(rates)
    return max(rates) / mean if mean > 0 else float("inf")


def test_growing_12_to_24_under_load_keeps_every_stream_in_order_and_fills_to_balance(
    plane: tuple[Settings, list[Worker]],
) -> None:
    settings, workers = plane
    topic = _topic(settings, "grow")
    # A consumer learns of partitions added on its next metadata refresh (librdkafka's default:
    # every 5 minutes): until then the records moved there wait, unread (in order all the same).
    check = OrderCheck(settings, settings.lag_groups, topic, **{"topic.metadata.refresh.interval.ms": 1000})
    check.start()
    streams: dict[Stream, float] = {(t, ""): RATE for t in KEY_ONLY}
    streams.update({(t, f"k{k}"): RATE / 4 for t in KEYED for k in range(4)})
    with _producer(settings, "expand-main") as producer:
        traffic = NumberedStreams(producer, topic, streams)
        traffic.start()
        time.sleep(4 * WINDOW_S)  # the planner sees the traffic (and may rebalance the 12)
        grown_at = time.time() * 1000
        result = cli(settings, "topics", "expand", topic, "--to", str(AFTER), "--reason", "e2e", timeout=90)
        assert result.returncode == 0, result.stderr + result.stdout
        assert partition_count(settings.kafka, topic) == AFTER
        base = producer.cache.get(topic, HASH_BASE_TENANT) if producer.cache else None
        assert base is not None and len(base.partitions) == BEFORE and base.status is RouteStatus.ACTIVE

        def balanced() -> float | None:
            spread = _spread(_write_rates(settings, topic, 6.0))
            return spread if spread <= 1.10 else None

        grown = time.monotonic()
        # The planning worker dies (-9) once the fill is under way: the survivor finishes it,
        # and the drains it left behind, with every stream still in order.
        run_until(
            lambda: any(
                r.topic == topic and r.tenant and min(r.partitions) >= BEFORE for r in producer.cache or ()
            ),
            traffic,
            60,
            "a first fill move",
        )
        planner = run_until(lambda: leader(workers), traffic, 10, "a planning worker")
        planner.kill()
        spread = run_until(balanced, traffic, 240, "the new partitions to fill to max/mean <= 1.10")
        balanced_after_s = round(time.monotonic() - grown, 1)
        traffic.stop()
        assert not traffic.errors, traffic.errors
        assert producer.flush(30) == 0
        summary = {**check.finish(traffic.sent), "max_over_mean": round(spread, 3)}
    print(json.dumps(summary))
    assert summary["lost"] == 0 and summary["duplicated"] == 0 and summary["reordered"] == 0, summary
    history = [e for e in events(settings) if e.topic == topic]
    mine = [e for e in history if e.decided_at_ms >= grown_at - 1000]
    actions = [(e.tenant, e.action) for e in mine]
    assert (HASH_BASE_TENANT, "expand") in actions and (HASH_BASE_TENANT, "drain-complete") in actions, (
        actions
    )
    fills = [e for e in mine if e.reason_kind == "fill"]
    assert fills and all(e.to_partitions and min(e.to_partitions) >= BEFORE for e in fills), fills
    acked = next(e for e in mine if (e.tenant, e.action) == (HASH_BASE_TENANT, "drain-complete"))
    print(
        json.dumps(
            {
                "base_acknowledged_ms": acked.observed.get("pause_ms"),
                "producers_acked": acked.observed.get("producers_acked"),
                "balanced_after_s": balanced_after_s,
                "fill_moves": len(fills),
                "moves_after_growth": len([e for e in mine if e.tenant and e.status == "draining"]),
            }
        )
    )
    # A tenant never moved stayed on its home by the base through the growth: no stream split.
    ever_moved = {e.tenant for e in history}
    still = [t for t in KEY_ONLY if t not in ever_moved]
    assert still
    for tenant in still:
        assert check.partitions_after((tenant, ""), 0) == {java_partition(tenant.encode(), BEFORE)}, tenant
    audit = cli(settings, "audit", "verify", "--timeout", "10")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_rebase_moves_the_hashed_tenants_home_by_the_new_count_then_drops_the_base(
    plane: tuple[Settings, list[Worker]],
) -> None:
    settings, _ = plane
    topic = _topic(settings, "rebase")
    check = OrderCheck(settings, settings.lag_groups, topic, **{"topic.metadata.refresh.interval.ms": 1000})
    check.start()
    tenants = KEY_ONLY[:48]
    streams: dict[Stream, float] = {(t, ""): RATE for t in tenants}
    streams.update({(t, f"k{k}"): RATE / 4 for t in KEYED[:4] for k in range(4)})
    with _producer(settings, "rebase-main") as producer:
        traffic = NumberedStreams(producer, topic, streams)
        traffic.start()
        time.sleep(2 * WINDOW_S)
        result = cli(settings, "topics", "expand", topic, "--to", str(AFTER), timeout=90)
        assert result.returncode == 0, result.stderr + result.stdout
        time.sleep(2 * WINDOW_S)
        result = cli(settings, "topics", "rebase", topic, "--reason", "e2e")
        assert result.returncode == 0, result.stderr + result.stdout
        run_until(
            lambda: producer.route_for(topic, HASH_BASE_TENANT) is None,
            traffic,
            180,
            "the base to be dropped",
        )
        dropped = dict(traffic.sent)
        time.sleep(WINDOW_S)
        traffic.stop()
        assert not traffic.errors, traffic.errors
        assert producer.flush(30) == 0
        summary = check.finish(traffic.sent)
        placed = {t: producer.partition_for(topic, t.encode())[0] for t in tenants}
    print(json.dumps(summary))
    assert summary["lost"] == 0 and summary["duplicated"] == 0 and summary["reordered"] == 0, summary
    history = [e for e in events(settings) if e.topic == topic]
    kinds = [e.reason_kind for e in history]
    assert "rebase_home" in kinds and "base_dropped" in kinds, kinds
    # Every key-only tenant the planner did not place for balance (hashed all along, or moved
    # only by the rebase) is where murmur2 % 24 puts it: none is left where only the base would.
    for tenant in tenants:
        decided = {e.reason_kind for e in history if e.tenant == tenant} - {"drained"}
        if decided <= {"rebase_home"}:
            assert placed[tenant] == java_partition(tenant.encode(), AFTER), (tenant, decided)
            after = {p for s, p in check.partitions.get((tenant, ""), ()) if s >= dropped[(tenant, "")]}
            assert after <= {java_partition(tenant.encode(), AFTER)}, (tenant, after)
    audit = cli(settings, "audit", "verify", "--timeout", "10")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_producers_started_before_during_and_after_an_expansion_agree_on_every_key(
    plane: tuple[Settings, list[Worker]],
) -> None:
    settings, _ = plane
    topic = _topic(settings, "agree")
    keys = [f"agree-{i}".encode() for i in range(400)]
    before = _producer(settings, "expand-before")
    during: list[RoutingProducer] = []
    started = threading.Event()

    def start_during(text: str) -> None:
        if not started.is_set():  # the base is being recorded and answered: start one now
            started.set()
            threading.Thread(target=lambda: during.append(_producer(settings, "expand-during"))).start()

    try:
        expand_topic(settings, topic, AFTER, wait_s=60, issued_by="e2e", progress=start_during)
        wait_for(lambda: during, 60, "the producer started during the expansion")
        after = _producer(settings, "expand-after")
        producers = {"before": before, "during": during[0], "after": after}
        placed: dict[str, list[int]] = {}
        for name, producer in producers.items():
            futures = [producer.send(topic, b"v", key) for key in keys]
            assert producer.flush(30) == 0
            placed[name] = [f.result(10).partition for f in futures]
        by_base = [java_partition(key, BEFORE) for key in keys]
        assert placed["before"] == placed["during"] == placed["after"] == by_base
        # What a plain client with 24 partitions would do: most keys elsewhere.
        elsewhere = sum(java_partition(key, AFTER) != p for key, p in zip(keys, by_base, strict=True))
        assert elsewhere > len(keys) // 3, elsewhere
        # The check finds none hashed by the count... until a plain Kafka producer writes.
        clean = cli(settings, "topics", "hashing", topic, "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert json.loads(clean.stdout)["hashed_by_count"] == 0
        plain = Producer(client_settings(settings.kafka, partitioner="murmur2_random"))
        for key in keys:
            plain.produce(topic, b"plain", key)
        assert plain.flush(30) == 0
        found = cli(settings, "topics", "hashing", topic, "--json", "--records", "2000")
        assert found.returncode == 1, found.stdout + found.stderr
        detected = json.loads(found.stdout)
        assert detected["hash_base"] == BEFORE and detected["hashed_by_count"] == elsewhere, detected
        print(
            json.dumps(
                {"keys": len(keys), "agree": True, "plain_client_elsewhere": elsewhere, "detected": detected}
            )
        )
    finally:
        for producer in [before, *during]:
            producer.close()
        if "after" in locals():
            after.close()


_STOPPABLE = """
import json, sys, time
from routing_app.client import RoutingProducer
producer = RoutingProducer(json.loads(sys.argv[1]))
producer.wait_ready(30)
producer.produce(sys.argv[2], b"hello", b"stoppable")
producer.flush(10)
print("ready", flush=True)
while True:
    time.sleep(0.2)
"""


def test_an_expansion_waits_for_a_producer_that_cannot_answer_and_names_it(
    plane: tuple[Settings, list[Worker]],
) -> None:
    settings, _ = plane
    topic = _topic(settings, "stuck")
    name = f"stoppable-{uuid.uuid4().hex[:6]}"
    conf = settings.producer_config(**{"routing.producer.id": name, "acks": "all"})
    process = subprocess.Popen(
        [sys.executable, "-c", _STOPPABLE, json.dumps(conf), topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        os.kill(process.pid, signal.SIGSTOP)
        started = time.monotonic()
        result = cli(settings, "topics", "expand", topic, "--to", str(AFTER), "--wait", "8", timeout=60)
        waited = time.monotonic() - started
        assert result.returncode == 1, result.stdout + result.stderr
        message = " ".join(result.stderr.split())
        assert "not every live producer acknowledged the hash base" in message, message
        assert name in message and "was not grown" in message, message
        assert partition_count(settings.kafka, topic) == BEFORE
        print(json.dumps({"refused_after_s": round(waited, 1), "message": message[:300]}))
        # Once it can answer, the same command goes through.
        os.kill(process.pid, signal.SIGCONT)
        tries: list[str] = []

        def grown() -> bool:
            # Refused while the first base is still being answered ("retry once ..."): again.
            again = cli(settings, "topics", "expand", topic, "--to", str(AFTER), "--wait", "20", timeout=60)
            tries.append(again.stderr)
            return again.returncode == 0

        wait_for(grown, 90, f"the expansion once the producer answers: {tries[-1:]}")
        assert partition_count(settings.kafka, topic) == AFTER
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(10)
