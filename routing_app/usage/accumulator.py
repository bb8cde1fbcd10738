"""Counts records and bytes per (topic, tenant, partition) between reports; cheap per record.

Reports stay bounded however many tenants a producer serves: ``take(top_k=K)`` reports the K
busiest (tenant, partition) pairs of the interval exactly and folds every other tenant into one
residual report per partition (tenant ""). Counting is exact per interval (a dict); only what is
*sent* is bounded, which is what keeps the usage topic small.

The producer adds what it counted itself in bulk (``add_counts``), each key decoded to a name
once (when its memo cell was made), never per record; a tenant given as UTF-8 bytes is decoded
when the interval is taken. Those records have no secondary key (the key is the tenant): each
such tenant is one ordered stream. Records sent with ``tenant=`` and a key are counted per key
as well (``add``, bounded: see ``routing_app.usage.streams``), so every report says how
splittable its tenant was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterable
from operator import itemgetter
from typing import Any

from routing_app.usage.report import UsageReport
from routing_app.usage.streams import StreamCounts

_Key = tuple[str, str, int]  # (topic, tenant, partition)
_RawKey = tuple[str, str | bytes, int]  # the tenant as a name or as UTF-8 bytes
# [records, bytes, records without a secondary key, StreamCounts of the keyed ones or None,
#  heaviest stream and streams carried over from reports put back (restore)]
_Counts = list[Any]
_RECORDS, _BYTES, _KEYLESS, _KEYED, _CARRIED_TOP, _CARRIED_STREAMS = range(6)
_TENANT = itemgetter(1)


class UsageAccumulator:
    def __init__(self, producer_id: str) -> None:
        self.producer_id = producer_id
        self._lock = threading.Lock()
        self._counts: dict[_RawKey, _Counts] = {}
        self._since_ms = int(time.time() * 1000)

    def add(self, topic: str, tenant: str, nbytes: int, partition: int = -1, stream: Hashable = None) -> None:
        """One record of ``tenant``; ``stream`` is its secondary key (None: it has none)."""
        key = (topic, tenant, partition)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0, 0, 0, None, 0, 0]
            counts[_RECORDS] += 1
            counts[_BYTES] += nbytes
            if stream is None:
                counts[_KEYLESS] += 1
            else:
                keyed = counts[_KEYED]
                if keyed is None:
                    keyed = counts[_KEYED] = StreamCounts()
                keyed.add(stream)

    def add_counts(self, counts: Iterable[tuple[str, str | bytes, int, int, int]]) -> None:
        """Adds (topic, tenant, partition, records, bytes) entries of records without a
        secondary key under one lock; a tenant may be given as UTF-8 bytes (undecodable bytes
        are kept as surrogates when taken)."""
        with self._lock:
            own = self._counts
            for topic, tenant, partition, records, nbytes in counts:
                key = (topic, tenant, partition)
                existing = own.get(key)
                if existing is None:
                    own[key] = [records, nbytes, records, None, 0, 0]
                else:
                    existing[_RECORDS] += records
                    existing[_BYTES] += nbytes
                    existing[_KEYLESS] += records

    def take(self, now_ms: int | None = None, top_k: int | None = None) -> list[UsageReport]:
        """The reports for the interval since the last take; starts a new interval."""
        end = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            raw, self._counts = self._counts, {}
            start, self._since_ms = self._since_ms, end
        items = list(_by_name(raw).items())
        # Comprehensions, not a loop of appends: this runs over every tenant each interval.
        named = [item for item in items if item[0][1]]
        unnamed = [item for item in items if not item[0][1]] if len(named) < len(items) else []
        if top_k is not None and len(named) > top_k:
            named, folded = _busiest(named, top_k)
            unnamed.extend(folded)
        residual: dict[tuple[str, int], list[int]] = {}
        for (topic, _, partition), counts in unnamed:
            into = residual.get((topic, partition))
            if into is None:
                residual[(topic, partition)] = [counts[_RECORDS], counts[_BYTES]]
            else:
                into[0] += counts[_RECORDS]
                into[1] += counts[_BYTES]
        reports = [
            UsageReport(
                self.producer_id,
                topic,
                tenant,
                counts[_RECORDS],
                counts[_BYTES],
                start,
                end,
                partition,
                *_streams_of(counts),
            )
            for (topic, tenant, partition), counts in named
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
                counts = self._counts.setdefault((r.topic, r.tenant, r.partition), [0, 0, 0, None, 0, 0])
                counts[_RECORDS] += r.records
                counts[_BYTES] += r.bytes
                # An upper bound stays one when summed: the put-back heaviest stream may be
                # the same stream as this interval's heaviest.
                counts[_CARRIED_TOP] += r.top_stream if r.top_stream >= 0 else r.records
                counts[_CARRIED_STREAMS] = max(counts[_CARRIED_STREAMS], r.streams, 1)


def _streams_of(counts: _Counts) -> tuple[int, int]:
    """(heaviest stream's records, streams) of one entry: the keyless records are one stream."""
    keyless, keyed = counts[_KEYLESS], counts[_KEYED]
    top, streams = keyless, 1 if keyless else 0
    if keyed is not None:
        top = max(top, keyed.heaviest())
        streams += keyed.streams()
    return min(counts[_RECORDS], top + counts[_CARRIED_TOP]), max(streams, counts[_CARRIED_STREAMS])


def _merge(into: _Counts, other: _Counts) -> None:
    """Adds a second entry of the same tenant (counted once by name, once as bytes)."""
    for i in (_RECORDS, _BYTES, _KEYLESS, _CARRIED_TOP):
        into[i] += other[i]
    into[_CARRIED_STREAMS] = max(into[_CARRIED_STREAMS], other[_CARRIED_STREAMS])
    if other[_KEYED] is not None:
        if into[_KEYED] is None:
            into[_KEYED] = other[_KEYED]
        else:
            for key, records in other[_KEYED].counts.items():
                into[_KEYED].add(key, records)
            into[_KEYED].lowered += other[_KEYED].lowered


def _by_name(raw: dict[_RawKey, _Counts]) -> dict[_Key, _Counts]:
    """Decodes byte tenants; one tenant counted both as a name and as bytes becomes one entry."""
    if bytes not in set(map(type, map(_TENANT, raw))):  # in C; the producer gives names
        return raw  # type: ignore[return-value]  # every tenant is a str: it is a dict[_Key, _]
    counts: dict[_Key, _Counts] = {
        (
            topic,
            tenant.decode("utf-8", "surrogateescape") if isinstance(tenant, bytes) else tenant,
            partition,
        ): value
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
            counts[key] = list(value)
        else:
            _merge(existing, value)
    return counts


def _busiest(
    named: list[tuple[_Key, _Counts]], k: int
) -> tuple[list[tuple[_Key, _Counts]], list[tuple[_Key, _Counts]]]:
    """(kept, folded): the k largest by (records, key), as heapq.nlargest would pick them.

    Sorting the plain record counts in C finds the k-th largest; only entries tied with it
    need their keys compared. nlargest with a key function costs a Python call per entry.
    """
    if k <= 0:
        return [], named
    threshold = sorted([value[0] for _, value in named], reverse=True)[k - 1]
    above = [item for item in named if item[1][0] > threshold]
    tied = [item for item in named if item[1][0] == threshold]
    below = [item for item in named if item[1][0] < threshold]
    tied.sort(key=itemgetter(0), reverse=True)
    take = k - len(above)
    kept = above + tied[:take]
    kept.sort(key=lambda item: (item[1][0], item[0]), reverse=True)
    return kept, below + tied[take:]
