"""Counts records and bytes per (topic, tenant, partition) between reports; cheap per record.

Reports stay bounded however many tenants a producer serves: ``drain(top_k=K)`` reports the K
busiest (tenant, partition) pairs of the interval exactly and folds every other tenant into one
residual report per partition (tenant ""). Counting is exact per interval (a dict, ~0.3 us per
record); only what is *sent* is bounded, which is what keeps the usage topic small.
"""

from __future__ import annotations

import heapq
import threading
import time

from routing_app.usage.report import UsageReport

_Key = tuple[str, str, int]  # (topic, tenant, partition)


class UsageAccumulator:
    def __init__(self, producer_id: str) -> None:
        self.producer_id = producer_id
        self._lock = threading.Lock()
        self._counts: dict[_Key, list[int]] = {}
        self._since_ms = int(time.time() * 1000)

    def add(self, topic: str, tenant: str, nbytes: int, partition: int = -1) -> None:
        key = (topic, tenant, partition)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                self._counts[key] = [1, nbytes]
            else:
                counts[0] += 1
                counts[1] += nbytes

    def drain(self, now_ms: int | None = None, top_k: int | None = None) -> list[UsageReport]:
        """The reports for the interval since the last drain; starts a new interval."""
        end = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            counts, self._counts = self._counts, {}
            start, self._since_ms = self._since_ms, end
        named = [(key, value) for key, value in counts.items() if key[1]]
        residual: dict[tuple[str, int], list[int]] = {}
        for (topic, tenant, partition), (records, nbytes) in counts.items():
            if not tenant:
                _fold(residual, topic, partition, records, nbytes)
        if top_k is not None and len(named) > top_k:
            kept = heapq.nlargest(top_k, named, key=lambda item: (item[1][0], item[0]))
            kept_keys = {key for key, _ in kept}
            for (topic, tenant, partition), (records, nbytes) in named:
                if (topic, tenant, partition) not in kept_keys:
                    _fold(residual, topic, partition, records, nbytes)
            named = kept
        reports = [
            UsageReport(self.producer_id, topic, tenant, records, nbytes, start, end, partition)
            for (topic, tenant, partition), (records, nbytes) in named
        ]
        reports.extend(
            UsageReport(self.producer_id, topic, "", records, nbytes, start, end, partition)
            for (topic, partition), (records, nbytes) in residual.items()
        )
        return reports

    def restore(self, reports: list[UsageReport]) -> None:
        """Puts back reports that could not be sent, so the next interval carries them."""
        with self._lock:
            for r in reports:
                counts = self._counts.setdefault((r.topic, r.tenant, r.partition), [0, 0])
                counts[0] += r.records
                counts[1] += r.bytes


def _fold(into: dict[tuple[str, int], list[int]], topic: str, partition: int, records: int,
          nbytes: int) -> None:
    counts = into.setdefault((topic, partition), [0, 0])
    counts[0] += records
    counts[1] += nbytes
