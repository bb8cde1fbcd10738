"""What one usage partition saw in one window: the planner's input. Plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WINDOW_SUMMARY_SCHEMA = "window_summary"
# A summary is one Kafka record; keep it well under the default 1 MB message limit.
MAX_TENANTS_PER_SUMMARY = 20_000

_TenantKey = tuple[str, str]
_ResidualKey = tuple[str, int]


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

    def to_record(self) -> dict[str, Any]:
        return {
            "usage_partition": self.usage_partition, "usage_partitions": self.usage_partitions,
            "window_start": self.window_start, "window_end": self.window_end,
            "closed_by": self.closed_by, "worker_id": self.worker_id,
            "tenants": [{"topic": t, "tenant": n, "records": r, "bytes": b}
                        for (t, n), (r, b) in sorted(self.tenants.items())],
            "residuals": [{"topic": t, "partition": p, "records": r, "bytes": b}
                          for (t, p), (r, b) in sorted(self.residuals.items())],
            "producers": list(self.producers),
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> WindowSummary:
        return cls(
            usage_partition=int(r["usage_partition"]), usage_partitions=int(r["usage_partitions"]),
            window_start=int(r["window_start"]), window_end=int(r["window_end"]),
            closed_by=r["closed_by"], worker_id=r.get("worker_id", ""),
            tenants={(t["topic"], t["tenant"]): (int(t["records"]), int(t["bytes"]))
                     for t in r.get("tenants") or ()},
            residuals={(x["topic"], int(x["partition"])): (int(x["records"]), int(x["bytes"]))
                       for x in r.get("residuals") or ()},
            producers=tuple(r.get("producers") or ()),
        )


class WindowAccumulator:
    """Sums usage reports per (usage partition, window) until the window closes."""

    def __init__(self) -> None:
        self._tenants: dict[tuple[int, int], dict[_TenantKey, list[int]]] = {}
        self._residuals: dict[tuple[int, int], dict[_ResidualKey, list[int]]] = {}
        self._producers: dict[tuple[int, int], set[str]] = {}

    def saw_producer(self, usage_partition: int, window_start: int, producer_id: str) -> None:
        if producer_id:
            self._producers.setdefault((usage_partition, window_start), set()).add(producer_id)

    def add(self, usage_partition: int, window_start: int, topic: str, tenant: str,
            partition: int, records: int, nbytes: int) -> None:
        slot = (usage_partition, window_start)
        if tenant:
            counts = self._tenants.setdefault(slot, {}).setdefault((topic, tenant), [0, 0])
        else:
            counts = self._residuals.setdefault(slot, {}).setdefault((topic, partition), [0, 0])
        counts[0] += records
        counts[1] += nbytes

    def set_tenant(self, usage_partition: int, window_start: int, topic: str, tenant: str,
                   records: int, nbytes: int) -> None:
        """Restores a tenant's total for a window (from the windowed table's changelog)."""
        self._tenants.setdefault((usage_partition, window_start), {})[(topic, tenant)] = [
            records, nbytes]

    def forget(self, usage_partition: int) -> None:
        for slots in (self._tenants, self._residuals, self._producers):
            for slot in [s for s in slots if s[0] == usage_partition]:
                del slots[slot]

    def close(self, usage_partition: int, window_start: int, window_size_ms: int,
              usage_partitions: int, closed_by: str, worker_id: str) -> WindowSummary:
        slot = (usage_partition, window_start)
        tenants = self._tenants.pop(slot, {})
        residuals = self._residuals.pop(slot, {})
        producers = tuple(sorted(self._producers.pop(slot, ())))
        if len(tenants) > MAX_TENANTS_PER_SUMMARY:
            ranked = sorted(tenants.items(), key=lambda kv: (-kv[1][0], kv[0]))
            tenants = dict(ranked[:MAX_TENANTS_PER_SUMMARY])
            for (topic, _), (records, nbytes) in ranked[MAX_TENANTS_PER_SUMMARY:]:
                counts = residuals.setdefault((topic, -1), [0, 0])
                counts[0] += records
                counts[1] += nbytes
        return WindowSummary(
            usage_partition, usage_partitions, window_start, window_start + window_size_ms,
            closed_by, {k: (v[0], v[1]) for k, v in tenants.items()},
            {k: (v[0], v[1]) for k, v in residuals.items()}, worker_id, producers)
