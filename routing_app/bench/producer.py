"""``bench producer``: RoutingProducer against a raw confluent-kafka Producer and aiokafka.

All three send the same keyed records (key = tenant id, 100-byte value) to the same 12-partition
topic with the same settings (acks=all, linger 5 ms, no compression, same batch size), end to
end: the clock stops when every record is acknowledged. The raw producer partitions keys with
librdkafka's Java-compatible ``murmur2_random``; aiokafka's default partitioner is murmur2 too;
the RoutingProducer finds each tenant's route in its cache (every tenant has one) and reports
usage, as it does in production. Rounds are interleaved (raw, routing, aiokafka, raw, ...) and
the median of each is compared.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import statistics
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, Message, Producer

from routing_app.bench.common import (
    Reporter,
    Scratch,
    SilentReporter,
    rounded,
    tenant_id,
    write_routes,
)
from routing_app.client import RoutingProducer
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route

KINDS = ("raw", "routing", "aiokafka")


def _librdkafka_settings(batch_bytes: int, linger_ms: int) -> dict[str, Any]:
    return {
        "acks": "all",
        "linger.ms": linger_ms,
        "compression.type": "none",
        "batch.size": batch_bytes,
        # Java/aiokafka defaults to non-idempotent too; librdkafka's default is the same.
        "enable.idempotence": False,
    }


def _round_raw(settings: Settings, topic: str, keys: list[bytes], value: bytes,
               warmup: list[bytes], batch_bytes: int, linger_ms: int) -> float:
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(client_settings(settings.kafka, partitioner="murmur2_random",
                                        **_librdkafka_settings(batch_bytes, linger_ms)))
    produce = producer.produce

    def send_all(batch: list[bytes]) -> int:
        for key in batch:
            try:
                produce(topic, value, key, on_delivery=on_delivery)
            except BufferError:  # local queue full: serve acknowledgements, like the router does
                while True:
                    producer.poll(0.05)
                    try:
                        produce(topic, value, key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        pass
        return int(producer.flush(120))

    if send_all(warmup):
        raise RuntimeError("raw producer: warm-up records not acknowledged")
    started = time.perf_counter()
    left = send_all(keys)
    elapsed = time.perf_counter() - started
    if left or failures:
        raise RuntimeError(f"raw producer: {left} records unacknowledged, {len(failures)} failed")
    return len(keys) / elapsed


def _round_routing(settings: Settings, topic: str, routes_topic: str, usage_topic: str,
                   keys: list[bytes], value: bytes, warmup: list[bytes], batch_bytes: int,
                   linger_ms: int) -> tuple[float, dict[str, int]]:
    producer = RoutingProducer({
        "bootstrap.servers": settings.bootstrap,
        "schema.registry.url": settings.registry_url,
        "routing.routes.topic": routes_topic,
        "routing.usage.topic": usage_topic,
        "routing.usage.interval.ms": int(settings.usage_interval_s * 1000),
        "logger": client_settings(settings.bootstrap)["logger"],
        **_librdkafka_settings(batch_bytes, linger_ms),
    })
    try:
        producer.wait_ready(120)
        produce = producer.produce
        for key in warmup:  # also registers the usage schema and loads the topic metadata
            produce(topic, value, key)
        if producer.flush(120):
            raise RuntimeError("routing producer: warm-up records not acknowledged")
        started = time.perf_counter()
        for key in keys:
            produce(topic, value, key)
        left = producer.flush(120)
        elapsed = time.perf_counter() - started
    finally:
        # Usage reports deferred by a full local queue at flush() go out here, off the clock.
        producer.close()
    counters = dict(producer.counters)
    if left or counters["delivery_failed"]:
        raise RuntimeError(f"routing producer: {left} records unacknowledged, "
                           f"{counters['delivery_failed']} failed")
    if counters["routed"] != len(keys) + len(warmup):
        raise RuntimeError(f"routing producer routed {counters['routed']} of "
                           f"{len(keys) + len(warmup)} records: are all routes in the cache?")
    return len(keys) / elapsed, counters


async def _aiokafka_round(settings: Settings, topic: str, keys: list[bytes], value: bytes,
                          warmup: list[bytes], batch_bytes: int, linger_ms: int,
                          chunk: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        linger_ms=linger_ms,
        compression_type=None,
        max_batch_size=batch_bytes,
        enable_idempotence=False,
    )
    await producer.start()
    try:
        async def send_all(batch: list[bytes]) -> None:
            send = producer.send
            pending: list[asyncio.Future[Any]] = []
            for key in batch:
                pending.append(await send(topic, value, key=key))
                if len(pending) >= chunk:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)  # raises if a record was not acknowledged

        await send_all(warmup)
        started = time.perf_counter()
        await send_all(keys)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return len(keys) / elapsed


def run_producer(
    settings: Settings,
    *,
    records: int = 200_000,
    rounds: int = 3,
    tenants: int = 10_000,
    partitions: int = 12,
    value_bytes: int = 100,
    batch_bytes: int = 131_072,
    linger_ms: int = 5,
    aiokafka_chunk: int = 10_000,
    warmup_records: int = 1_000,
    profile: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Median records/s of each producer over interleaved rounds, and the routing ratios.

    ``profile``: one more RoutingProducer round, off the record, under cProfile (the sending
    thread only; usage reports are encoded on the producer's poll thread).
    """
    if records < 1 or rounds < 1 or tenants < 1:
        raise ValueError("records, rounds and tenants must be positive")
    say = reporter or SilentReporter()
    value = os.urandom(value_bytes)
    names = [tenant_id(i) for i in range(tenants)]
    keys = [names[i % tenants].encode("utf-8") for i in range(records)]
    warmup = keys[:warmup_records]
    rps: dict[str, list[float]] = {kind: [] for kind in KINDS}
    usage = {"usage_reports": 0, "usage_deferred": 0}
    with Scratch(settings, say) as scratch:
        data_topic = scratch.topic("data", partitions)
        routes_topic = scratch.routes_topic()
        usage_topic = scratch.usage_topic()
        now_ms = int(time.time() * 1000)
        write_routes(settings, routes_topic, (
            Route(data_topic, name, (i % partitions,), 1, updated_at_ms=now_ms,
                  decided_by="bench") for i, name in enumerate(names)),
            tenants, say, f"writing {tenants:,} routes")
        for round_no in range(1, rounds + 1):
            for kind in KINDS:
                if kind == "raw":
                    rate = _round_raw(settings, data_topic, keys, value, warmup, batch_bytes,
                                      linger_ms)
                elif kind == "routing":
                    rate, counters = _round_routing(settings, data_topic, routes_topic,
                                                    usage_topic, keys, value, warmup,
                                                    batch_bytes, linger_ms)
                    for name in usage:
                        usage[name] += counters[name]
                else:
                    rate = asyncio.run(_aiokafka_round(settings, data_topic, keys, value, warmup,
                                                       batch_bytes, linger_ms, aiokafka_chunk))
                rps[kind].append(rate)
                say.note(f"round {round_no}/{rounds} {kind:>8}: {rate:>10,.0f} records/s")
        profiled = ""
        if profile:
            say.note("profiling one more routing round (not counted)")
            profiler = cProfile.Profile()
            profiler.runcall(_round_routing, settings, data_topic, routes_topic, usage_topic,
                             keys, value, warmup, batch_bytes, linger_ms)
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
            profiled = text.getvalue()
    median = {kind: statistics.median(values) for kind, values in rps.items()}
    return {
        "ratio_vs_raw": rounded(median["routing"] / median["raw"]),
        "ratio_vs_aiokafka": rounded(median["routing"] / median["aiokafka"]),
        "routing_rps": rounded(median["routing"], 1),
        "raw_rps": rounded(median["raw"], 1),
        "aiokafka_rps": rounded(median["aiokafka"], 1),
        "records": records,
        "tenants": tenants,
        "rounds": rounds,
        "partitions": partitions,
        "value_bytes": value_bytes,
        "batch_bytes": batch_bytes,
        "linger_ms": linger_ms,
        **usage,
        "rounds_rps": {kind: [rounded(v, 1) for v in values] for kind, values in rps.items()},
        **({"cprofile": profiled} if profiled else {}),
    }
