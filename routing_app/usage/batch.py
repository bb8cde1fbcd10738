"""Many tenants' usage reports in one usage record (``usage_report`` schema, version 2).

A producer takes one interval's reports and sends them grouped by usage partition: every
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

from routing_app.routes.model import RouteError, route_key, validate_topic_name
from routing_app.usage.report import UsageReport

# A record must stay far below Kafka's default 1 MB message limit, whatever the tenant names.
MAX_REPORTS_PER_RECORD = 2_000
MAX_RECORD_BYTES = 256 * 1024
_ENTRY_OVERHEAD = 40  # varints and length prefixes of one entry, generously

# (topic, tenant, partition, records, bytes, top stream, streams): one tenant's (or residual's)
# usage in a record, its stream figures already bounded (see ``bounded_streams``).
TenantUsage = tuple[str, str, int, int, int, int, int]


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
            "reports": [
                {
                    "topic": r.topic,
                    "tenant": r.tenant,
                    "records": r.records,
                    "bytes": r.bytes,
                    "partition": r.partition,
                    "top_stream": r.top_stream,
                    "streams": r.streams,
                }
                for r in self.reports
            ],
        }


def batch_reports(
    reports: Iterable[UsageReport],
    usage_partitions: int,
    max_reports: int = MAX_REPORTS_PER_RECORD,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[UsageBatch]:
    """Groups reports into records: one per (producer, interval, usage partition), split when a
    record would exceed ``max_reports`` entries or about ``max_bytes`` (UTF-8 worst case).
    Reports keep their order (the take's: busiest first)."""
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


def _batch(
    partition: int, producer_id: str, start: int, end: int, chunk: list[tuple[bytes, UsageReport]]
) -> UsageBatch:
    return UsageBatch(partition, chunk[0][0], producer_id, start, end, tuple(report for _, report in chunk))


_ROW = itemgetter("topic", "tenant", "partition", "records", "bytes")


def bounded_streams(records: int, top_stream: int, streams: int) -> tuple[int, int]:
    """(top stream, streams) as the planner may trust them: unknown (-1, or a version 2 entry)
    is one stream of all the records; a reported heaviest stream lies between an even split
    over the streams and all the records, so no report makes a tenant look more splittable
    than its own figures allow."""
    if records <= 0:
        return 0, 0
    if top_stream < 0 or streams <= 0:
        return records, 1
    streams = min(streams, records)
    return min(records, max(top_stream, -(-records // streams))), streams


def usage_of(record: Mapping[str, Any]) -> list[TenantUsage]:
    """The (topic, tenant, partition, records, bytes, top stream, streams) entries of a decoded
    usage record, of any version. Raises KeyError or TypeError on a malformed record; field
    types are the Avro decoder's to guarantee."""
    entries = record.get("reports")
    rows: list[TenantUsage] = []
    if entries:
        for entry in entries:
            topic, tenant, partition, records, nbytes = _ROW(entry)
            top, streams = bounded_streams(records, entry.get("top_stream", -1), entry.get("streams", 0))
            rows.append((topic, tenant, partition, records, nbytes, top, streams))
        return rows
    records = record["records"]
    return [
        (
            record["topic"],
            record["tenant"],
            record.get("partition", -1),
            records,
            record["bytes"],
            *bounded_streams(records, -1, 0),
        )
    ]


def reports_of(record: Mapping[str, Any]) -> list[UsageReport]:
    """The usage reports a decoded usage record carries, of either version."""
    producer_id = record["producer_id"]
    if not isinstance(producer_id, str):
        raise TypeError(f"producer_id is a {type(producer_id).__name__}, not a string")
    start, end = int(record["interval_start"]), int(record["interval_end"])
    return [
        UsageReport(producer_id, topic, tenant, records, nbytes, start, end, partition, top, streams)
        for topic, tenant, partition, records, nbytes, top, streams in usage_of(record)
    ]


# -- what a usage report may claim -----------------------------------------------------------
# Why a worker refused usage, as its counters name them. A whole record is refused for its
# interval; single entries (one tenant or residual) for their figures.
REJECTED_FUTURE = "rejected_future"  # its interval ends ahead of the worker's clock
REJECTED_INTERVAL = "rejected_interval"  # ends before it starts, or absurdly long
REJECTED_NEGATIVE = "rejected_negative"  # a negative count of records or bytes
REJECTED_TOO_LARGE = "rejected_too_large"  # more than one producer can send in the interval
REJECTED_MALFORMED = "rejected_malformed"  # not a topic name, or a partition below -1
REJECTION_REASONS = (
    REJECTED_FUTURE,
    REJECTED_INTERVAL,
    REJECTED_NEGATIVE,
    REJECTED_TOO_LARGE,
    REJECTED_MALFORMED,
)


@dataclass(frozen=True)
class UsageLimits:
    """What one usage report can claim: a report beyond them is forged or broken, and one such
    report used to crash the worker's usage agent (a count overflowing Avro's long), shard a
    tenant over every partition, or close hours of windows ahead of time.

    The bounds are generous for real producers: one producer cannot send a million records a
    second to one partition, nor a GiB. A report's records land in one window, and a producer
    that could not send its reports for a while sends the counts it kept in a later, short
    interval: the count bound is per second of the interval or of one window, whichever is
    longer.
    """

    max_records_per_s: int = 1_000_000
    max_bytes_per_s: int = 1 << 30
    # An interval ending further ahead than this (the worker's clock) is refused: stream time
    # may then close no window before its end plus grace has passed by the wall clock.
    max_future_ms: int = 1_000
    # Producers report every routing.usage.interval.ms (1 s by default).
    max_interval_ms: int = 60_000
    window_ms: int = 10_000

    def interval_problem(self, start: int, end: int, now_ms: int) -> tuple[str, str] | None:
        """(reason, what is wrong) when a record's interval is refused, else None."""
        if end > now_ms + self.max_future_ms:
            return REJECTED_FUTURE, (
                f"its interval ends {(end - now_ms) / 1000:.1f} s ahead of this worker's clock "
                f"(allowed: {self.max_future_ms} ms of clock skew); is the producer's clock "
                f"right?"
            )
        if end < start:
            return REJECTED_INTERVAL, f"its interval ends ({end}) before it starts ({start})"
        if end - start > self.max_interval_ms:
            return REJECTED_INTERVAL, (
                f"its interval lasts {(end - start) / 1000:.1f} s (at most {self.max_interval_ms / 1000:g} s)"
            )
        return None

    def bound(
        self, rows: list[TenantUsage], start: int, end: int
    ) -> tuple[list[TenantUsage], list[tuple[str, str]]]:
        """(the entries kept, (reason, what is wrong) per entry refused) of one record whose
        interval passed ``interval_problem``."""
        seconds = max(end - start, self.window_ms) / 1000.0
        max_records = int(self.max_records_per_s * seconds)
        max_bytes = int(self.max_bytes_per_s * seconds)
        kept: list[TenantUsage] = []
        refused: list[tuple[str, str]] = []
        for row in rows:
            topic, tenant, partition, records, nbytes = row[:5]
            if records < 0 or nbytes < 0:
                refused.append(
                    (REJECTED_NEGATIVE, f"{topic[:80]}/{tenant[:80]}: {records} records, {nbytes} bytes")
                )
            elif records > max_records or nbytes > max_bytes:
                refused.append(
                    (
                        REJECTED_TOO_LARGE,
                        (
                            f"{topic[:80]}/{tenant[:80]}: {records} records, {nbytes} bytes "
                            "in an interval of "
                            f"{(end - start) / 1000:g} s (at most {max_records} records and "
                            f"{max_bytes} bytes)"
                        ),
                    )
                )
            elif partition < -1 or not _is_topic_name(topic):
                refused.append((REJECTED_MALFORMED, f"topic {topic[:80]!r}, partition {partition}"))
            else:
                kept.append(row)
        return kept, refused


_topic_names: set[str] = set()


def _is_topic_name(topic: str) -> bool:
    if topic in _topic_names:
        return True
    try:
        validate_topic_name(topic)
    except RouteError:
        return False
    if len(_topic_names) < 10_000:  # a handful of data topics; never grow without bound
        _topic_names.add(topic)
    return True
