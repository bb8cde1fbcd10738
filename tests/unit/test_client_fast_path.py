"""The producer's per-record paths: the memo's fast path, its counts, and the delivery ledger.

No broker: librdkafka's produce() is replaced by a recorder where a test needs to see the sends,
and delivery reports are built as confluent-kafka Message objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, murmur2

from routing_app.client import RoutingProducer, RoutingProducerError
from routing_app.client.ledger import SendLedger
from routing_app.client.memo import Memo
from routing_app.usage import UsageAccumulator

QUIET = {"bootstrap.servers": "127.0.0.1:1", "log_level": 0}


def _report(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, value=b"v")


# -- delivery reports --------------------------------------------------------------------------


def test_reports_are_counted_per_partition_with_the_last_offset() -> None:
    ledger = SendLedger(None)
    for offset in range(10):
        ledger.on_delivery_report(None, _report("orders", offset % 3, 100 + offset))
    ledger.on_delivery_report(None, _report("payments", 7, 5))
    assert dict(ledger.done) == {("orders", 0): 4, ("orders", 1): 3, ("orders", 2): 3, ("payments", 7): 1}
    assert dict(ledger.last_offsets) == {
        ("orders", 0): 109,
        ("orders", 1): 107,
        ("orders", 2): 108,
        ("payments", 7): 5,
    }
    # As drains read them: a partition never reported counts nothing and has no offset.
    assert ledger.done.get(("orders", 5), 0) == 0
    assert ledger.done.get(("payments", 0), 0) == 0
    assert ledger.last_offsets.get(("refunds", 0), -1) == -1
    assert ledger.delivery_failed == 0


def test_failed_reports_count_as_done_but_move_no_offset() -> None:
    ledger = SendLedger(None)
    ledger.on_delivery_report(None, _report("orders", 1, 40))
    failure = KafkaError(KafkaError._MSG_TIMED_OUT)
    ledger.on_delivery_report(failure, _report("orders", 1, -1))
    ledger.on_delivery_report(failure, _report("orders", 4, -1))  # first report of partition 4
    ledger.on_delivery_report(failure, _report("orders", -1, -1))  # never placed
    assert ledger.delivery_failed == 3
    assert dict(ledger.done) == {("orders", 1): 2, ("orders", 4): 1}
    assert dict(ledger.last_offsets) == {("orders", 1): 40}


# -- the memo and its harvest ------------------------------------------------------------------


def _memo_with_usage() -> tuple[Memo, SendLedger, UsageAccumulator]:
    usage = UsageAccumulator("p")
    ledger = SendLedger(usage)
    return Memo(ledger, None), ledger, usage


def test_harvest_moves_every_count_to_usage_and_the_ledger() -> None:
    memo, ledger, usage = _memo_with_usage()
    sends = [(b"acme", 3, 10), (b"globex", 3, 20), (None, -1, 5), (b"\xff\xfe", 1, 7)]
    for key, partition, nbytes in sends:
        with ledger.lock:
            memo.record("orders", key, partition, "routed", nbytes)
    for cell in memo.cells["orders"].values():  # what produce()'s fast path adds per record
        cell.records += 2
        cell.nbytes += 2 * cell.nbytes
    memo.harvest()
    reports = {(r.tenant, r.partition): (r.records, r.bytes) for r in usage.take()}
    assert reports == {
        ("acme", 3): (3, 30),
        ("globex", 3): (3, 60),
        ("", -1): (3, 15),
        ("\udcff\udcfe", 1): (3, 21),
    }
    assert ledger.sent == {("orders", 3): 6, ("orders", 1): 3}  # -1: librdkafka's choice
    assert ledger.paths["routed"] == 12
    memo.harvest()  # an idle interval: nothing more to report, and idle cells are dropped
    assert usage.take() == []
    assert memo.cells["orders"] == {}


def test_a_retired_cell_hands_over_its_counts() -> None:
    memo, ledger, usage = _memo_with_usage()
    with ledger.lock:
        memo.record("orders", b"acme", 2, "routed", 10)
    cell = memo.cells["orders"][b"acme"]
    cell.records += 1
    cell.nbytes += 10
    with ledger.lock:
        memo.take("orders", b"acme")
    assert not cell.live
    assert [(r.tenant, r.records, r.bytes) for r in usage.take()] == [("acme", 2, 20)]
    assert ledger.sent == {("orders", 2): 2}


# -- produce(): fast path and general path agree -----------------------------------------------


class _Recorder:
    """Stands in for librdkafka's produce(): keeps what was sent, positionally."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.sent.append(args)


@pytest.fixture
def producer() -> Iterator[tuple[RoutingProducer, _Recorder]]:
    rp = RoutingProducer(
        {
            **QUIET,
            "routing.cache.enabled": False,
            "routing.usage.enabled": False,
            "routing.max.block.ms": 1000,
            "routing.metadata.refresh.ms": 3_600_000,
        }
    )
    recorder = _Recorder()
    rp._produce = recorder  # type: ignore[method-assign]
    # As if the broker had just listed the topic (no broker here to refresh it from).
    rp._metadata.counts["orders"] = 6
    rp._metadata._loaded_at = time.monotonic()
    try:
        yield rp, recorder
    finally:
        rp.close(timeout=1.0)


def test_plain_records_go_where_partition_for_says_and_are_all_counted(
    producer: tuple[RoutingProducer, _Recorder],
) -> None:
    rp, recorder = producer
    keys = [f"tenant-{i % 7}".encode() for i in range(50)] + [None, None]
    for key in keys:
        rp.produce("orders", b"x" * 10, key)
    expected = [-1 if key is None else murmur2(key, 6) for key in keys]
    assert [args[3] for args in recorder.sent] == expected
    assert [args[2] for args in recorder.sent] == keys
    assert rp.partition_for("orders", b"tenant-3")[0] == murmur2(b"tenant-3", 6)
    counters = rp.counters
    assert (counters["hashed"], counters["unkeyed"]) == (50, 2)
    # Memoized keys took the fast path: one cell per key.
    assert set(rp._memo.cells["orders"]) == set(keys)


def test_a_closed_producer_refuses_even_memoized_keys(producer: tuple[RoutingProducer, _Recorder]) -> None:
    rp, recorder = producer
    rp.produce("orders", b"x", b"acme")
    rp.produce("orders", b"x", b"acme")  # memoized now
    rp.close(timeout=1.0)
    with pytest.raises(RoutingProducerError, match="closed"):
        rp.produce("orders", b"x", b"acme")
    assert len(recorder.sent) == 2


def test_unhashable_keys_take_the_general_path(producer: tuple[RoutingProducer, _Recorder]) -> None:
    rp, recorder = producer
    rp.produce("orders", b"x", b"acme")
    with pytest.raises(TypeError):
        rp.produce("orders", b"x", ["not", "a", "key"])
    assert len(recorder.sent) == 1
