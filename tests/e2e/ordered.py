"""Numbered traffic and a per-stream order check, for the live ordering tests.

A stream is (tenant, secondary key); key-only records (``key=tenant``, no ``tenant=``) are the
stream (tenant, ""). Every record's value is ``tenant|key|number``; the checker is a consumer
group that the workers' drains wait for (``lag_groups``), so a strict move switches only once
it has read the old partitions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from routing_app.bench.drain_checker import Checker
from routing_app.client import RoutingProducer
from routing_app.config import Settings
from routing_app.connection import client_settings

Stream = tuple[str, str]  # (tenant, secondary key); "" for key-only records


class NumberedStreams(threading.Thread):
    """Sends each stream's current rate (records/s) in 20 ms ticks; ``rates`` may change live."""

    def __init__(self, producer: RoutingProducer, topic: str, rates: dict[Stream, float]) -> None:
        super().__init__(name="numbered-streams", daemon=True)
        self.producer, self.topic = producer, topic
        self.rates = dict(rates)
        self.sent: dict[Stream, int] = {}
        self.errors: list[BaseException] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        owed: dict[Stream, float] = {}
        tick = 0.02
        next_tick = time.monotonic()
        try:
            while not self._halt.is_set():
                for stream, rate in list(self.rates.items()):
                    due = owed.get(stream, 0.0) + rate * tick
                    whole = int(due)
                    owed[stream] = due - whole
                    for _ in range(whole):
                        self._send(stream)
                next_tick += tick
                self._halt.wait(max(0.0, next_tick - time.monotonic()))
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _send(self, stream: Stream) -> None:
        tenant, key = stream
        seq = self.sent.get(stream, 0)
        value = f"{tenant}|{key}|{seq}".encode()
        if key:
            self.producer.produce(self.topic, value, key.encode(), tenant=tenant)
        else:
            self.producer.produce(self.topic, value, tenant.encode())
        self.sent[stream] = seq + 1


class OrderCheck(threading.Thread):
    """A consumer group checking every stream's numbers; remembers each record's partition."""

    def __init__(self, settings: Settings, group: str, topic: str, **consumer: Any) -> None:
        super().__init__(name="order-check", daemon=True)
        self.checker = Checker()
        self.partitions: dict[Stream, list[tuple[int, int]]] = {}  # stream -> [(seq, partition)]
        self.errors: list[BaseException] = []
        self._halt = threading.Event()
        self._consumer = Consumer(
            client_settings(
                settings.bootstrap,
                **{
                    "group.id": group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": 100,
                    "isolation.level": "read_committed",
                    **consumer,
                },
            )
        )
        self._consumer.subscribe([topic])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for message in self._consumer.consume(500, 0.1):
                    value = message.value()
                    if message.error() is None and value:
                        self.checker.check(value)
                        tenant, key, seq = value.decode().split("|")
                        self.partitions.setdefault((tenant, key), []).append(
                            (int(seq), message.partition() or 0)
                        )
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self._consumer.close()

    def finish(self, sent: dict[Stream, int], timeout: float = 60.0) -> dict[str, Any]:
        """Waits until every sent record arrived (or the timeout), stops, and sums up."""
        deadline = time.monotonic() + timeout
        total = sum(sent.values())
        while self.checker.received < total and time.monotonic() < deadline:
            time.sleep(0.1)
        self._halt.set()
        self.join(15)
        assert not self.errors, self.errors
        lost = {s: n - len(self.checker.seen.get(s, ())) for s, n in sent.items()}
        return {
            "sent": total,
            "received": self.checker.received,
            "lost": sum(max(n, 0) for n in lost.values()),
            "duplicated": sum(self.checker.duplicated.values()),
            "reordered": sum(self.checker.reordered.values()),
            "lost_by_stream": {f"{t}|{k}": n for (t, k), n in lost.items() if n},
        }

    def partitions_after(self, stream: Stream, seq: int) -> set[int]:
        return {p for s, p in self.partitions.get(stream, ()) if s >= seq}


def run_until(condition: Callable[[], Any], traffic: NumberedStreams, timeout: float, what: str) -> Any:
    """``condition()``'s first truthy value; fails at once if the traffic thread failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not traffic.errors, traffic.errors
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
