"""What the producer sent, and what librdkafka reported back, per (topic, partition).

A drain waits for exactly the records sent to a tenant's old partitions before its hold
began: ``sent`` is counted under ``lock`` together with the send itself, so a hold, which
takes its barrier under the same lock, cuts librdkafka's order exactly; ``done`` and
``last_offsets`` follow the delivery reports, which arrive in that order per partition.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, Message

from routing_app.client.partitioner import RoutingPath
from routing_app.usage import UsageAccumulator

log = logging.getLogger(__name__)


class SendLedger:
    def __init__(self, usage: UsageAccumulator | None) -> None:
        # The send lock: every record goes to librdkafka under it (see the module's text).
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], int] = {}
        self.done: dict[tuple[str, int], int] = {}
        self.last_offsets: dict[tuple[str, int], int] = {}
        # Records by path, but those still counted in live memo cells (see memo.Memo).
        self.paths: dict[str, int] = {path.value: 0 for path in RoutingPath}
        self.delivery_failed = 0
        self.usage = usage

    def count_sent(self, topic: str, partition: int, records: int) -> None:
        # Under the lock.
        tp = (topic, partition)
        self.sent[tp] = self.sent.get(tp, 0) + records

    def count(self, path: RoutingPath, topic: str, name: str | None, chosen: int | None,
              value: Any, stream: Any) -> None:
        """One record, under the lock right after it went to librdkafka. ``stream``: the
        secondary key (None: the record is its tenant's keyless stream)."""
        self.paths[path] += 1
        if chosen is not None:
            self.count_sent(topic, chosen, 1)
        if self.usage is not None:
            self.usage.add(topic, name or "", len(value) if value is not None else 0,
                           -1 if chosen is None else chosen, stream)

    def on_delivery_report(self, err: KafkaError | None, message: Message) -> None:
        # Every record's report, in librdkafka's order per partition: what drains wait for.
        tp: tuple[str, int] = (message.topic(), message.partition())  # type: ignore[assignment]
        done = self.done
        done[tp] = done.get(tp, 0) + 1
        if err is not None:
            self.delivery_failed += 1
            log.error("delivery to %s [%s] failed: %s", tp[0], tp[1], err)
        else:
            self.last_offsets[tp] = message.offset()  # type: ignore[assignment]
