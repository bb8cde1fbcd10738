"""What other Kafka clients see: the Java client's partitions, its console consumer, compaction."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from routing_app.client import RouteCache, java_partition
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.stack import java_for_kafka, kafka_classpath
from routing_app.stack.artifacts import ensure_kafka
from routing_app.topics import create_topic
from tests.e2e.support import Worker, cli, consume_all

pytestmark = pytest.mark.integration

JAVA_PARTITIONER = """
import java.nio.file.*;
import java.util.*;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class JavaPartitions {
    public static void main(String[] args) throws Exception {
        HexFormat hex = HexFormat.of();
        StringBuilder out = new StringBuilder();
        for (String line : Files.readAllLines(Path.of(args[0]))) {
            String[] parts = line.split(" ");
            byte[] key = parts[0].equals("-") ? new byte[0] : hex.parseHex(parts[0]);
            int n = Integer.parseInt(parts[1]);
            out.append(BuiltInPartitioner.partitionForKey(key, n)).append('\\n');
        }
        System.out.print(out);
    }
}
"""


@pytest.fixture(scope="module")
def java_classpath(stack_settings: Settings) -> str:
    ensure_kafka(stack_settings)
    return kafka_classpath(stack_settings)


def test_unrouted_keys_land_where_the_java_client_puts_them(java_classpath: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    keys = [f"tenant-{i}".encode() for i in range(300)]
    keys += ["ünïcødé-✓".encode(), b"", b"\x00", b"\xff" * 17]
    keys += [rng.randbytes(rng.randint(1, 64)) for _ in range(700)]
    counts = [1, 2, 3, 7, 12, 64, 100, 1000]
    cases = [(k, counts[i % len(counts)]) for i, k in enumerate(keys)]
    source = tmp_path / "JavaPartitions.java"
    source.write_text(JAVA_PARTITIONER)
    (tmp_path / "keys.txt").write_text("".join(f"{k.hex() or '-'} {n}\n" for k, n in cases))
    result = subprocess.run(
        [java_for_kafka(), "-cp", java_classpath, str(source), str(tmp_path / "keys.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    java = [int(x) for x in result.stdout.split()]
    ours = [java_partition(k, n) for k, n in cases]
    assert len(java) == len(cases)
    mismatches = [(k, n, j, o) for (k, n), j, o in zip(cases, java, ours, strict=True) if j != o]
    assert not mismatches, mismatches[:5]


def test_java_console_consumer_reads_plain_route_keys(
    routing_settings: Settings,
    worker: Worker,
    data_topic: Callable[[int], str],
    java_classpath: str,
) -> None:
    topic = data_topic(5)
    for tenant in ("alpha", "beta/with-slash"):
        out = cli(routing_settings, "routes", "pin", topic, tenant, "-p", "4")
        assert out.returncode == 0, out.stderr
    result = subprocess.run(
        [
            java_for_kafka(),
            "-cp",
            java_classpath,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            routing_settings.bootstrap,
            "--topic",
            routing_settings.routes_topic,
            "--from-beginning",
            "--timeout-ms",
            "8000",
            "--formatter-property",
            "print.key=true",
            "--formatter-property",
            "print.value=false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    keys = result.stdout.splitlines()
    assert f"{topic}/alpha" in keys, (result.stdout[-2000:], result.stderr[-2000:])
    assert f"{topic}/beta/with-slash" in keys


def test_cache_rebuilt_after_real_compaction_is_right(stack_settings: Settings) -> None:
    routes_topic = f"compaction.routes.{uuid.uuid4().hex[:8]}"
    create_topic(
        stack_settings.bootstrap,
        routes_topic,
        1,
        {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.001",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100",
            "max.compaction.lag.ms": "100",
        },
    )
    codec = RouteCodec(registry_client(stack_settings.registry_url), routes_topic)
    producer = Producer(client_settings(stack_settings.bootstrap))
    expected: dict[str, Route] = {}
    written = 0
    for epoch in range(1, 11):
        for t in range(40):
            tenant = f"t{t}"
            if epoch == 10 and t % 4 == 0:
                producer.produce(routes_topic, None, codec.encode_key("orders", tenant))
                expected.pop(tenant, None)
            else:
                route = Route("orders", tenant, ((t + epoch) % 12,), epoch, reason=f"version {epoch}")
                producer.produce(routes_topic, codec.encode(route), codec.encode_key("orders", tenant))
                expected[tenant] = route
            written += 1
        assert producer.flush(10) == 0
        time.sleep(0.15)  # lets segment.ms roll the segment, so older ones become cleanable

    def remaining() -> int:
        return len(consume_all(stack_settings.bootstrap, routes_topic, expected=written, timeout=3))

    deadline = time.monotonic() + 90
    left = remaining()
    while left >= written and time.monotonic() < deadline:
        # A new record rolls the active segment so the cleaner can compact the rest.
        producer.produce(routes_topic, None, codec.encode_key("orders", "roller"))
        producer.flush(10)
        time.sleep(2)
        left = remaining()
    assert left < written, "the log cleaner never compacted the test topic"

    cache = RouteCache(client_settings(stack_settings.bootstrap), codec, routes_topic).start()
    try:
        assert cache.wait_ready(30)
        rebuilt = {r.tenant: r for r in cache}
        assert rebuilt == expected
        assert cache.wait_settled(30)  # before settled, records not looked up are not checked
        assert cache.stats().undecodable == 0
    finally:
        cache.stop()
