"""UsageAccumulator: per (topic, tenant) counts, chained intervals, restore, thread safety."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.usage import UsageAccumulator, UsageReport
from routing_app.usage.streams import StreamCounts


def _by_key(reports: list[UsageReport]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r.topic, r.tenant): (r.records, r.bytes) for r in reports}


def test_counts_per_topic_and_tenant() -> None:
    acc = UsageAccumulator("p-1")
    acc.add("orders", "acme", 10)
    acc.add("orders", "acme", 5)
    acc.add("orders", "globex", 7)
    acc.add("payments", "acme", 0)
    reports = acc.take(now_ms=2_000)
    assert len(reports) == 3
    assert _by_key(reports) == {
        ("orders", "acme"): (2, 15),
        ("orders", "globex"): (1, 7),
        ("payments", "acme"): (1, 0),
    }
    assert {r.producer_id for r in reports} == {"p-1"}
    assert {r.partition for r in reports} == {-1}
    assert {r.interval_end for r in reports} == {2_000}


def test_take_resets_and_intervals_chain() -> None:
    acc = UsageAccumulator("p")
    acc.add("t", "a", 1)
    first = acc.take(now_ms=10_000)
    assert acc.take(now_ms=11_000) == []  # nothing new, but the interval still moves on
    acc.add("t", "a", 2)
    acc.add("t", "b", 3)
    third = acc.take(now_ms=12_500)
    assert _by_key(third) == {("t", "a"): (1, 2), ("t", "b"): (1, 3)}
    assert first[0].interval_end == 10_000
    assert {(r.interval_start, r.interval_end) for r in third} == {(11_000, 12_500)}
    acc.add("t", "a", 4)
    (fourth,) = acc.take(now_ms=13_000)
    assert (fourth.interval_start, fourth.interval_end) == (12_500, 13_000)
    assert (fourth.records, fourth.bytes) == (1, 4)


def test_first_interval_starts_at_construction() -> None:
    before = int(time.time() * 1000)
    acc = UsageAccumulator("p")
    after = int(time.time() * 1000)
    acc.add("t", "a", 1)
    (report,) = acc.take(now_ms=after + 5_000)
    assert before <= report.interval_start <= after


def test_take_without_now_uses_wall_clock_and_chains() -> None:
    acc = UsageAccumulator("p")
    acc.add("t", "a", 1)
    (first,) = acc.take()
    acc.add("t", "a", 1)
    (second,) = acc.take()
    assert second.interval_start == first.interval_end
    assert first.interval_start <= first.interval_end <= second.interval_end


def test_restore_re_adds_to_the_next_interval() -> None:
    acc = UsageAccumulator("p")
    acc.add("t", "a", 100)
    acc.add("t", "b", 1)
    unsent = acc.take(now_ms=1_000)
    acc.add("t", "a", 10)
    acc.restore(unsent)
    reports = acc.take(now_ms=2_000)
    assert _by_key(reports) == {("t", "a"): (2, 110), ("t", "b"): (1, 1)}
    assert acc.take(now_ms=3_000) == []


def test_report_key_and_record() -> None:
    acc = UsageAccumulator("p-9")
    acc.add("orders", "acme/eu", 3)
    (report,) = acc.take(now_ms=5)
    assert report.key == "orders/acme/eu"
    assert UsageReport.from_record(report.to_record()) == report


def test_concurrent_adds_are_exact() -> None:
    acc = UsageAccumulator("p")
    threads, per_thread = 4, 50_000
    start = threading.Barrier(threads)

    def work(index: int) -> None:
        start.wait()
        tenant = f"tenant-{index % 2}"
        for i in range(per_thread):
            acc.add("t", tenant, 1 + (i & 1))
            if i % 10 == 0:
                acc.add("t", "shared", 1)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts = _by_key(acc.take(now_ms=1))
    per_tenant_bytes = 2 * (per_thread // 2) * 1 + 2 * (per_thread // 2) * 2  # 2 threads each
    assert counts[("t", "tenant-0")] == (2 * per_thread, per_tenant_bytes)
    assert counts[("t", "tenant-1")] == (2 * per_thread, per_tenant_bytes)
    assert counts[("t", "shared")] == (threads * per_thread // 10, threads * per_thread // 10)


def test_concurrent_adds_and_takes_lose_nothing() -> None:
    acc = UsageAccumulator("p")
    taken: list[UsageReport] = []
    stop = threading.Event()

    def taker() -> None:
        while not stop.is_set():
            taken.extend(acc.take())

    def adder() -> None:
        for _ in range(20_000):
            acc.add("t", "a", 3)

    d = threading.Thread(target=taker)
    d.start()
    adders = [threading.Thread(target=adder) for _ in range(4)]
    for a in adders:
        a.start()
    for a in adders:
        a.join()
    stop.set()
    d.join()
    taken.extend(acc.take())
    assert sum(r.records for r in taken) == 80_000
    assert sum(r.bytes for r in taken) == 240_000


def test_every_mutation_waits_for_the_lock() -> None:
    # White-box complement to the stress tests above: with the GIL, CPython rarely interleaves
    # inside add(), so a missing lock would seldom show up there. Holding the lock must block
    # add, take and restore.
    acc = UsageAccumulator("p")
    acc.add("t", "a", 1)
    pending = acc.take(now_ms=1)
    calls: list[Callable[[], object]] = [
        lambda: acc.add("t", "a", 1),
        lambda: acc.take(now_ms=2),
        lambda: acc.restore(pending),
    ]
    for call in calls:
        done = threading.Event()
        with acc._lock:
            worker = threading.Thread(target=lambda c=call, d=done: (c(), d.set()))
            worker.start()
            assert not done.wait(0.05), "mutated without holding the lock"
        assert done.wait(5.0)
        worker.join()


# -- how splittable each tenant is: its ordered streams ----------------------------------------


def test_key_only_records_are_one_stream_of_all_the_tenants_records() -> None:
    acc = UsageAccumulator("p")
    acc.add_counts([("orders", b"solo", 3, 40, 400)])
    acc.add("orders", "solo", 10, 3)  # tenant given, no secondary key: the same stream
    (report,) = acc.take()
    assert (report.records, report.top_stream, report.streams) == (41, 41, 1)


def test_secondary_keys_are_counted_per_stream() -> None:
    acc = UsageAccumulator("p")
    for i in range(640):
        acc.add("orders", "big", 1, 2, f"key-{i % 64}".encode())
    for _ in range(30):
        acc.add("orders", "big", 1, 2, None)  # its keyless records: one stream more
    (report,) = acc.take()
    assert (report.records, report.top_stream, report.streams) == (670, 30, 65)


def test_stream_figures_survive_a_put_back() -> None:
    acc = UsageAccumulator("p")
    for i in range(100):
        acc.add("orders", "big", 1, 0, i % 4)
    first = acc.take()
    acc.restore(first)
    acc.add("orders", "big", 1, 0, 0)
    (report,) = acc.take()
    # 25 put back for key 0 (an upper bound for any key) plus this interval's 1.
    assert (report.records, report.top_stream, report.streams) == (101, 26, 4)


@settings(max_examples=150, deadline=None)
@given(keys=st.lists(st.integers(0, 40), min_size=1, max_size=400), capacity=st.integers(1, 16))
def test_stream_counts_bound_the_heaviest_stream(keys: list[int], capacity: int) -> None:
    """Misra-Gries: never below the true heaviest stream, at most records / (capacity + 1)
    above it; exact (and every stream counted) while the keys fit."""
    counts = StreamCounts(capacity)
    for key in keys:
        counts.add(key)
    true = Counter(keys)
    heaviest = max(true.values())
    assert heaviest <= counts.heaviest() <= heaviest + len(keys) / (capacity + 1)
    if len(true) <= capacity:
        assert counts.heaviest() == heaviest
        assert counts.streams() == len(true)
    else:
        assert counts.streams() == capacity
