"""The foundation, end to end: CLI -> control topic -> worker -> routes topic -> producers."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable

import pytest

from routing_app.client import RoutingProducer, java_partition
from routing_app.config import Settings
from routing_app.routes import Route
from tests.e2e.support import Worker, cli, consume_all, events, wait_for

pytestmark = pytest.mark.integration


def producer_conf(settings: Settings, **extra: object) -> dict[str, object]:
    return settings.producer_config(**{"acks": "all", "linger.ms": 5, **extra})


def epoch_of(producer: RoutingProducer, topic: str, tenant: str) -> int | None:
    route = producer.route_for(topic, tenant)
    return None if route is None else route.epoch


def test_pin_from_cli_reaches_running_producer_then_unpin_restores_murmur2(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(12)
    tenant = "acme"
    hashed = java_partition(tenant.encode(), 12)
    target = (hashed + 5) % 12
    with RoutingProducer(producer_conf(routing_settings)) as producer:
        producer.wait_ready(30)
        before = producer.send(topic, b"before", tenant.encode()).result(10)
        assert before.partition == hashed

        done = cli(routing_settings, "routes", "pin", topic, tenant, "-p", str(target), "--reason", "e2e")
        assert done.returncode == 0, done.stderr
        assert "pin" in done.stderr
        wait_for(lambda: producer.route_for(topic, tenant) is not None, what="route in cache")

        marker = f"pinned-{uuid.uuid4()}".encode()
        md = producer.send(topic, marker, tenant.encode()).result(10)
        assert md.partition == target
        landed = consume_all(routing_settings.bootstrap, topic, expected=2)
        assert (target, tenant.encode(), marker) in landed

        pinned_epoch = epoch_of(producer, topic, tenant)
        done = cli(routing_settings, "routes", "unpin", topic, tenant)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: producer.route_for(topic, tenant) is None, what="tombstone in cache")
        after = producer.send(topic, b"after", tenant.encode()).result(10)
        assert after.partition == hashed
        assert pinned_epoch == 1

        # A second pin after the tombstone still gets a higher epoch than the first.
        done = cli(routing_settings, "routes", "pin", topic, tenant, "-p", str(target))
        assert done.returncode == 0, done.stderr
        wait_for(lambda: producer.route_for(topic, tenant) is not None, what="re-pin")
        assert (epoch_of(producer, topic, tenant) or 0) > 2


def test_pin_rejections_name_the_problem(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(4)
    out = cli(routing_settings, "routes", "pin", topic, "t1", "-p", "9")
    assert out.returncode == 1
    assert "partition 9 does not exist" in out.stderr
    out = cli(routing_settings, "routes", "pin", "no-such-topic-xyz", "t1", "-p", "0")
    assert out.returncode == 1
    assert "does not exist" in out.stderr
    out = cli(routing_settings, "routes", "unpin", topic, "never-routed")
    assert out.returncode == 1
    assert "no route" in out.stderr


def test_shard_list_keeps_each_secondary_key_on_one_partition(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(12)
    shards = [1, 4, 7]
    done = cli(
        routing_settings, "routes", "pin", topic, "bigco", *[a for p in shards for a in ("-p", str(p))]
    )
    assert done.returncode == 0, done.stderr
    users = [f"user-{i}".encode() for i in range(60)]
    with RoutingProducer(producer_conf(routing_settings)) as producer:
        producer.wait_ready(30)
        wait_for(lambda: producer.route_for(topic, "bigco") is not None, what="shard route")
        for round_ in range(10):
            for user in users:
                producer.produce(topic, b"r%d" % round_, user, tenant="bigco")
        assert producer.flush(30) == 0
        assert producer.counters["sharded"] == 600
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, _ in consume_all(routing_settings.bootstrap, topic, expected=600):
        assert key is not None
        partitions_of[key].add(partition)
    assert set(partitions_of) == set(users)
    assert all(len(p) == 1 for p in partitions_of.values()), "a user was split across shards"
    used = set().union(*partitions_of.values())
    assert used == set(shards), f"60 users should spread over all shards, used {used}"
    for user, (partition,) in ((u, tuple(p)) for u, p in partitions_of.items()):
        assert partition == shards[java_partition(user, len(shards))]


def test_new_producer_rebuilds_the_same_cache(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(6)
    with RoutingProducer(producer_conf(routing_settings)) as first:
        first.wait_ready(30)
        for i in range(5):
            assert cli(routing_settings, "routes", "pin", topic, f"t{i}", "-p", str(i)).returncode == 0
        assert cli(routing_settings, "routes", "unpin", topic, "t2").returncode == 0
        wait_for(
            lambda: first.route_for(topic, "t4") is not None and first.route_for(topic, "t2") is None,
            what="first cache updated",
        )
        assert first.cache is not None
        seen_by_first: dict[str, Route] = {r.key: r for r in first.cache}
    with RoutingProducer(producer_conf(routing_settings)) as second:
        second.wait_ready(30)
        assert second.cache is not None
        rebuilt = {r.key: r for r in second.cache}
    assert rebuilt == seen_by_first
    assert {r.tenant for r in rebuilt.values() if r.topic == topic} == {"t0", "t1", "t3", "t4"}


def test_routes_list_and_show(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(3)
    assert (
        cli(routing_settings, "routes", "pin", topic, "shown", "-p", "2", "--mode", "relaxed").returncode == 0
    )
    out = cli(routing_settings, "routes", "show", topic, "shown")
    assert out.returncode == 0, out.stderr
    assert '"partitions": [2]' in out.stdout and '"mode": "relaxed"' in out.stdout
    out = cli(routing_settings, "routes", "list", "--topic", topic, "--json")
    assert out.returncode == 0 and out.stdout.count("\n") == 1
    assert cli(routing_settings, "routes", "show", topic, "absent").returncode == 1
    answer = worker.get(f"/routes/{topic}/shown")
    assert answer["route"]["partitions"] == [2]


def test_unkeyed_records_use_librdkafka_and_missing_topic_is_a_clear_error(
    routing_settings: Settings, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(4)
    with RoutingProducer(producer_conf(routing_settings)) as producer:
        producer.wait_ready(30)
        md = producer.send(topic, b"no key").result(10)
        assert 0 <= md.partition < 4
        assert producer.counters["unkeyed"] == 1
        with pytest.raises(Exception, match=r"does not exist .* never created implicitly"):
            producer.produce(f"missing-{uuid.uuid4().hex}", b"v", b"k")
        with pytest.raises(ValueError, match="partition 4 does not exist"):
            producer.produce(topic, b"v", b"k", partition=4)
        md = producer.send(topic, b"explicit", b"k", partition=3).result(10)
        assert md.partition == 3


def test_freeze_unfreeze_and_evacuate_go_through_the_writer(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(4)
    for args, said in (
        (("freeze", topic, "calm"), "operator freeze"),
        (("unfreeze", topic, "calm"), "operator unfreeze"),
        (("evacuate", topic, "-p", "3"), "operator evacuate partitions [3]"),
        (("evacuate", topic), "operator stop evacuating"),
    ):
        out = cli(routing_settings, "routes", *args)
        assert out.returncode == 0 and said in out.stderr, (args, out.stderr)
        assert "deprecated" not in out.stderr
    # The command's old name still works, and says which to use instead.
    out = cli(routing_settings, "routes", "drain", topic, "-p", "2")
    assert out.returncode == 0 and "operator evacuate partitions [2]" in out.stderr, out.stderr
    assert "`routing-app routes drain` is deprecated: use `routing-app routes evacuate`" in out.stderr
    out = cli(routing_settings, "routes", "evacuate", topic, "-p", "9")
    assert out.returncode == 1 and "partition 9 does not exist" in out.stderr
    out = cli(routing_settings, "routes", "evacuate", topic)
    assert out.returncode == 0, out.stderr
    # Each event carries the kind of its decision, set where it was made.
    mine = [(e.action, e.reason_kind) for e in events(routing_settings) if e.topic == topic]
    assert mine == [
        ("freeze", "operator"),
        ("unfreeze", "operator"),
        ("evacuate", "operator"),
        ("evacuate", "operator"),
        ("evacuate", "operator"),
        ("rejected", "rejected"),
        ("evacuate", "operator"),
    ], mine
