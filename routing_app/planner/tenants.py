"""A window's tenants, grouped once per cycle: the input side of ``placement.Placement``.

At 100k tenants the pass over the rates is most of a cycle's cost, so it is one loop that
allocates nothing per tenant (no dict entry, tuple or set member each): tenants that hash are
appended, name and rate, to their murmur2 home's lists. Everything per tenant that a plan needs
for a few tenants only (its placement, its rate, its heaviest stream) is looked up when asked:
``Parts`` and ``Members`` are views that answer from the grouping and record only what moves.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain

from routing_app.client.partitioner import java_partition
from routing_app.planner.loads import homes
from routing_app.planner.model import TenantKey, TenantRate
from routing_app.routes.model import Route


@dataclass
class TopicTenants:
    """One topic's tenants: those that hash (no route, a usable rate) by home partition, as
    parallel lists of names and rates; and the rates of the tenants with a route."""

    n: int
    names: list[list[str]]
    # Arrays of doubles: summed and scanned several times a cycle, they read far faster than
    # lists of float objects scattered over the heap.
    rates: list[array[float]]
    routed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> TopicTenants:
        return cls(n, [[] for _ in range(n)], [array("d") for _ in range(n)])

    def total(self) -> float:
        """Every tenant's rate summed (fsum: exact, whatever the grouping)."""
        return math.fsum(chain(chain.from_iterable(self.rates), self.routed.values()))

    def heavier_than(self, level: float) -> list[str]:
        """The tenants sending more than ``level``, hashed or routed (in no particular order)."""
        out = [tenant for tenant, rate in self.routed.items() if rate > level]
        for names, rates in zip(self.names, self.rates, strict=True):
            if rates and max(rates) > level:
                out.extend(name for name, rate in zip(names, rates, strict=True) if rate > level)
        return out


def group_tenants(
    rates: Mapping[TenantKey, TenantRate],
    routes: Mapping[str, Mapping[str, Route]],
    partition_counts: Mapping[str, int],
    moduli: Mapping[str, int] | None = None,
) -> dict[str, TopicTenants]:
    """Every topic's tenants in one pass over the window's rates (see the module docstring).
    A rate that is not a positive finite number (a broken report) counts as none. ``moduli``:
    what a topic's unrouted tenants hash by where it is not its partition count (a hash base)."""
    out: dict[str, TopicTenants] = {}
    inf = math.inf
    current: str | None = None
    no_routes: Mapping[str, Route] = {}
    for (topic, tenant), reported in rates.items():
        if topic != current:
            current = topic
            group = out.get(topic)
            if group is None:
                group = out[topic] = TopicTenants.empty(max(0, partition_counts.get(topic, 0)))
            names, values, routed = group.names, group.rates, group.routed
            n = group.n if moduli is None else moduli.get(topic, group.n)
            memo = homes(n)
            topic_routes = routes.get(topic, no_routes)
        rate = reported.records_per_s
        if tenant in topic_routes:
            routed[tenant] = rate if 0 < rate < inf else 0.0
        elif 0 < rate < inf and n > 0:
            p = memo.get(tenant)
            if p is None:
                p = memo[tenant] = java_partition(tenant.encode(), n)
            names[p].append(tenant)
            values[p].append(rate)
    return out


class Members:
    """Each partition's tenants as a set, built from the grouping when first asked for (most
    partitions never are); ``move`` changes the sets it asks for."""

    def __init__(self, names: list[list[str]]) -> None:
        self._names = names
        self._sets: list[set[str] | None] = [None] * len(names)
        self._routed: dict[int, list[str]] = {}

    def place_routed(self, p: int, tenant: str) -> None:
        """While the placement is built: a tenant placed by its route (or hashed after all)."""
        self._routed.setdefault(p, []).append(tenant)

    def routed_on(self, p: int) -> list[str]:
        """The tenants placed on p by their route when the placement was built."""
        return self._routed.get(p, [])

    def __getitem__(self, p: int) -> set[str]:
        got = self._sets[p]
        if got is None:
            got = self._sets[p] = set(self._names[p])
            got.update(self._routed.get(p, ()))
        return got


class Parts(Mapping[str, tuple[int, ...]]):
    """Where each placed tenant is: what routes and moves set, over the murmur2 home of every
    other tenant with a rate (a hashed tenant gets no entry of its own)."""

    def __init__(self, n: int, names: list[list[str]], rate: RateOf, home: HomeOf) -> None:
        self._names, self._rate, self._home = names, rate, home
        self._singles = [(p,) for p in range(n)]
        # None: known to be placed nowhere (a route that hashes a tenant without a rate, a merge).
        self._set: dict[str, tuple[int, ...] | None] = {}

    def set(self, tenant: str, placed: tuple[int, ...] | None) -> None:
        self._set[tenant] = placed

    def __getitem__(self, tenant: str) -> tuple[int, ...]:
        if tenant not in self._set:
            if self._rate(tenant) > 0:
                return self._singles[self._home(tenant)]
            raise KeyError(tenant)
        placed = self._set[tenant]
        if placed is None:
            raise KeyError(tenant)
        return placed

    def __iter__(self) -> Iterator[str]:
        yield from (tenant for tenant, placed in self._set.items() if placed is not None)
        for names in self._names:
            yield from (tenant for tenant in names if tenant not in self._set)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class RateOf:
    """A tenant's rate, looked up in the window's rates when first asked (0.0: none)."""

    def __init__(self, topic: str, rates: Mapping[TenantKey, TenantRate], known: dict[str, float]) -> None:
        self._topic, self._rates, self._known = topic, rates, dict(known)

    def __call__(self, tenant: str) -> float:
        known = self._known.get(tenant)
        if known is None:
            reported = self._rates.get((self._topic, tenant))
            rate = reported.records_per_s if reported is not None else 0.0
            known = self._known[tenant] = rate if 0 < rate < math.inf else 0.0
        return known

    def streams(self, tenant: str) -> tuple[float, int] | None:
        """(heaviest stream's rate, streams) of a tenant known to send several ordered streams.
        Only what is known to split counts: a heaviest stream of none, or a negative or NaN one,
        is a broken report (unknown: one stream); no stream is below an even split."""
        reported = self._rates.get((self._topic, tenant))
        if reported is None:
            return None
        rate, top = self(tenant), reported.top_stream_per_s
        if top is None or not 0 < top < rate:
            return None
        even = rate / reported.streams if reported.streams > 0 else 0.0
        return (max(top, even), reported.streams)


class HomeOf:
    """A tenant's murmur2 home on an n-partition topic (memoised across cycles)."""

    def __init__(self, n: int) -> None:
        self._n, self._memo = n, homes(n)

    def __call__(self, tenant: str) -> int:
        home = self._memo.get(tenant)
        if home is None:
            home = self._memo[tenant] = java_partition(tenant.encode(), self._n)
        return home
