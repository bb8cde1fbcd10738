"""What one usage partition saw in one window: the planner's input. Plain data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing_app.usage.batch import bounded_streams

WINDOW_SUMMARY_SCHEMA = "window_summary"
# A summary is one Kafka record; keep it well under the default 1 MB message limit.
MAX_TENANTS_PER_SUMMARY = 20_000
# Avro's long. Reports are bounded (usage.batch.UsageLimits), so totals never come near it; a
# sum that did would make the summary unencodable and lose the window.
MAX_COUNT = (1 << 63) - 1

_TenantKey = tuple[str, str]
_ResidualKey = tuple[str, int]
_UsageKey = tuple[str, str, int]  # (topic, tenant, partition); tenant "" for a residual
# (topic, tenant, partition, records, bytes, top stream, streams): one entry of a usage record,
# and one row of a producer's window totals as the windowed table holds them (a JSON array).
# The top stream is the records of the tenant's heaviest ordered stream, an upper bound.
UsageRow = tuple[str, str, int, int, int, int, int]
ProducerTotals = list[UsageRow]


def stored_totals(totals: ProducerTotals, offset: int) -> dict[str, Any]:
    """The windowed table's value for a producer's window totals: the rows, and the offset of
    the usage record that made them, so that the record read again is known as one."""
    return {"offset": offset, "totals": totals}


def parse_stored_totals(value: Any) -> tuple[int, list[UsageRow]]:
    """(offset, rows) of a ``stored_totals`` value; a bare list of rows (written before the
    offset was kept) has offset -1. Raises TypeError or ValueError on anything else."""
    if isinstance(value, Mapping):
        offset, rows = int(value["offset"]), value["totals"]
    else:
        offset, rows = -1, value
    if not isinstance(rows, list):
        raise TypeError(f"window totals are not a list: {type(rows).__name__}")
    return offset, [_row(row) for row in rows]


def _row(row: Any) -> UsageRow:
    """A stored row; one written before rows had stream figures is one stream."""
    topic, tenant, partition, records, nbytes, *streams = row
    records = int(records)
    top, count = (int(streams[0]), int(streams[1])) if len(streams) == 2 else (records, 1)
    if len(streams) not in (0, 2):
        raise ValueError(f"a window totals row has {len(row)} fields, not 5 or 7")
    return str(topic), str(tenant), int(partition), records, int(nbytes), top, count


@dataclass(frozen=True)
class WindowSummary:
    usage_partition: int
    usage_partitions: int
    window_start: int
    window_end: int
    closed_by: str
    tenants: Mapping[_TenantKey, tuple[int, int]]  # (topic, tenant) -> (records, bytes)
    residuals: Mapping[_ResidualKey, tuple[int, int]]  # (topic, partition) -> (records, bytes)
    worker_id: str = ""
    producers: tuple[str, ...] = ()
    # (topic, tenant) -> (records of its heaviest ordered stream, streams), for the tenants
    # known to send more than one stream; any other tenant is one stream.
    streams: Mapping[_TenantKey, tuple[int, int]] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "usage_partition": self.usage_partition,
            "usage_partitions": self.usage_partitions,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "closed_by": self.closed_by,
            "worker_id": self.worker_id,
            "tenants": [
                {
                    "topic": t,
                    "tenant": n,
                    "records": r,
                    "bytes": b,
                    "top_stream": self.streams.get((t, n), (-1, 0))[0],
                    "streams": self.streams.get((t, n), (-1, 0))[1],
                }
                for (t, n), (r, b) in sorted(self.tenants.items())
            ],
            "residuals": [
                {"topic": t, "partition": p, "records": r, "bytes": b}
                for (t, p), (r, b) in sorted(self.residuals.items())
            ],
            "producers": list(self.producers),
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> WindowSummary:
        streams = {}
        for t in r.get("tenants") or ():
            records = int(t["records"])
            top, count = bounded_streams(records, int(t.get("top_stream", -1)), int(t.get("streams", 0)))
            if top < records:
                streams[(t["topic"], t["tenant"])] = (top, count)
        return cls(
            usage_partition=int(r["usage_partition"]),
            usage_partitions=int(r["usage_partitions"]),
            window_start=int(r["window_start"]),
            window_end=int(r["window_end"]),
            closed_by=r["closed_by"],
            worker_id=r.get("worker_id", ""),
            tenants={
                (t["topic"], t["tenant"]): (int(t["records"]), int(t["bytes"]))
                for t in r.get("tenants") or ()
            },
            residuals={
                (x["topic"], int(x["partition"])): (int(x["records"]), int(x["bytes"]))
                for x in r.get("residuals") or ()
            },
            producers=tuple(r.get("producers") or ()),
            streams=streams,
        )


class WindowAccumulator:
    """Sums usage reports per (usage partition, window) until the window closes."""

    def __init__(self) -> None:
        self._tenants: dict[tuple[int, int], dict[_TenantKey, list[int]]] = {}
        self._residuals: dict[tuple[int, int], dict[_ResidualKey, list[int]]] = {}
        self._producers: dict[tuple[int, int], set[str]] = {}
        # What each producer reported in the window so far, per (topic, tenant, partition): the
        # worker writes it to its windowed table after every usage record (one write per record,
        # not per tenant), and a new owner reads it back from the changelog.
        self._by_producer: dict[tuple[int, int], dict[str, dict[_UsageKey, UsageRow]]] = {}
        # The offset of the last usage record of each producer added to a window: a usage
        # partition's records are read again after a rebalance (faust replays from the last
        # commit), and a producer's records to one partition come in offset order.
        self._applied: dict[tuple[int, int], dict[str, int]] = {}

    def applied_offset(self, usage_partition: int, window_start: int, producer_id: str) -> int:
        """The offset of the producer's last usage record in the window (-1: none or unknown):
        a record at or below it is already in the totals."""
        return self._applied.get((usage_partition, window_start), {}).get(producer_id, -1)

    def saw_producer(self, usage_partition: int, window_start: int, producer_id: str) -> None:
        if producer_id:
            self._producers.setdefault((usage_partition, window_start), set()).add(producer_id)

    def add(
        self,
        usage_partition: int,
        window_start: int,
        topic: str,
        tenant: str,
        partition: int,
        records: int,
        nbytes: int,
    ) -> None:
        slot = (usage_partition, window_start)
        if tenant:
            counts = self._tenants.setdefault(slot, {}).setdefault((topic, tenant), [0, 0])
        else:
            counts = self._residuals.setdefault(slot, {}).setdefault((topic, partition), [0, 0])
        counts[0] += records
        counts[1] += nbytes

    def add_usage(
        self,
        usage_partition: int,
        window_start: int,
        producer_id: str,
        usage: Iterable[UsageRow],
        offset: int = -1,
    ) -> ProducerTotals:
        """Adds the (topic, tenant, partition, records, bytes) entries of one usage record from
        one producer; returns that producer's totals in the window so far, one such row per
        (topic, tenant, partition): the value the worker writes to its windowed table.

        The hot path of the worker: one dict update per entry. Totals per tenant are summed
        over producers when the window closes.
        """
        slot = (usage_partition, window_start)
        if offset >= 0:
            self._applied.setdefault(slot, {})[producer_id] = offset
        mine = self._by_producer.setdefault(slot, {}).get(producer_id)
        if mine is None:
            mine = self._by_producer[slot][producer_id] = {}
            if producer_id:
                self._producers.setdefault(slot, set()).add(producer_id)
        get = mine.get
        for row in usage:
            key = row[:3]
            old = get(key)
            # Heaviest streams of two intervals add up to a bound for both; the streams seen
            # in the window are at least the most seen in one interval.
            mine[key] = (
                row
                if old is None
                else (
                    row[0],
                    row[1],
                    row[2],
                    old[3] + row[3],
                    old[4] + row[4],
                    old[5] + row[5],
                    max(old[6], row[6]),
                )
            )
        return list(mine.values())

    def restore_producer(
        self, usage_partition: int, window_start: int, producer_id: str, stored: Any
    ) -> bool:
        """Puts back a producer's window totals read from the table's changelog (a
        ``stored_totals`` value). A producer this accumulator already holds for the window is
        left alone: what is in memory is newer. Returns whether it was restored."""
        slot = (usage_partition, window_start)
        if producer_id in self._by_producer.get(slot, ()):
            return False
        offset, rows = parse_stored_totals(stored)
        self.add_usage(usage_partition, window_start, producer_id, rows, offset)
        return True

    def set_tenant(
        self, usage_partition: int, window_start: int, topic: str, tenant: str, records: int, nbytes: int
    ) -> None:
        """Restores a tenant's total for a window (from the windowed table's changelog)."""
        self._tenants.setdefault((usage_partition, window_start), {})[(topic, tenant)] = [records, nbytes]

    def forget(self, usage_partition: int) -> None:
        for slots in (self._tenants, self._residuals, self._producers, self._by_producer, self._applied):
            for slot in [s for s in slots if s[0] == usage_partition]:
                del slots[slot]

    def close(
        self,
        usage_partition: int,
        window_start: int,
        window_size_ms: int,
        usage_partitions: int,
        closed_by: str,
        worker_id: str,
    ) -> WindowSummary:
        slot = (usage_partition, window_start)
        tenants = self._tenants.pop(slot, {})
        residuals = self._residuals.pop(slot, {})
        producers = tuple(sorted(self._producers.pop(slot, ())))
        self._applied.pop(slot, None)
        # [heaviest stream, streams] per tenant: tenants added without rows (version 1 entries)
        # are one stream each.
        streams: dict[_TenantKey, list[int]] = {key: [v[0], 1] for key, v in tenants.items()}
        for rows in self._by_producer.pop(slot, {}).values():
            # One producer's heaviest stream of a tenant is on one of its partitions (a key
            # goes to one shard); producers' heaviest streams add up to a bound for them all.
            mine: dict[_TenantKey, list[int]] = {}
            for topic, tenant, partition, records, nbytes, top, count in rows.values():
                if tenant:
                    counts = tenants.get((topic, tenant))
                    if counts is None:
                        counts = tenants[(topic, tenant)] = [0, 0]
                    seen = mine.get((topic, tenant))
                    if seen is None:
                        mine[(topic, tenant)] = [top, count]
                    else:
                        seen[0] = max(seen[0], top)
                        seen[1] += count
                else:
                    counts = residuals.get((topic, partition))
                    if counts is None:
                        counts = residuals[(topic, partition)] = [0, 0]
                counts[0] += records
                counts[1] += nbytes
            for key, (top, count) in mine.items():
                total = streams.get(key)
                if total is None:
                    streams[key] = [top, count]
                else:
                    total[0] += top
                    total[1] = max(total[1], count)
        if len(tenants) > MAX_TENANTS_PER_SUMMARY:
            ranked = sorted(tenants.items(), key=lambda kv: (-kv[1][0], kv[0]))
            tenants = dict(ranked[:MAX_TENANTS_PER_SUMMARY])
            for (topic, _), (records, nbytes) in ranked[MAX_TENANTS_PER_SUMMARY:]:
                counts = residuals.setdefault((topic, -1), [0, 0])
                counts[0] += records
                counts[1] += nbytes
        return WindowSummary(
            usage_partition,
            usage_partitions,
            window_start,
            window_start + window_size_ms,
            closed_by,
            {k: (min(v[0], MAX_COUNT), min(v[1], MAX_COUNT)) for k, v in tenants.items()},
            {k: (min(v[0], MAX_COUNT), min(v[1], MAX_COUNT)) for k, v in residuals.items()},
            worker_id,
            producers,
            {
                k: (min(v[0], tenants[k][0], MAX_COUNT), v[1])
                for k, v in streams.items()
                if k in tenants and v[0] < tenants[k][0]
            },
        )
