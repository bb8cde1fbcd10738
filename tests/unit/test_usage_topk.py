"""UsageAccumulator.take(top_k=K): bounded reports, exact totals, the busiest tenants named."""

from __future__ import annotations

import random
import zlib
from collections import Counter, defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.usage import UsageAccumulator, UsageReport

_Add = tuple[str, str, int, int]  # (topic, tenant, partition, nbytes)


def _named(reports: list[UsageReport]) -> dict[tuple[str, str, int], tuple[int, int]]:
    return {(r.topic, r.tenant, r.partition): (r.records, r.bytes) for r in reports if r.tenant}


def _residual(reports: list[UsageReport]) -> dict[tuple[str, int], tuple[int, int]]:
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for r in reports:
        if not r.tenant:
            assert (r.topic, r.partition) not in out, "two residual reports for one partition"
            out[(r.topic, r.partition)] = (r.records, r.bytes)
    return out


def _totals_by_partition(reports: list[UsageReport]) -> dict[tuple[str, int], list[int]]:
    totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in reports:
        totals[(r.topic, r.partition)][0] += r.records
        totals[(r.topic, r.partition)][1] += r.bytes
    return dict(totals)


def test_top_k_reports_the_busiest_and_folds_the_rest_per_partition() -> None:
    acc = UsageAccumulator("p")
    for tenant, n, part in [("big", 50, 0), ("mid", 20, 0), ("small", 3, 0), ("tiny", 1, 1), ("mid2", 10, 1)]:
        for _ in range(n):
            acc.add("orders", tenant, 100, part)
    acc.add("orders", "", 7, 1)  # unkeyed: always residual
    reports = acc.take(now_ms=5_000, top_k=2)
    assert _named(reports) == {("orders", "big", 0): (50, 5_000), ("orders", "mid", 0): (20, 2_000)}
    assert _residual(reports) == {("orders", 0): (3, 300), ("orders", 1): (12, 1_107)}
    assert {(r.producer_id, r.interval_end) for r in reports} == {("p", 5_000)}
    assert len(reports) == 4


def test_without_top_k_or_under_it_every_tenant_is_named() -> None:
    for top_k in (None, 3, 100):
        acc = UsageAccumulator("p")
        acc.add("t", "a", 1, 0)
        acc.add("t", "b", 2, 0)
        acc.add("t", "a", 3, 1)
        reports = acc.take(now_ms=1, top_k=top_k)
        assert _named(reports) == {("t", "a", 0): (1, 1), ("t", "b", 0): (1, 2), ("t", "a", 1): (1, 3)}
        assert _residual(reports) == {}


def test_top_k_zero_folds_everything() -> None:
    acc = UsageAccumulator("p")
    acc.add("t", "a", 1, 0)
    acc.add("t", "b", 2, 0)
    acc.add("u", "a", 4, 0)
    reports = acc.take(now_ms=1, top_k=0)
    assert _named(reports) == {}
    assert _residual(reports) == {("t", 0): (2, 3), ("u", 0): (1, 4)}


def test_unkeyed_records_go_to_the_residual_even_when_they_would_rank_first() -> None:
    acc = UsageAccumulator("p")
    for _ in range(100):
        acc.add("t", "", 1, 2)
    acc.add("t", "a", 1, 2)
    reports = acc.take(now_ms=1, top_k=5)
    assert _named(reports) == {("t", "a", 2): (1, 1)}
    assert _residual(reports) == {("t", 2): (100, 100)}


def test_ties_are_broken_the_same_way_whatever_the_insertion_order() -> None:
    tenants = [f"t{i:02d}" for i in range(20)]
    kept: set[frozenset[tuple[str, str, int]]] = set()
    for seed in range(5):
        order = tenants[:]
        random.Random(seed).shuffle(order)
        acc = UsageAccumulator("p")
        for tenant in order:
            acc.add("orders", tenant, 1, 0)  # all tied at one record
        acc.add("orders", "t05", 1, 0)  # except one, which must always be kept
        named = _named(acc.take(now_ms=1, top_k=4))
        assert ("orders", "t05", 0) in named
        assert len(named) == 4
        kept.add(frozenset(named))
    assert len(kept) == 1


def test_restore_re_adds_named_and_residual_reports() -> None:
    acc = UsageAccumulator("p")
    for tenant, n in [("a", 5), ("b", 3), ("c", 1)]:
        for _ in range(n):
            acc.add("t", tenant, 10, 1)
    acc.add("t", "", 4, 1)
    unsent = acc.take(now_ms=1_000, top_k=1)
    assert _residual(unsent) == {("t", 1): (5, 44)}
    acc.add("t", "a", 1, 1)
    acc.restore(unsent)
    again = acc.take(now_ms=2_000)
    # The folded tenants stay folded (their names were not sent), nothing is lost.
    assert _named(again) == {("t", "a", 1): (6, 51)}
    assert _residual(again) == {("t", 1): (5, 44)}
    assert acc.take(now_ms=3_000, top_k=1) == []


_adds = st.lists(
    st.tuples(
        st.sampled_from(["orders", "pay"]),
        st.sampled_from(["", "a", "b", "c", "d", "e"]),
        st.integers(-1, 2),
        st.integers(0, 1_000),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(adds=_adds, top_k=st.one_of(st.none(), st.integers(0, 6)))
def test_take_conserves_totals_and_bounds_the_reports(adds: list[_Add], top_k: int | None) -> None:
    acc = UsageAccumulator("p")
    exact: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for topic, tenant, part, nbytes in adds:
        acc.add(topic, tenant, nbytes, part)
        exact[(topic, tenant, part)][0] += 1
        exact[(topic, tenant, part)][1] += nbytes
    reports = acc.take(now_ms=10, top_k=top_k)
    named, residual = _named(reports), _residual(reports)
    assert len(reports) == len(named) + len(residual)  # no duplicates either way

    # Totals per (topic, partition) are conserved exactly.
    expected: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for (topic, _, part), (records, nbytes) in exact.items():
        expected[(topic, part)][0] += records
        expected[(topic, part)][1] += nbytes
    assert _totals_by_partition(reports) == dict(expected)

    # Named reports are exact, at most top_k of them, and the busiest by records.
    candidates = {k: (v[0], v[1]) for k, v in exact.items() if k[1]}
    for key, counts in named.items():
        assert candidates[key] == counts
    if top_k is None or len(candidates) <= top_k:
        assert named == candidates
    else:
        assert len(named) == top_k
        folded = [candidates[k][0] for k in candidates if k not in named]
        assert not named or max(folded) <= min(r for r, _ in named.values())

    # The residual holds exactly what was not named, and exists only when there is some.
    unreported: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for (topic, tenant, part), (records, nbytes) in exact.items():
        if (topic, tenant, part) not in named:
            unreported[(topic, part)][0] += records
            unreported[(topic, part)][1] += nbytes
    assert residual == {k: (v[0], v[1]) for k, v in unreported.items()}
    assert all(records > 0 for records, _ in residual.values())

    # Restoring everything and taking again gives the same reports back.
    acc.restore(reports)
    again = acc.take(now_ms=20, top_k=top_k)
    assert (_named(again), _residual(again)) == (named, residual)


@settings(max_examples=50, deadline=None)
@given(adds=_adds, top_k=st.integers(0, 6), seed=st.integers(0, 2**32))
def test_take_does_not_depend_on_insertion_order(adds: list[_Add], top_k: int, seed: int) -> None:
    def take(order: list[_Add]) -> tuple[object, object]:
        acc = UsageAccumulator("p")
        for topic, tenant, part, nbytes in order:
            acc.add(topic, tenant, nbytes, part)
        reports = acc.take(now_ms=1, top_k=top_k)
        return _named(reports), _residual(reports)

    shuffled = adds[:]
    random.Random(seed).shuffle(shuffled)
    assert take(adds) == take(shuffled)


def test_zipf_traffic_stays_bounded_and_every_tenant_that_matters_is_named() -> None:
    """100 producers x 100,000 tenants, top_k=1000: at most 1000 + partitions reports per
    producer per interval, and every tenant above 1/1000 of the traffic reported by name.

    Three producers stand in for the hundred (each one's take is independent); each sees all
    100,000 tenants at least once plus Zipf(1.1) traffic over a shared popularity ranking.
    """
    tenants, top_k, partitions, producers = 100_000, 1_000, 12, 3
    extra_records = 100_000
    rng = np.random.default_rng(7)
    weights = 1.0 / np.arange(1, tenants + 1) ** 1.1
    weights /= weights.sum()
    names = [f"tenant-{i}" for i in rng.permutation(tenants)]
    part_of = [zlib.crc32(name.encode()) % partitions for name in names]

    global_counts: Counter[str] = Counter()
    named_by: dict[str, int] = defaultdict(int)
    named_records: Counter[str] = Counter()
    for producer in range(producers):
        counts = 1 + rng.multinomial(extra_records, weights)
        acc = UsageAccumulator(f"producer-{producer}")
        add = acc.add
        for name, part, n in zip(names, part_of, counts.tolist(), strict=True):
            for _ in range(n):
                add("orders", name, 100, part)
        total = int(counts.sum())
        reports = acc.take(now_ms=1, top_k=top_k)

        # Bounded: the named top_k plus one residual per data partition.
        assert len(reports) <= top_k + partitions
        assert sum(1 for r in reports if r.tenant) == top_k
        assert sum(r.records for r in reports) == total
        assert sum(r.bytes for r in reports) == 100 * total
        reported = {r.tenant: r.records for r in reports if r.tenant}
        # Every tenant above 1/top_k of this producer's traffic is named, with its exact count.
        heavy = [i for i in range(tenants) if counts[i] * top_k > total]
        assert len(heavy) >= 20  # the test means something
        for i in heavy:
            assert reported.get(names[i]) == int(counts[i])
        for i, n in enumerate(counts.tolist()):
            global_counts[names[i]] += n
        for tenant, records in reported.items():
            named_by[tenant] += 1
            named_records[tenant] += records

    # What the planner sees summed over producers: every tenant above 1/1000 of all traffic is
    # named by every producer, so its planned rate is exact.
    grand_total = sum(global_counts.values())
    significant = [t for t, n in global_counts.items() if n * top_k > grand_total]
    assert len(significant) >= 20
    for tenant in significant:
        assert named_by[tenant] == producers
        assert named_records[tenant] == global_counts[tenant]
