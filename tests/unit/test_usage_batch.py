"""Usage records carrying many tenants: grouping by usage partition, size limits, the wire format
(usage_report schema version 2) and reading version 1 records."""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
from collections import Counter
from dataclasses import replace

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec, load_schema
from routing_app.usage import (
    USAGE_SCHEMA,
    UsageAccumulator,
    UsageReport,
    batch_reports,
    reports_of,
    usage_of,
)
from routing_app.usage.batch import bounded_streams

START, END = 1_700_000_000_000, 1_700_000_001_000


def _registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://batch-{uuid.uuid4().hex}"})


def _report(
    tenant: str,
    records: int = 1,
    *,
    topic: str = "orders",
    producer: str = "p-1",
    partition: int = -1,
    end: int = END,
    top: int = -1,
    streams: int = 0,
) -> UsageReport:
    return UsageReport(producer, topic, tenant, records, 10 * records, START, end, partition, top, streams)


def test_every_report_and_the_record_key_hash_to_the_records_partition() -> None:
    reports = [_report(f"tenant-{i}") for i in range(500)]
    reports += [_report("", 7, partition=p) for p in range(12)]  # residuals: key "orders/"
    batches = batch_reports(reports, 6)
    assert len(batches) <= 6
    for b in batches:
        assert java_partition(b.key, 6) == b.usage_partition
        for r in b.reports:
            assert java_partition(r.key.encode(), 6) == b.usage_partition
    assert Counter(r for b in batches for r in b.reports) == Counter(reports)


def test_reports_keep_their_order_within_a_record() -> None:
    reports = [_report(f"t{i}", records=1000 - i) for i in range(300)]
    for b in batch_reports(reports, 3):
        ranks = [reports.index(r) for r in b.reports]
        assert ranks == sorted(ranks)
        assert b.key == b.reports[0].key.encode()


def test_producers_and_intervals_never_share_a_record() -> None:
    reports = [_report("a"), _report("a", producer="p-2"), _report("a", end=END + 1000)]
    batches = batch_reports(reports, 1)
    assert len(batches) == 3
    assert {(b.producer_id, b.interval_end) for b in batches} == {
        ("p-1", END),
        ("p-2", END),
        ("p-1", END + 1000),
    }


def test_a_large_partition_is_split_by_count_and_by_size() -> None:
    reports = [_report(f"tenant-{i}") for i in range(25)]
    by_count = batch_reports(reports, 1, max_reports=10)
    assert [len(b.reports) for b in by_count] == [10, 10, 5]
    long_names = [_report("x" * 1000 + str(i)) for i in range(10)]
    by_size = batch_reports(long_names, 1, max_bytes=9_000)
    assert len(by_size) > 1
    assert all(len(b.reports) >= 1 for b in by_size)
    assert [r for b in by_size for r in b.reports] == long_names


def test_one_oversized_report_still_gets_a_record_of_its_own() -> None:
    huge = _report("y" * 5000)
    batches = batch_reports([_report("a"), huge, _report("b")], 1, max_bytes=1000)
    assert [len(b.reports) for b in batches] == [1, 1, 1]


def test_nothing_to_send_makes_no_record() -> None:
    assert batch_reports([], 6) == []


def test_record_roundtrips_through_the_registry_codec() -> None:
    codec = AvroCodec(_registry(), USAGE_SCHEMA, "usage")
    reports = [
        _report("acme/eu", 3, partition=2, top=2, streams=2),
        _report("", 10, partition=5, top=10, streams=1),
        _report("émoji-✓", 1, top=1, streams=1),
    ]
    (batch,) = batch_reports(reports, 1)
    record = codec.decode(codec.encode(batch.to_record()))
    assert reports_of(record) == reports
    assert usage_of(record) == [
        ("orders", "acme/eu", 2, 3, 30, 2, 2),
        ("orders", "", 5, 10, 100, 10, 1),
        ("orders", "émoji-✓", -1, 1, 10, 1, 1),
    ]


def test_entries_without_stream_figures_read_as_one_stream() -> None:
    """Version 2 producers say nothing of their streams: each tenant is read as one ordered
    stream (never splittable), the only assumption that cannot break strict order."""
    record = {"reports": [{"topic": "t", "tenant": "a", "records": 7, "bytes": 70, "partition": 1}]}
    assert usage_of(record) == [("t", "a", 1, 7, 70, 7, 1)]


@pytest.mark.parametrize(
    ("records", "top", "streams", "expected"),
    [
        (100, 3, 64, (3, 64)),  # plausible: kept
        (100, 0, 64, (2, 64)),  # lighter than an even split over its streams: raised to it
        (100, 500, 4, (100, 4)),  # heavier than all the records: all of them
        (100, 10, 10**9, (10, 100)),  # more streams than records: as many as records
        (100, -1, 5, (100, 1)),  # unknown: one stream
        (0, 5, 5, (0, 0)),
    ],
)
def test_stream_figures_are_bounded_by_the_records(
    records: int, top: int, streams: int, expected: tuple[int, int]
) -> None:
    assert bounded_streams(records, top, streams) == expected


# The usage_report schema before records carried many tenants.
USAGE_V1 = {
    "type": "record",
    "name": "UsageReport",
    "namespace": "routing_app.v1",
    "fields": [
        {"name": "producer_id", "type": "string"},
        {"name": "topic", "type": "string"},
        {"name": "tenant", "type": "string"},
        {"name": "records", "type": "long"},
        {"name": "bytes", "type": "long"},
        {"name": "interval_start", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "interval_end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "partition", "type": "int", "default": -1},
    ],
}


def test_a_version_1_record_still_reads_as_one_report() -> None:
    registry = _registry()
    codec = AvroCodec(registry, USAGE_SCHEMA, "usage")
    v1_id = registry.register_schema("usage-value", Schema(json.dumps(USAGE_V1), "AVRO"))
    old = _report("acme", 4, partition=-1)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(copy.deepcopy(USAGE_V1)), old.to_record())
    data = struct.pack(">bI", 0, v1_id) + body.getvalue()
    assert reports_of(codec.decode(data)) == [replace(old, top_stream=4, streams=1)]


def test_an_older_reader_sees_a_version_2_record_as_an_empty_report() -> None:
    # A worker not yet upgraded must not crash on the new records (rolling upgrade).
    record = {
        "producer_id": "p",
        "interval_start": START,
        "interval_end": END,
        "reports": [{"topic": "t", "tenant": "a", "records": 1, "bytes": 1, "partition": 0}],
    }
    writer = fastavro.parse_schema(copy.deepcopy(load_schema(USAGE_SCHEMA)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, record)
    body.seek(0)
    old_view = fastavro.schemaless_reader(body, writer, fastavro.parse_schema(copy.deepcopy(USAGE_V1)))
    assert isinstance(old_view, dict)
    assert (old_view["records"], old_view["tenant"]) == (0, "")


def test_producer_take_then_batch_keeps_the_bound_and_the_totals() -> None:
    acc = UsageAccumulator("p-9")
    for i in range(3000):
        acc.add("orders", f"tenant-{i}", 10, partition=i % 12)
    reports = acc.take(now_ms=END, top_k=1000)
    batches = batch_reports(reports, 6)
    assert sum(len(b.reports) for b in batches) == len(reports) <= 1000 + 12
    assert len(batches) == 6
    assert sum(r.records for b in batches for r in b.reports) == 3000


def test_malformed_entries_raise_for_the_worker_to_count() -> None:
    with pytest.raises(KeyError):
        usage_of({"reports": [{"topic": "t"}]})
    with pytest.raises(KeyError):
        reports_of({"producer_id": "p", "interval_start": 1})
    with pytest.raises(TypeError):
        reports_of({"producer_id": 5, "interval_start": 1, "interval_end": 2, "reports": []})


_reports = st.lists(
    st.builds(
        _report,
        st.text(min_size=0, max_size=30),
        st.integers(0, 10**6),
        topic=st.sampled_from(["orders", "payments", "a.b"]),
        producer=st.sampled_from(["p-1", "p-2"]),
        partition=st.integers(-1, 11),
        end=st.sampled_from([END, END + 1000]),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(_reports, st.integers(1, 12), st.integers(1, 50), st.integers(200, 5000))
def test_batches_partition_the_reports_exactly_within_the_limits(
    reports: list[UsageReport], partitions: int, max_reports: int, max_bytes: int
) -> None:
    batches = batch_reports(reports, partitions, max_reports=max_reports, max_bytes=max_bytes)
    assert Counter(r for b in batches for r in b.reports) == Counter(reports)
    for b in batches:
        assert 1 <= len(b.reports) <= max_reports
        assert java_partition(b.key, partitions) == b.usage_partition
        assert {(r.producer_id, r.interval_start, r.interval_end) for r in b.reports} == {
            (b.producer_id, b.interval_start, b.interval_end)
        }
        assert all(
            java_partition(r.key.encode("utf-8", "surrogateescape"), partitions) == b.usage_partition
            for r in b.reports
        )
