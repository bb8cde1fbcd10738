"""Three brokers (`routing-app stack up --brokers 3`): the routing topics are replicated, and a
broker killed with SIGKILL under load loses, duplicates and reorders nothing, while a route
written before the kill and one written after it both reach the producer.

The cluster is private to this module (its own state folder and ports); it uses the session's
schema registry, which keeps its schemas in a file of its own, not in Kafka.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from routing_app.client import RecordMetadata, RoutingProducer, java_partition
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import RouteMode
from routing_app.stack import LocalStack, StackInfo
from routing_app.stack.process import free_ports
from routing_app.topics import create_topic
from tests.e2e.support import consume_all, fresh_routing_settings, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 12
TENANTS = 100
RATE = 1000  # records/s over all tenants, key-only: each tenant is one ordered stream
ROUTED = "tenant-routed"


@dataclass(frozen=True)
class Cluster:
    stack: LocalStack
    info: StackInfo
    settings: Settings  # clients' settings: every broker in bootstrap_servers


@pytest.fixture(scope="module")
def cluster(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kafka_port, controller_port, registry_port = free_ports(3)
    local = stack_settings.replace(
        bootstrap_servers=None,
        schema_registry_url=stack_settings.registry_url,
        state_dir=tmp_path_factory.mktemp("brokers3"),
        kafka_port=kafka_port,
        controller_port=controller_port,
        registry_port=registry_port,
        # Three JVMs next to the session's stack on a 2-core CI runner.
        kafka_heap="384m",
    )
    stack = LocalStack(local, brokers=3)
    try:
        info = stack.up()
        yield Cluster(stack, info, local.replace(bootstrap_servers=info.bootstrap))
    finally:
        stack.down()


def describe(bootstrap: str, topics: list[str]) -> dict[str, tuple[set[int], str]]:
    """topic -> (replica counts of its partitions, min.insync.replicas)."""
    admin = AdminClient(client_settings(bootstrap))
    # A topic just created may not be in every broker's metadata yet.
    metadata = wait_for(
        lambda: (md := admin.list_topics(timeout=10)).topics.keys() >= set(topics) and md,
        10,
        "the topics in the metadata",
    )
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]

    def min_insync() -> dict[str, str] | None:
        # The broker asked may still not know a topic another one created a moment ago.
        try:
            configs = admin.describe_configs(resources, request_timeout=10)
            return {r.name: configs[r].result(10)["min.insync.replicas"].value for r in resources}
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise

    found = wait_for(min_insync, 10, "every broker to know the topics' configs")
    return {
        r.name: ({len(p.replicas) for p in metadata.topics[r.name].partitions.values()}, found[r.name])
        for r in resources
    }


def test_three_brokers_replicate_the_routing_topics(cluster: Cluster) -> None:
    assert [b.node_id for b in cluster.info.brokers] == [1, 2, 3]
    assert cluster.info.bootstrap == ",".join(b.address for b in cluster.info.brokers)
    status = cluster.stack.status()
    assert status["running"] and [n["answering"] for n in status["kafka"]["nodes"]] == [True] * 3

    s = fresh_routing_settings(cluster.settings, "brokers")
    data = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(s.bootstrap, data, PARTITIONS)
    found = describe(s.bootstrap, [s.routes_topic, s.events_topic, s.control_topic, s.usage_topic, data])
    # Routes, decisions, commands and data: an acknowledged write is on two brokers.
    for topic in (s.routes_topic, s.events_topic, s.control_topic, data):
        assert found[topic] == ({3}, "2"), (topic, found[topic])
    # Usage reports are statistics: three copies, but writes go on with one broker left.
    assert found[s.usage_topic] == ({3}, "1")


# -- a broker killed under load ------------------------------------------------------------------


class AckedTraffic(threading.Thread):
    """Numbered key-only records for every tenant at ``rate`` records/s; remembers each ack."""

    def __init__(self, producer: RoutingProducer, topic: str, tenants: list[str], rate: float) -> None:
        super().__init__(name="acked-traffic", daemon=True)
        self.producer, self.topic, self.tenants, self.rate = producer, topic, tenants, rate
        self.sent: dict[str, int] = {}
        self.acked_at: list[float] = []  # monotonic, in delivery order
        self.failed: list[str] = []
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)

    def on_delivery(self, err: KafkaError | None, md: RecordMetadata | None) -> None:
        if err is None:
            self.acked_at.append(time.monotonic())
        else:
            self.failed.append(str(err))

    def run(self) -> None:
        tick, owed, turn = 0.02, 0.0, 0
        next_tick = time.monotonic()
        try:
            while not self.halt.is_set():
                owed += self.rate * tick
                for _ in range(int(owed)):
                    tenant = self.tenants[turn % len(self.tenants)]
                    turn += 1
                    seq = self.sent.get(tenant, 0)
                    self.producer.produce(
                        self.topic, f"{tenant}|{seq}".encode(), tenant.encode(), on_delivery=self.on_delivery
                    )
                    self.sent[tenant] = seq + 1
                owed -= int(owed)
                next_tick += tick
                self.halt.wait(max(0.0, next_tick - time.monotonic()))
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def write_route(s: Settings, route: Route) -> None:
    """Writes a route as the worker would (the project's codec, acks=all), without a worker."""
    codec = RouteCodec(registry_client(s.registry_url), s.routes_topic)
    producer = Producer(client_settings(s.bootstrap, acks="all", **{"enable.idempotence": True}))
    producer.produce(s.routes_topic, codec.encode(route), RouteCodec.encode_key(route.topic, route.tenant))
    # Long enough for a leader election of the routes partition.
    assert producer.flush(60) == 0


def leader_of(bootstrap: str, topic: str) -> int:
    admin = AdminClient(client_settings(bootstrap))
    return int(admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader)


def longest_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    """(longest gap between consecutive acks within [start, end], when it began)."""
    inside = sorted(t for t in times if start <= t <= end)
    gaps = [(b - a, a) for a, b in itertools.pairwise(inside)]
    return max(gaps, default=(0.0, start))


def test_broker_killed_under_load_loses_nothing_and_routes_still_propagate(
    cluster: Cluster,
    record_property: Callable[[str, object], None],
) -> None:
    s = fresh_routing_settings(cluster.settings, "kill")
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(s.bootstrap, topic, PARTITIONS)
    tenants = [ROUTED, *(f"tenant-{i}" for i in range(TENANTS - 1))]
    hashed = java_partition(ROUTED.encode(), PARTITIONS)
    before_kill, after_kill = (hashed + 4) % PARTITIONS, (hashed + 8) % PARTITIONS
    # The routes partition's leader: the route cache must follow its successor.
    victim = leader_of(s.bootstrap, s.routes_topic)
    victim_pid = next(b.pid for b in cluster.info.brokers if b.node_id == victim)
    assert victim_pid is not None

    conf = s.producer_config(**{"acks": "all", "linger.ms": 5})
    with RoutingProducer(conf) as producer:
        producer.wait_ready(30)
        traffic = AckedTraffic(producer, topic, tenants, RATE)
        traffic.start()
        time.sleep(2)
        write_route(
            s,
            Route(
                topic,
                ROUTED,
                (before_kill,),
                epoch=1,
                mode=RouteMode.RELAXED,
                reason="before the kill",
                updated_at_ms=int(time.time() * 1000),
            ),
        )
        wait_for(lambda: producer.route_for(topic, ROUTED) is not None, 20, "the first route")
        time.sleep(1)

        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # SIGKILL is delivered, not awaited: the node is gone once `stack status` says so.
        wait_for(
            lambda: (
                [n["id"] for n in cluster.stack.status()["kafka"]["nodes"] if n["pid"] is None] == [victim]
            ),
            10,
            "the killed node to be down",
        )
        assert not cluster.stack.status()["running"]

        write_route(
            s,
            Route(
                topic,
                ROUTED,
                (after_kill,),
                epoch=2,
                mode=RouteMode.RELAXED,
                reason="after the kill",
                updated_at_ms=int(time.time() * 1000),
            ),
        )
        wait_for(
            lambda: getattr(producer.route_for(topic, ROUTED), "epoch", 0) == 2,
            60,
            "the route written after the kill",
        )
        second_route_s = time.monotonic() - killed_at
        time.sleep(3)
        traffic.stop()
        stopped_at = time.monotonic()
        assert not traffic.errors, traffic.errors
        assert producer.flush(60) == 0
    # Restarted once the load is over: under load on a 2-core runner a broker takes 30-40 s to
    # rejoin, and the kill, not the rejoin, is what this test is about.
    restarted = cluster.stack.up()  # starts only the missing node
    assert restarted.started == (f"kafka-{victim}",)
    assert cluster.stack.status()["running"]
    sent = sum(traffic.sent.values())
    max_gap, gap_began = longest_gap(traffic.acked_at, killed_at - 1, stopped_at)
    normal_gap, _ = longest_gap(traffic.acked_at, 0, killed_at - 1)
    figures = {
        "sent": sent,
        "acked": len(traffic.acked_at),
        "failed": len(traffic.failed),
        "max_ack_gap_s": round(max_gap, 2),
        "gap_began_after_kill_s": round(gap_began - killed_at, 2),
        "max_ack_gap_before_kill_s": round(normal_gap, 2),
        "second_route_seen_after_s": round(second_route_s, 2),
        "broker_rejoined_in_s": round(restarted.startup_s[f"kafka-{victim}"], 2),
    }
    for name, figure in figures.items():
        record_property(name, figure)
    print(f"\nbroker {victim} killed under {RATE} records/s: {figures}")
    assert traffic.failed == [], traffic.failed[:5]
    assert len(traffic.acked_at) == sent

    records = consume_all(s.bootstrap, topic, expected=sent, timeout=60)
    by_tenant: dict[str, list[tuple[int, int]]] = {}  # tenant -> [(seq, partition)]
    last: dict[tuple[str, int], int] = {}
    out_of_order = 0
    for partition, key, value in records:
        assert key is not None and value is not None
        tenant, seq_text = value.decode().split("|")
        seq = int(seq_text)
        out_of_order += seq <= last.get((tenant, partition), -1)
        last[(tenant, partition)] = seq
        by_tenant.setdefault(tenant, []).append((seq, partition))
    assert out_of_order == 0
    for tenant, count in traffic.sent.items():
        seqs = sorted(seq for seq, _ in by_tenant.get(tenant, ()))
        assert seqs == list(range(count)), f"{tenant}: {count} sent, {len(seqs)} read"
    assert len(records) == sent
    for tenant in tenants[1:]:
        assert {p for _, p in by_tenant[tenant]} == {java_partition(tenant.encode(), PARTITIONS)}
    # The routed tenant went to its hash partition, then the first route, then the second,
    # each switch once and for good.
    placements = [p for _, p in sorted(by_tenant[ROUTED])]
    switches = [p for i, p in enumerate(placements) if i == 0 or p != placements[i - 1]]
    assert switches == [hashed, before_kill, after_kill], switches
