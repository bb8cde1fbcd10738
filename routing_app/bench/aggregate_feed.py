"""The input of ``bench aggregate`` and its clock: usage records as RoutingProducers would send
them, fed to the workers as fast as the broker takes them, timed until the last is aggregated.

Apart from the rounds and their figures (``aggregate``) because this is the measurement itself:
the records made ahead of the clock, the feeding, and the CPU read from /proc around it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from confluent_kafka import Producer

from routing_app.app.launcher import WorkerProcess
from routing_app.bench.common import Reporter
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports


@dataclass(frozen=True)
class AggregateRun:
    """One run's figures: rates, CPU, and how the work split between the workers."""

    records: int
    reports_per_s: float
    records_per_s: float
    worker_cpu_s: float | None  # all workers together, during the run
    host_idle: float | None  # share of the machine's CPU time left idle during the run
    fed_s: float  # until the broker had every usage record
    elapsed_s: float
    worker_reports: tuple[int, ...]  # reports each worker handled
    worker_done_s: tuple[float, ...]  # when each worker handled its last report
    worker_planning: tuple[bool, ...]  # which one owns the control partition


def _usage_records(
    s: Settings, reports: int, tenants: int, top_k: int, now: int
) -> list[tuple[bytes, bytes, int, int]]:
    """(key, value, partition, reports in it) of usage records holding ``reports`` reports."""
    codec = AvroCodec(registry_client(s.registry_config()), USAGE_SCHEMA, s.usage_topic)
    named = max(1, min(top_k, tenants))
    producers = -(-tenants // named)
    data_partitions = 12

    def interval(producer: int, size: int) -> list[tuple[bytes, bytes, int, int]]:
        """One interval of one producer: its named tenants, then a residual per partition."""
        first = producer * named
        sent = [
            UsageReport(
                f"bench-{producer}",
                "orders",
                f"tenant-{(first + i) % tenants:06d}",
                10,
                1000,
                now - 1000,
                now,
                (first + i) % data_partitions,
            )
            for i in range(named)
        ]
        sent += [
            UsageReport(f"bench-{producer}", "orders", "", 5, 500, now - 1000, now, p)
            for p in range(data_partitions)
        ]
        return [
            (b.key, codec.encode(b.to_record()), b.usage_partition, len(b.reports))
            for b in batch_reports(sent[:size], s.usage_partitions)
        ]

    per_interval = named + data_partitions
    # Every interval of a producer reports the same tenants (a stable top-k): encode it once.
    full = [interval(p, per_interval) for p in range(min(producers, -(-reports // per_interval)))]
    out: list[tuple[bytes, bytes, int, int]] = []
    made = i = 0
    while made + per_interval <= reports:
        out += full[i % len(full)]
        made += per_interval
        i += 1
    if made < reports:
        out += interval(i % producers, reports - made)
    return out


def feed_and_time(
    s: Settings, workers: list[WorkerProcess], reports: int, tenants: int, top_k: int, reporter: Reporter
) -> AggregateRun:
    """Sends ``reports`` reports as usage records, timed until the workers aggregated the last."""
    now = int(time.time() * 1000)
    records = _usage_records(s, reports, tenants, top_k, now)
    producer = Producer(client_settings(s.kafka, **{"linger.ms": 20}))
    cpu_before = [_cpu_seconds(w.process.pid) for w in workers]
    idle_before = _host_cpu()
    started = time.monotonic()
    with reporter.progress("tenant usage reports aggregated", reports) as advance:
        for key, value, partition, _ in records:
            while True:
                try:
                    # Timestamped inside the interval, as RoutingProducer does.
                    producer.produce(s.usage_topic, value, key, timestamp=now - 1, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        fed = time.monotonic() - started
        seen = 0
        deadline = time.monotonic() + 600
        handled = [0] * len(workers)
        last_change = [0.0] * len(workers)  # when each worker's count last grew
        while seen < reports:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {reports} reports aggregated in 600 s")
            time.sleep(0.1)
            for i, w in enumerate(workers):
                count = _handled(w)
                if count != handled[i]:
                    handled[i], last_change[i] = count, time.monotonic() - started
            total = sum(handled)
            advance(total - seen)
            seen = total
    elapsed = time.monotonic() - started
    cpu_after = [_cpu_seconds(w.process.pid) for w in workers]
    idle_after = _host_cpu()
    full = [w.get("/writer/stats") for w in workers]
    stats = [f["usage"] for f in full]
    aggregated = sum(int(u["reports_aggregated"]) for u in stats)
    if aggregated != reports:
        raise RuntimeError(f"{aggregated} of {reports} reports went into a window: {stats}")
    worker_cpu = None
    if None not in cpu_before and None not in cpu_after:
        worker_cpu = sum(
            b - a for a, b in zip(cpu_before, cpu_after, strict=True) if a is not None and b is not None
        )
    host_idle = None
    if idle_before is not None and idle_after is not None and idle_after[1] > idle_before[1]:
        host_idle = (idle_after[0] - idle_before[0]) / (idle_after[1] - idle_before[1])
    return AggregateRun(
        len(records),
        reports / elapsed,
        len(records) / elapsed,
        worker_cpu,
        host_idle,
        fed,
        elapsed,
        tuple(handled),
        tuple(last_change),
        tuple(bool(f.get("planning")) for f in full),
    )


def _handled(worker: WorkerProcess) -> int:
    """Reports the worker has read so far (its stats page)."""
    usage = worker.get("/writer/stats")["usage"]
    return int(usage["usage_reports"])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _host_cpu() -> tuple[float, float] | None:
    """(idle, total) CPU ticks of the whole machine so far (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return float(ticks[3] + ticks[4]), float(sum(ticks))
    except (OSError, ValueError, IndexError):
        return None
