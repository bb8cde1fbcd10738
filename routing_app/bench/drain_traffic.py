"""The traffic of ``bench drain``: who sends what, without pause, and the consumer group that
checks it, each on a thread of its own while the scenario moves the tenants around.

Apart from the scenario because it runs beside it: the scenario only starts it, swaps its
producer mid-drain and reads its counts at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer

from routing_app.bench.drain_checker import Checker
from routing_app.client import RoutingProducer
from routing_app.config import Settings
from routing_app.connection import client_settings

# The data topic's partitions, and the tenants sending on it: strict ones that move one at a
# time, relaxed ones (moved without a drain), and one sharded by its users' keys.
PARTITIONS = 8
STRICT = [f"strict-{i:02d}" for i in range(10)]
RELAXED = [f"relaxed-{i}" for i in range(3)]
SHARDED = "bigco"
USERS = [f"user-{i:02d}" for i in range(16)]
# Sent by a producer process that is killed (-9) just before the tenant moves; the move
# must wait for it to expire, and every record it wrote must be consumed before any record
# sent to the new partition.
CRASHY = "crashy"
_CRASHY_PRODUCER = """
import json, sys, time
from routing_app.client import RoutingProducer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
with RoutingProducer(conf) as producer:
    producer.wait_ready(30)
    print("ready", flush=True)
    seq = 0
    while True:
        producer.produce(topic, b"%s|crashed|%d" % (b"crashy", seq), b"crashy")
        seq += 1
        time.sleep(0.005)
"""


def producer_config(s: Settings, producer_id: str) -> dict[str, Any]:
    """An idempotent producer's configuration: a strict tenant's records must not duplicate."""
    return s.producer_config(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "routing.usage.interval.ms": 500,
            "routing.producer.id": producer_id,
        }
    )


def start_crashy_producer(s: Settings, data: str) -> subprocess.Popen[str]:
    """The process sending the ``CRASHY`` tenant's records, to be killed; it prints "ready"."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CRASHY_PRODUCER,
            json.dumps(producer_config(s, "drain-bench-crashy")),
            data,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


class Traffic:
    """Every tenant's numbered records, sent without pause, and the consumer group checking
    them: each on a thread of its own, until :meth:`finish`."""

    def __init__(self, s: Settings, data: str, group: str, rate: float) -> None:
        self._s, self._data, self._group, self._rate = s, data, group, rate
        self.checker = Checker()
        self.sent: dict[tuple[str, str], int] = {}
        self.produced = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._stop_deadline = float("inf")
        # The producer in use, in a list so that a swap (mid-drain) is seen by every holder.
        self.holder: list[RoutingProducer] = [self.new_producer(0)]
        # Held by the traffic loop for each round: a producer swap happens between rounds.
        self.lock = threading.Lock()
        self.streams: list[tuple[str, str | None]] = [(t, None) for t in STRICT + RELAXED]
        # The sharded tenant also sends key-only records: its keyless stream must keep its order
        # through shard, grow, shrink and merge back too.
        self.streams += [(SHARDED, u) for u in USERS] + [(SHARDED, None)]
        self._consumer_thread = threading.Thread(target=self._consume, name="drain-checker", daemon=True)
        self._producer_thread = threading.Thread(target=self._produce, name="drain-producer", daemon=True)

    def new_producer(self, index: int) -> RoutingProducer:
        """A ready producer for the traffic (index 1: the one that replaces the first)."""
        producer = RoutingProducer(producer_config(self._s, f"drain-bench-{index}"))
        producer.wait_ready(30)
        return producer

    def start(self) -> None:
        """Starts the checker and the senders' threads."""
        self._consumer_thread.start()
        self._producer_thread.start()

    def raise_if_failed(self) -> None:
        """A failure on either thread ends the benchmark, at the next move."""
        if self.errors:
            raise RuntimeError(f"traffic failed: {self.errors[0]!r}") from self.errors[0]

    def finish(self) -> int:
        """Stops sending, closes the producer in use and lets the checker catch up: the records
        still unsent when the producer closed."""
        self._stop.set()
        self._producer_thread.join(10)
        left = self.holder[0].flush(30)
        self.holder[0].close()
        self._stop_deadline = time.monotonic() + 30
        self._consumer_thread.join(40)
        return left

    def _consume(self) -> None:
        consumer = Consumer(
            client_settings(
                self._s.kafka,
                **{
                    "group.id": self._group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": 100,
                    "isolation.level": "read_committed",
                },
            )
        )
        consumer.subscribe([self._data])
        try:
            while not self._stop.is_set() or self.checker.received < self.produced:
                for message in consumer.consume(500, 0.1):
                    value = message.value()
                    if message.error() is None and value:
                        self.checker.check(value)
                if self._stop.is_set() and time.monotonic() > self._stop_deadline:
                    return
        except BaseException as exc:  # reported by the caller
            self.errors.append(exc)
        finally:
            consumer.close()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                with self.lock:
                    self._send_round(self.holder[0])
                time.sleep(max(0.0, len(self.streams) / self._rate - (time.monotonic() - started)))
        except BaseException as exc:
            self.errors.append(exc)

    def _send_round(self, producer: RoutingProducer) -> None:
        """The next record of every stream."""
        for tenant, user in list(self.streams):
            stream = (tenant, user or "")
            seq = self.sent.get(stream, 0)
            value = f"{tenant}|{user or ''}|{seq}".encode()
            if user is None or tenant == CRASHY:
                producer.produce(self._data, value, tenant.encode())
            else:
                producer.produce(self._data, value, user.encode(), tenant=tenant)
            self.sent[stream] = seq + 1
            self.produced += 1
