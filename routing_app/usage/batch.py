"""Many tenants' usage reports in one usage record (``usage_report`` schema, version 2).

A producer drains one interval's reports and sends them grouped by usage partition: every
report's key (``<topic>/<tenant>``, ``<topic>/`` for a residual) hashes (murmur2, as the Java
client) to the partition of the record that carries it. The usage topic stays partitioned by
tenant; a worker handles one Kafka record per (producer, interval, usage partition) instead of
one per tenant. The record's Kafka key is the key of its first (busiest) report, so it hashes to
that partition too.

Version 1 records (one tenant in the top-level fields, ``reports`` empty) still decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from confluent_kafka import murmur2

from routing_app.routes.model import route_key
from routing_app.usage.report import UsageReport

# A record must stay far below Kafka's default 1 MB message limit, whatever the tenant names.
MAX_REPORTS_PER_RECORD = 2_000
MAX_RECORD_BYTES = 256 * 1024
_ENTRY_OVERHEAD = 24  # varints and length prefixes of one entry, generously

# (topic, tenant, partition, records, bytes): one tenant's (or residual's) usage in a record.
TenantUsage = tuple[str, str, int, int, int]


@dataclass(frozen=True, slots=True)
class UsageBatch:
    """The reports of one producer interval that go to one usage partition."""

    usage_partition: int
    key: bytes
    producer_id: str
    interval_start: int
    interval_end: int
    reports: tuple[UsageReport, ...]

    def to_record(self) -> dict[str, Any]:
        return {
            "producer_id": self.producer_id,
            "interval_start": self.interval_start,
            "interval_end": self.interval_end,
            "reports": [{"topic": r.topic, "tenant": r.tenant, "records": r.records,
                         "bytes": r.bytes, "partition": r.partition} for r in self.reports],
        }


def batch_reports(reports: Iterable[UsageReport], usage_partitions: int,
                  max_reports: int = MAX_REPORTS_PER_RECORD,
                  max_bytes: int = MAX_RECORD_BYTES) -> list[UsageBatch]:
    """Groups reports into records: one per (producer, interval, usage partition), split when a
    record would exceed ``max_reports`` entries or about ``max_bytes`` (UTF-8 worst case).
    Reports keep their order (the drain's: busiest first)."""
    groups: dict[tuple[int, str, int, int], list[tuple[bytes, UsageReport]]] = {}
    partition_of: dict[bytes, int] = {}
    for report in reports:
        key = route_key(report.topic, report.tenant).encode("utf-8", "surrogateescape")
        partition = partition_of.get(key)
        if partition is None:
            partition = partition_of[key] = murmur2(key, usage_partitions)  # java_partition
        group = (partition, report.producer_id, report.interval_start, report.interval_end)
        groups.setdefault(group, []).append((key, report))
    batches: list[UsageBatch] = []
    for (partition, producer_id, start, end), items in groups.items():
        fixed = len(producer_id) * 4 + 32
        chunk: list[tuple[bytes, UsageReport]] = []
        size = fixed
        for key, report in items:
            entry = len(report.topic) * 4 + len(report.tenant) * 4 + _ENTRY_OVERHEAD
            if chunk and (len(chunk) >= max_reports or size + entry > max_bytes):
                batches.append(_batch(partition, producer_id, start, end, chunk))
                chunk, size = [], fixed
            chunk.append((key, report))
            size += entry
        if chunk:
            batches.append(_batch(partition, producer_id, start, end, chunk))
    return batches


def _batch(partition: int, producer_id: str, start: int, end: int,
           chunk: list[tuple[bytes, UsageReport]]) -> UsageBatch:
    return UsageBatch(partition, chunk[0][0], producer_id, start, end,
                      tuple(report for _, report in chunk))


_ROW = itemgetter("topic", "tenant", "partition", "records", "bytes")


def usage_of(record: Mapping[str, Any]) -> list[TenantUsage]:
    """The (topic, tenant, partition, records, bytes) entries of a decoded usage record, of
    either version. Raises KeyError or TypeError on a malformed record; field types are the
    Avro decoder's to guarantee."""
    entries = record.get("reports")
    if entries:
        return list(map(_ROW, entries))
    return [(record["topic"], record["tenant"], record.get("partition", -1), record["records"],
             record["bytes"])]


def reports_of(record: Mapping[str, Any]) -> list[UsageReport]:
    """The usage reports a decoded usage record carries, of either version."""
    producer_id = record["producer_id"]
    if not isinstance(producer_id, str):
        raise TypeError(f"producer_id is a {type(producer_id).__name__}, not a string")
    start, end = int(record["interval_start"]), int(record["interval_end"])
    return [UsageReport(producer_id, topic, tenant, records, nbytes, start, end, partition)
            for topic, tenant, partition, records, nbytes in usage_of(record)]
