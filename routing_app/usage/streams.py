"""How splittable a tenant is: its records per ordered stream (secondary key) in one interval.

Order is promised per (tenant, secondary key), and a tenant's records without a secondary key
(``key=tenant``) are one stream of their own. A strict tenant's streams never span partitions,
so shards spread it only as far as its heaviest stream allows: the planner needs that stream's
share, and the number of streams for the reasons it writes.

Counting is bounded per tenant and interval: past ``capacity`` distinct keys the counter works
as a Misra-Gries summary (every tracked count is lowered by the same amount to make room), so
the heaviest count it reports plus ``lowered`` is an upper bound of the true heaviest stream,
off by at most records / (capacity + 1). Apache DataSketches (frequent_items for the heaviest
stream, HLL for the count) gives the same kind of bound: measured here at about 0.32 us a
record for both updates (frequent_strings takes str, so keys are decoded first) against about
0.2 us for ``StreamCounts.add``, and each tenant's sketches take fixed memory every interval
(an HLL of lg_k 12 is 4 KB: 40 MB a second for 10,000 tenants), where this dict holds only the
keys seen, most tenants a handful.
"""

from __future__ import annotations

from collections.abc import Hashable

STREAM_CAPACITY = 512


class StreamCounts:
    __slots__ = ("capacity", "counts", "lowered", "saturated")

    def __init__(self, capacity: int = STREAM_CAPACITY) -> None:
        self.capacity = capacity
        self.counts: dict[Hashable, int] = {}
        self.lowered = 0  # what every tracked count was lowered by, in all (Misra-Gries)
        self.saturated = False  # more distinct keys than the capacity were seen

    def add(self, key: Hashable, records: int = 1) -> None:
        counts = self.counts
        count = counts.get(key)
        if count is not None:
            counts[key] = count + records
        elif len(counts) < self.capacity:
            counts[key] = records
        else:
            self._make_room(key, records)

    def _make_room(self, key: Hashable, records: int) -> None:
        self.saturated = True
        counts = self.counts
        lower = min(records, min(counts.values()))
        self.lowered += lower
        for k in [k for k, v in counts.items() if v <= lower]:
            del counts[k]
        for k in counts:
            counts[k] -= lower
        if records > lower:
            counts[key] = records - lower

    def heaviest(self) -> int:
        """An upper bound of the records of the heaviest stream (exact when not saturated)."""
        return max(self.counts.values(), default=0) + self.lowered

    def streams(self) -> int:
        """Distinct streams: exact up to the capacity, the capacity beyond it."""
        return self.capacity if self.saturated else len(self.counts)
