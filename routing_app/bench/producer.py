"""``bench producer``: RoutingProducer against a raw confluent-kafka Producer and aiokafka.

All three send the same keyed records (key = tenant id, 100-byte value) to the same 12-partition
topic with the same settings (acks=all, idempotence on, linger 5 ms, no compression, same batch
size), end to end: the clock stops when every record is acknowledged. The raw producer is what a
performance-minded user writes: ``produce(topic, value, key)`` with positional arguments, one
producer-wide delivery callback in its configuration (a per-record ``on_delivery=`` keyword
costs as much again as the produce call), poll() only while the local queue is full, then
flush(). It partitions keys with librdkafka's Java-compatible ``murmur2_random``; aiokafka's
default partitioner is murmur2 too; the RoutingProducer finds each tenant's route in its cache
(every tenant has one) and reports usage, as it does in production.

Rounds are interleaved (raw, routing, aiokafka, raw, ...): a shared machine's load drifts, so
each round's routing figure is also divided by the raw figure of the same round, and the
median and range of those paired ratios are reported next to the ratio of the medians. Each
round also measures the process's CPU time per record (all threads): ``cpu_ratio_vs_raw`` is
the throughput ratio a machine without a spare core would show.
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
        # On, as RoutingProducer has it by default (a strict move's order depends on it).
        "enable.idempotence": True,
    }


class _Clock:
    """Wall time and the whole process's CPU time (every thread: librdkafka's, the poll
    thread's) from its making: CPU per record says what each producer costs when cores are
    scarce, which the throughput of a shared machine hides."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def per_record(self, records: int) -> tuple[float, float]:
        """(records/s, CPU µs per record) so far."""
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        return records / wall, cpu * 1e6 / records


def _round_raw(
    settings: Settings,
    topic: str,
    keys: list[bytes],
    value: bytes,
    warmup: list[bytes],
    batch_bytes: int,
    linger_ms: int,
) -> tuple[float, float]:
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            failures.append(err)

    # Producer-wide callback, as RoutingProducer has it: the fast way to learn of failures.
    producer = Producer(
        client_settings(
            settings.kafka,
            partitioner="murmur2_random",
            on_delivery=on_delivery,
            **_librdkafka_settings(batch_bytes, linger_ms),
        )
    )
    produce, poll = producer.produce, producer.poll

    def send_all(batch: list[bytes]) -> int:
        for key in batch:
            try:
                produce(topic, value, key)
            except BufferError:  # local queue full: serve acknowledgements, like the router does
                while True:
                    poll(0.05)
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        pass
        return int(producer.flush(120))

    if send_all(warmup):
        raise RuntimeError("raw producer: warm-up records not acknowledged")
    clock = _Clock()
    left = send_all(keys)
    rate, cpu_us = clock.per_record(len(keys))
    if left or failures:
        raise RuntimeError(f"raw producer: {left} records unacknowledged, {len(failures)} failed")
    return rate, cpu_us


def _round_routing(
    settings: Settings,
    topic: str,
    routes_topic: str,
    usage_topic: str,
    keys: list[bytes],
    value: bytes,
    warmup: list[bytes],
    batch_bytes: int,
    linger_ms: int,
) -> tuple[float, float, dict[str, int]]:
    producer = RoutingProducer(
        {
            "bootstrap.servers": settings.bootstrap,
            "schema.registry.url": settings.registry_url,
            "routing.routes.topic": routes_topic,
            "routing.usage.topic": usage_topic,
            "routing.usage.interval.ms": int(settings.usage_interval_s * 1000),
            "logger": client_settings(settings.bootstrap)["logger"],
            **_librdkafka_settings(batch_bytes, linger_ms),
        }
    )
    try:
        producer.wait_ready(120)
        produce = producer.produce
        for key in warmup:  # also registers the usage schema and loads the topic metadata
            produce(topic, value, key)
        if producer.flush(120):
            raise RuntimeError("routing producer: warm-up records not acknowledged")
        clock = _Clock()
        for key in keys:
            produce(topic, value, key)
        left = producer.flush(120)
        rate, cpu_us = clock.per_record(len(keys))
    finally:
        # Usage reports deferred by a full local queue at flush() go out here, off the clock.
        producer.close()
    counters = dict(producer.counters)
    if left or counters["delivery_failed"]:
        raise RuntimeError(
            f"routing producer: {left} records unacknowledged, {counters['delivery_failed']} failed"
        )
    if counters["routed"] != len(keys) + len(warmup):
        raise RuntimeError(
            f"routing producer routed {counters['routed']} of "
            f"{len(keys) + len(warmup)} records: are all routes in the cache?"
        )
    return rate, cpu_us, counters


async def _aiokafka_round(
    settings: Settings,
    topic: str,
    keys: list[bytes],
    value: bytes,
    warmup: list[bytes],
    batch_bytes: int,
    linger_ms: int,
    chunk: int,
) -> tuple[float, float]:
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
        clock = _Clock()
        await send_all(keys)
        rate, cpu_us = clock.per_record(len(keys))
    finally:
        await producer.stop()
    return rate, cpu_us


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
    with_aiokafka: bool = True,
    profile: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Median records/s of each producer over interleaved rounds, and the routing ratios.

    ``with_aiokafka``: False leaves aiokafka out (its rounds take ten times as long).
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
    kinds = KINDS if with_aiokafka else tuple(k for k in KINDS if k != "aiokafka")
    rps: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    usage = {"usage_reports": 0, "usage_deferred": 0}
    with Scratch(settings, say) as scratch:
        data_topic = scratch.topic("data", partitions)
        routes_topic = scratch.routes_topic()
        usage_topic = scratch.usage_topic()
        now_ms = int(time.time() * 1000)
        write_routes(
            settings,
            routes_topic,
            (
                Route(data_topic, name, (i % partitions,), 1, updated_at_ms=now_ms, decided_by="bench")
                for i, name in enumerate(names)
            ),
            tenants,
            say,
            f"writing {tenants:,} routes",
        )
        for round_no in range(1, rounds + 1):
            for kind in kinds:
                if kind == "raw":
                    rate, cpu_us = _round_raw(
                        settings, data_topic, keys, value, warmup, batch_bytes, linger_ms
                    )
                elif kind == "routing":
                    rate, cpu_us, counters = _round_routing(
                        settings,
                        data_topic,
                        routes_topic,
                        usage_topic,
                        keys,
                        value,
                        warmup,
                        batch_bytes,
                        linger_ms,
                    )
                    for name in usage:
                        usage[name] += counters[name]
                else:
                    rate, cpu_us = asyncio.run(
                        _aiokafka_round(
                            settings, data_topic, keys, value, warmup, batch_bytes, linger_ms, aiokafka_chunk
                        )
                    )
                rps[kind].append(rate)
                cpu[kind].append(cpu_us)
                say.note(
                    f"round {round_no}/{rounds} {kind:>8}: {rate:>10,.0f} records/s, "
                    f"{cpu_us:.2f} µs CPU a record"
                )
        profiled = ""
        if profile:
            say.note("profiling one more routing round (not counted)")
            profiler = cProfile.Profile()
            profiler.runcall(
                _round_routing,
                settings,
                data_topic,
                routes_topic,
                usage_topic,
                keys,
                value,
                warmup,
                batch_bytes,
                linger_ms,
            )
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
            profiled = text.getvalue()
    median = {kind: statistics.median(values) for kind, values in rps.items()}
    # Paired by round: routing against the raw round just before it, under the same load.
    paired = [routing / raw for routing, raw in zip(rps["routing"], rps["raw"], strict=True)]
    cpu_median = {kind: statistics.median(values) for kind, values in cpu.items()}
    figures: dict[str, Any] = {
        "ratio_vs_raw": rounded(median["routing"] / median["raw"]),
        "paired_ratio_median": rounded(statistics.median(paired)),
        "paired_ratio_min": rounded(min(paired)),
        "paired_ratio_max": rounded(max(paired)),
        # Raw's CPU per record over ours: the ratio a machine with no spare core would see.
        "cpu_ratio_vs_raw": rounded(cpu_median["raw"] / cpu_median["routing"]),
    }
    if with_aiokafka:
        figures["ratio_vs_aiokafka"] = rounded(median["routing"] / median["aiokafka"])
    for kind in kinds:
        figures[f"{kind}_rps"] = rounded(median[kind], 1)
        # Spread: (max - min) / median of the kind's rounds.
        figures[f"{kind}_spread"] = rounded((max(rps[kind]) - min(rps[kind])) / median[kind])
        figures[f"{kind}_cpu_us_per_record"] = rounded(cpu_median[kind])
    return {
        **figures,
        "records": records,
        "tenants": tenants,
        "rounds": rounds,
        "partitions": partitions,
        "value_bytes": value_bytes,
        "batch_bytes": batch_bytes,
        "linger_ms": linger_ms,
        **usage,
        "rounds_rps": {kind: [rounded(v, 1) for v in values] for kind, values in rps.items()},
        "rounds_cpu_us": {kind: [rounded(v) for v in values] for kind, values in cpu.items()},
        "paired_ratios": [rounded(r) for r in paired],
        **({"cprofile": profiled} if profiled else {}),
    }
