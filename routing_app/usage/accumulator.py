"""Counts records and bytes per (topic, tenant) between two reports; thread-safe and cheap per record."""

from __future__ import annotations

import threading
import time

from routing_app.usage.report import UsageReport


class UsageAccumulator:
    def __init__(self, producer_id: str) -> None:
        self.producer_id = producer_id
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._since_ms = int(time.time() * 1000)

    def add(self, topic: str, tenant: str, nbytes: int) -> None:
        with self._lock:
            counts = self._counts.get((topic, tenant))
            if counts is None:
                self._counts[(topic, tenant)] = [1, nbytes]
            else:
                counts[0] += 1
                counts[1] += nbytes

    def drain(self, now_ms: int | None = None) -> list[UsageReport]:
        """The reports for the interval since the last drain; starts a new interval."""
        end = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            counts, self._counts = self._counts, {}
            start, self._since_ms = self._since_ms, end
        return [
            UsageReport(self.producer_id, topic, tenant, records, nbytes, start, end)
            for (topic, tenant), (records, nbytes) in counts.items()
        ]

    def restore(self, reports: list[UsageReport]) -> None:
        """Puts back reports that could not be sent, so the next interval carries them."""
        with self._lock:
            for r in reports:
                counts = self._counts.setdefault((r.topic, r.tenant), [0, 0])
                counts[0] += r.records
                counts[1] += r.bytes
