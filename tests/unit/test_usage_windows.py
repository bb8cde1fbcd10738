"""UsageWindows, the worker side of usage: one table write per usage record, totals that survive a
new owner through the table (changelog), closing by stream time and timer, counters.

The windowed table is a stand-in with the surface UsageWindows uses (``table[key][range] = v``,
``table.table.window`` and ``table.table.data``); values go through JSON as through the changelog.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from faust.windows import TumblingWindow

from routing_app.app.usage import UsageWindows, parse_producer_key, producer_key
from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec
from routing_app.config import Settings
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports
from routing_app.usage.batch import UsageLimits
from routing_app.windows import WINDOW_SUMMARY_SCHEMA, WindowSummary

PARTITIONS = 4
SIZE_S = 10.0
SIZE = int(SIZE_S * 1000)


class _WindowSet:
    def __init__(self, table: FakeWindowTable, key: str) -> None:
        self._table, self._key = table, key

    def __setitem__(self, window_range: tuple[float, float], value: Any) -> None:
        self._table.writes.append(self._key)
        # What a new owner reads back from the changelog: the JSON of the value.
        self._table.table.data[(self._key, window_range)] = json.loads(json.dumps(value))


class _Inner:
    def __init__(self) -> None:
        self.window = TumblingWindow(SIZE_S, expires=3 * SIZE_S)
        self.data: dict[tuple[str, tuple[float, float]], Any] = {}


class FakeWindowTable:
    def __init__(self) -> None:
        self.table = _Inner()
        self.writes: list[str] = []

    def __getitem__(self, key: str) -> _WindowSet:
        return _WindowSet(self, key)


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, value: bytes, headers: Any) -> None:
        self.sent.append(value)


class Harness:
    def __init__(
        self,
        table: FakeWindowTable | None = None,
        registry: SchemaRegistryClient | None = None,
        ready: Callable[[], bool] | None = None,
        delivered: list[tuple[bytes, int, int]] | None = None,
    ) -> None:
        """``delivered``: the records an earlier owner read, (value, partition, offset): the
        usage topic as it stands, where this one goes on."""
        self.registry = registry or SchemaRegistryClient.new_client({"url": f"mock://uw-{uuid.uuid4().hex}"})
        self.settings = Settings().replace(
            usage_partitions=PARTITIONS, window_s=SIZE_S, window_grace_ms=500, window_idle_ms=1000
        )
        self.usage = AvroCodec(self.registry, USAGE_SCHEMA, "usage")
        self.summary_codec = AvroCodec(self.registry, WINDOW_SUMMARY_SCHEMA, "control")
        self.table = table or FakeWindowTable()
        self.control = FakeTopic()
        # These tests move stream time on with reports stamped ahead of the wall clock (up to a
        # window and its grace), instead of waiting for it: allow that much clock skew here.
        # test_bad_input.py checks the default bounds.
        limits = UsageLimits(max_future_ms=3 * SIZE, window_ms=SIZE)
        self.windows = UsageWindows(
            self.settings,
            self.usage,
            self.summary_codec,
            self.table,
            self.control,  # type: ignore[arg-type]
            "w-1",
            ready,  # type: ignore[arg-type]
            limits=limits,
        )
        self.delivered = list(delivered or [])

    def send(self, reports: list[UsageReport]) -> list[int]:
        """Hands the records of these reports to the worker at the next offsets of their usage
        partitions; returns their partitions."""
        partitions = []
        for batch in batch_reports(reports, PARTITIONS):
            value = self.usage.encode(batch.to_record())
            offset = sum(1 for _, p, _ in self.delivered if p == batch.usage_partition)
            self.delivered.append((value, batch.usage_partition, offset))
            asyncio.run(self.windows.on_report(value, batch.usage_partition, offset))
            partitions.append(batch.usage_partition)
        return partitions

    def read_again(self, partition: int, from_offset: int) -> None:
        """What faust does after a rebalance: the partition's records from the last commit."""
        for value, p, offset in self.delivered:
            if p == partition and offset >= from_offset:
                asyncio.run(self.windows.on_report(value, p, offset))

    def summaries(self) -> list[WindowSummary]:
        return [WindowSummary.from_record(self.summary_codec.decode(v)) for v in self.control.sent]


def _open_window() -> int:
    """The start of the window open now: a timer cannot close it while the test runs."""
    now = int(time.time() * 1000)
    return now - now % SIZE


def _tenants_of(partition: int, count: int, prefix: str = "t") -> list[str]:
    names: list[str] = []
    i = 0
    while len(names) < count:
        name = f"{prefix}{i}"
        if java_partition(f"orders/{name}".encode(), PARTITIONS) == partition:
            names.append(name)
        i += 1
    return names


def _reports(tenants: list[str], start: int, producer: str = "p-1", records: int = 10) -> list[UsageReport]:
    end = start + SIZE // 2
    return [UsageReport(producer, "orders", t, records, 100 * records, end - 1000, end) for t in tenants]


def _close_all(h: Harness, start: int, partitions: range | list[int] = range(PARTITIONS)) -> None:
    """A report past the window's end + grace on a partition closes it there by stream time."""
    later = start + SIZE + h.settings.window_grace_ms + 1
    for p in partitions:
        (name,) = _tenants_of(p, 1, prefix="closer")
        h.send([UsageReport("closer", "orders", name, 1, 1, later - 1000, later)])


@pytest.fixture
def start() -> Iterator[int]:
    yield _open_window()


def test_one_table_write_per_record_not_per_tenant(start: int) -> None:
    h = Harness()
    tenants = [f"tenant-{i}" for i in range(200)]
    partitions = h.send(_reports(tenants, start))
    assert len(partitions) == PARTITIONS
    assert len(h.table.writes) == len(partitions)
    assert h.windows.counters["usage_records"] == PARTITIONS
    assert h.windows.counters["usage_reports"] == 200
    assert h.windows.counters["reports_aggregated"] == 200
    # Each write is keyed by the partition of the record it came with (its changelog partition).
    assert sorted(parse_producer_key(k)[0] for k in h.table.writes) == sorted(partitions)


def test_a_closed_window_sums_every_producer_and_record(start: int) -> None:
    h = Harness()
    tenants = [f"tenant-{i}" for i in range(40)]
    h.send(_reports(tenants, start, producer="p-1", records=10))
    h.send(_reports(tenants, start, producer="p-1", records=5))
    h.send(_reports(tenants[:10], start, producer="p-2", records=1))
    h.send([UsageReport("p-2", "orders", "", 7, 70, start, start + 1000, 3)])  # a residual
    _close_all(h, start)
    mine = [s for s in h.summaries() if s.window_start == start]
    assert sorted(s.usage_partition for s in mine) == list(range(PARTITIONS))
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for s in mine:
        totals.update(s.tenants)
    expected = {
        ("orders", t): (15 + (1 if i < 10 else 0), 1500 + (100 if i < 10 else 0))
        for i, t in enumerate(tenants)
    }
    assert totals == expected
    residuals = {k: v for s in mine for k, v in s.residuals.items()}
    assert residuals == {("orders", 3): (7, 70)}
    residual_partition = java_partition(b"orders/", PARTITIONS)
    (with_residual,) = [s for s in mine if s.residuals]
    assert with_residual.usage_partition == residual_partition
    assert {p for s in mine for p in s.producers} == {"p-1", "p-2"}


def test_a_new_owner_restores_the_totals_and_keeps_adding_to_them(start: int) -> None:
    first = Harness()
    tenants = _tenants_of(2, 30)
    first.send(_reports(tenants, start, producer="p-1", records=10))
    first.send(_reports(tenants[:5], start, producer="p-2", records=3))
    # The worker dies before the window closes; another one takes partition 2 over with the
    # table as it recovered it from the changelog.
    table = FakeWindowTable()
    table.table.data = dict(first.table.table.data)
    second = Harness(table, registry=first.registry, delivered=first.delivered)
    asyncio.run(second.windows.on_tick({2}))
    assert second.windows.counters["windows_restored"] == 2  # one entry per producer
    # Nothing was committed: the new owner reads both records again, and they are in the
    # totals it restored already.
    second.read_again(2, from_offset=0)
    assert second.windows.counters["duplicate_reports"] == 35
    assert second.windows.counters["reports_aggregated"] == 0
    second.send(_reports(tenants, start, producer="p-1", records=1))
    # What it writes now still holds what p-1 sent before the takeover.
    key = producer_key(2, "p-1")
    value = next(v for (k, _), v in table.table.data.items() if k == key)
    assert value["offset"] == 2
    assert {(row[1], row[3]) for row in value["totals"]} == {(t, 11) for t in tenants}
    _close_all(second, start)
    (summary,) = [s for s in second.summaries() if s.window_start == start and s.usage_partition == 2]
    assert summary.tenants == {
        ("orders", t): (11 + (3 if i < 5 else 0), 1100 + (300 if i < 5 else 0)) for i, t in enumerate(tenants)
    }
    assert set(summary.producers) == {"p-1", "p-2"}


def test_records_read_again_by_the_same_owner_count_once(start: int) -> None:
    h = Harness()
    tenants = _tenants_of(1, 4)
    h.send(_reports(tenants, start, producer="p-1", records=2))
    h.send(_reports(tenants, start, producer="p-2", records=5))
    h.read_again(1, from_offset=0)
    h.send(_reports(tenants, start, producer="p-1", records=1))
    h.read_again(1, from_offset=1)
    assert h.windows.counters["duplicate_reports"] == 4 * (2 + 2)  # offsets 0, 1, then 1, 2
    _close_all(h, start)
    (summary,) = [s for s in h.summaries() if s.window_start == start and s.usage_partition == 1]
    assert summary.tenants == {("orders", t): (8, 800) for t in tenants}


def test_totals_written_before_offsets_were_kept_restore_and_count_again(start: int) -> None:
    """A bare list of rows (the value before the offset was kept) restores; with no offset to
    compare, a record read again is added again, as before."""
    first = Harness()
    tenants = _tenants_of(0, 2)
    first.send(_reports(tenants, start, producer="p-1", records=4))
    table = FakeWindowTable()
    table.table.data = {k: v["totals"] for k, v in first.table.table.data.items()}
    second = Harness(table, registry=first.registry, delivered=first.delivered)
    asyncio.run(second.windows.on_tick({0}))
    assert second.windows.counters["windows_restored"] == 1
    second.send(_reports(tenants, start, producer="p-1", records=1))
    _close_all(second, start)
    (summary,) = [s for s in second.summaries() if s.window_start == start and s.usage_partition == 0]
    assert summary.tenants == {("orders", t): (5, 500) for t in tenants}


def test_restore_takes_only_the_partitions_own_entries(start: int) -> None:
    first = Harness()
    first.send(_reports(_tenants_of(1, 3) + _tenants_of(3, 4), start))
    second = Harness(first.table, registry=first.registry)
    asyncio.run(second.windows.on_tick({3}))
    assert second.windows.counters["windows_restored"] == 1
    _close_all(second, start, [3])
    restored = [s for s in second.summaries() if s.window_start == start and s.tenants]
    assert [(s.usage_partition, len(s.tenants)) for s in restored] == [(3, 4)]


def test_restore_reads_per_tenant_entries_written_before_records_were_batched(start: int) -> None:
    h = Harness()
    window = h.table.table.window.current((start + SIZE / 2) / 1000)
    (tenant,) = _tenants_of(0, 1)
    residual_partition = java_partition(b"orders/", PARTITIONS)
    h.table.table.data[(f"Torders/{tenant}", window)] = [5, 50]
    h.table.table.data[("Rorders/7", window)] = [2, 20]
    asyncio.run(h.windows.on_tick({0, residual_partition}))
    _close_all(h, start)
    mine = [s for s in h.summaries() if s.window_start == start]
    assert {k: v for s in mine for k, v in s.tenants.items()} == {("orders", tenant): (5, 50)}
    assert {k: v for s in mine for k, v in s.residuals.items()} == {("orders", 7): (2, 20)}


def test_undecodable_records_are_counted_and_skipped(start: int) -> None:
    h = Harness()
    for raw in (None, b"", b"\x00\x00\x00\x00", b"\x07garbage", b"\x00\x00\x00\x00\x01\xff\xff"):
        asyncio.run(h.windows.on_report(raw, 0))
    assert h.windows.counters["usage_undecodable"] == 5
    assert h.windows.counters["usage_records"] == 0
    h.send(_reports(["after"], start))
    assert h.windows.counters["reports_aggregated"] == 1


def test_stale_and_late_reports_are_counted_per_tenant_report(start: int) -> None:
    h = Harness()
    old = start - 10 * SIZE
    h.send(_reports(["a", "b", "c"], old))
    assert h.windows.counters["stale_reports"] == 3
    assert h.table.writes == []
    _close_all(h, start)
    writes = len(h.table.writes)
    h.send(_reports(["x", "y"], start))  # its window is closed on every partition by now
    assert h.windows.counters["late_reports"] == 2
    assert len(h.table.writes) == writes


def test_quiet_partitions_close_by_timer(start: int, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    tenants = _tenants_of(1, 3)
    h.send(_reports(tenants, start))
    later = (start + SIZE + h.settings.window_grace_ms + h.settings.window_idle_ms + 10) / 1000
    monkeypatch.setattr(time, "time", lambda: later)
    asyncio.run(h.windows.on_tick({1}))
    (summary,) = [s for s in h.summaries() if s.window_start == start]
    assert summary.closed_by == "timer"
    assert set(summary.tenants) == {("orders", t) for t in tenants}


def test_no_partition_is_taken_over_while_the_table_is_still_recovering(start: int) -> None:
    first = Harness()
    tenants = _tenants_of(0, 5)
    first.send(_reports(tenants, start))
    recovered = False
    table = FakeWindowTable()  # a rebalance just happened: the changelog is not read yet
    second = Harness(table, registry=first.registry, ready=lambda: recovered)
    asyncio.run(second.windows.on_tick({0}))
    assert second.windows.counters["windows_restored"] == 0
    table.table.data = dict(first.table.table.data)  # recovery done
    recovered = True
    asyncio.run(second.windows.on_tick({0}))
    assert second.windows.counters["windows_restored"] == 1
    _close_all(second, start, [0])
    (summary,) = [s for s in second.summaries() if s.window_start == start]
    assert set(summary.tenants) == {("orders", t) for t in tenants}
