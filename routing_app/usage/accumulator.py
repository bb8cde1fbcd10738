"""Counts records and bytes per (topic, tenant, partition) between reports; cheap per record.

Reports stay bounded however many tenants a producer serves: ``drain(top_k=K)`` reports the K
busiest (tenant, partition) pairs of the interval exactly and folds every other tenant into one
residual report per partition (tenant ""). Counting is exact per interval (a dict); only what is
*sent* is bounded, which is what keeps the usage topic small.

The producer adds what it counted itself, by the record key as it arrived (``add_counts``,
UTF-8 bytes): names are decoded once per distinct key when the interval is drained, not once
per record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from operator import itemgetter

from routing_app.usage.report import UsageReport

_Key = tuple[str, str, int]  # (topic, tenant, partition)
_RawKey = tuple[str, str | bytes, int]  # the tenant as a name or as UTF-8 bytes


class UsageAccumulator:
    def __init__(self, producer_id: str) -> None:
        self.producer_id = producer_id
        self._lock = threading.Lock()
        self._counts: dict[_RawKey, list[int]] = {}
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

    def add_counts(self, counts: Iterable[tuple[str, str | bytes, int, int, int]]) -> None:
        """Adds (topic, tenant, partition, records, bytes) entries under one lock; a tenant may
        be given as UTF-8 bytes (undecodable bytes are kept as surrogates when drained)."""
        with self._lock:
            for topic, tenant, partition, records, nbytes in counts:
                key = (topic, tenant, partition)
                existing = self._counts.get(key)
                if existing is None:
                    self._counts[key] = [records, nbytes]
                else:
                    existing[0] += records
                    existing[1] += nbytes

    def drain(self, now_ms: int | None = None, top_k: int | None = None) -> list[UsageReport]:
        """The reports for the interval since the last drain; starts a new interval."""
        end = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            raw, self._counts = self._counts, {}
            start, self._since_ms = self._since_ms, end
        counts = _by_name(raw)
        named: list[tuple[_Key, list[int]]] = []
        unnamed: list[tuple[_Key, list[int]]] = []
        for item in counts.items():
            (named if item[0][1] else unnamed).append(item)
        if top_k is not None and len(named) > top_k:
            named, folded = _busiest(named, top_k)
            unnamed.extend(folded)
        residual: dict[tuple[str, int], list[int]] = {}
        for (topic, _, partition), (records, nbytes) in unnamed:
            into = residual.get((topic, partition))
            if into is None:
                residual[(topic, partition)] = [records, nbytes]
            else:
                into[0] += records
                into[1] += nbytes
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


def _by_name(raw: dict[_RawKey, list[int]]) -> dict[_Key, list[int]]:
    """Decodes byte tenants; one tenant counted both as a name and as bytes becomes one entry."""
    counts: dict[_Key, list[int]] = {
        (topic, tenant.decode("utf-8", "surrogateescape") if isinstance(tenant, bytes) else tenant,
         partition): value
        for (topic, tenant, partition), value in raw.items()
    }
    if len(counts) == len(raw):  # the decoding is one-to-one: nothing to merge
        return counts
    counts = {}
    for (topic, tenant, partition), value in raw.items():
        name = tenant.decode("utf-8", "surrogateescape") if isinstance(tenant, bytes) else tenant
        key = (topic, name, partition)
        existing = counts.get(key)
        if existing is None:
            counts[key] = [value[0], value[1]]
        else:
            existing[0] += value[0]
            existing[1] += value[1]
    return counts


def _busiest(named: list[tuple[_Key, list[int]]], k: int
             ) -> tuple[list[tuple[_Key, list[int]]], list[tuple[_Key, list[int]]]]:
    """(kept, folded): the k largest by (records, key), as heapq.nlargest would pick them.

    Sorting the plain record counts in C finds the k-th largest; only entries tied with it
    need their keys compared. nlargest with a key function costs a Python call per entry.
    """
    if k <= 0:
        return [], named
    threshold = sorted([value[0] for _, value in named], reverse=True)[k - 1]
    above, tied, below = [], [], []
    for item in named:
        records = item[1][0]
        if records > threshold:
            above.append(item)
        elif records == threshold:
            tied.append(item)
        else:
            below.append(item)
    tied.sort(key=itemgetter(0), reverse=True)
    take = k - len(above)
    kept = above + tied[:take]
    kept.sort(key=lambda item: (item[1][0], item[0]), reverse=True)
    return kept, below + tied[take:]
