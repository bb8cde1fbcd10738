"""What the producer sent, and what librdkafka reported back, per (topic, partition).

A drain waits for exactly the records sent to a tenant's old partitions before its hold
began: ``sent`` is counted under ``lock`` together with the send itself, so a hold, which
takes its barrier under the same lock, cuts librdkafka's order exactly; ``done`` and
``last_offsets`` follow the delivery reports, which arrive in that order per partition.

Every record's report passes through ``on_delivery_report`` (librdkafka calls it for each one),
so it does as little as it can: one lookup by topic, then lists indexed by partition. It keeps
the last delivered message of each partition rather than asking every report for its offset
(``offset()`` alone costs a quarter of the old bookkeeping); ``last_offsets`` asks when read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import KafkaError, Message

from routing_app.client.partitioner import RoutingPath
from routing_app.usage import UsageAccumulator

log = logging.getLogger(__name__)

# Per topic: reports so far by partition, and the last message delivered to each (or None).
_Reports = dict[str, tuple[list[int], list[Message | None]]]


class SendLedger:
    def __init__(self, usage: UsageAccumulator | None) -> None:
        # The send lock: every record goes to librdkafka under it (see the module's text).
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], int] = {}
        self._reports: _Reports = {}
        self._growing = threading.Lock()
        # Read-only views by (topic, partition), as drains read them.
        self.done: Mapping[tuple[str, int], int] = _Done(self._reports)
        self.last_offsets: Mapping[tuple[str, int], int] = _LastOffsets(self._reports)
        # Records by path, but those still counted in live memo cells (see memo.Memo).
        self.paths: dict[str, int] = {path.value: 0 for path in RoutingPath}
        self.delivery_failed = 0
        self.usage = usage

    def count_sent(self, topic: str, partition: int, records: int) -> None:
        # Under the lock.
        tp = (topic, partition)
        self.sent[tp] = self.sent.get(tp, 0) + records

    def count(
        self, path: RoutingPath, topic: str, name: str | None, chosen: int | None, value: Any, stream: Any
    ) -> None:
        """One record, under the lock right after it went to librdkafka. ``stream``: the
        secondary key (None: the record is its tenant's keyless stream)."""
        self.paths[path] += 1
        if chosen is not None:
            self.count_sent(topic, chosen, 1)
        if self.usage is not None:
            self.usage.add(
                topic,
                name or "",
                len(value) if value is not None else 0,
                -1 if chosen is None else chosen,
                stream,
            )

    def on_delivery_report(self, err: KafkaError | None, message: Message) -> None:
        # Every record's report, in librdkafka's order per partition: what drains wait for.
        if err is None:
            try:
                done, last = self._reports[message.topic()]  # type: ignore[index]
                partition: int = message.partition()  # type: ignore[assignment]
                # ``last`` first: it is never longer than ``done`` (see _report), so an
                # IndexError leaves nothing counted twice.
                last[partition] = message
                done[partition] += 1
                return
            except (KeyError, IndexError, TypeError):
                pass  # a topic or partition not reported before (TypeError: no partition)
        self._report(err, message)

    def _report(self, err: KafkaError | None, message: Message) -> None:
        """A failure, or the first report of its topic or partition."""
        topic: str = message.topic()  # type: ignore[assignment]
        partition = message.partition()
        if err is not None:
            self.delivery_failed += 1
            log.error("delivery to %s [%s] failed: %s", topic, partition, err)
        if partition is None or partition < 0:
            return  # never placed (its topic is unknown, say): no drain waits for it
        with self._growing:  # two threads may serve reports (the poll thread, a flush)
            done, last = self._reports.setdefault(topic, ([], []))
            while len(done) <= partition:
                done.append(0)
            while len(last) <= partition:
                last.append(None)
            if err is None:
                last[partition] = message
            done[partition] += 1


class _Done(Mapping[tuple[str, int], int]):
    """Reports so far (delivered or failed) by (topic, partition)."""

    def __init__(self, reports: _Reports) -> None:
        self._reports = reports

    def __getitem__(self, tp: tuple[str, int]) -> int:
        topic, partition = tp
        counts = self._reports.get(topic)
        if counts is None or not 0 <= partition < len(counts[0]) or not counts[0][partition]:
            raise KeyError(tp)
        return counts[0][partition]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for topic, (done, _) in list(self._reports.items()):
            yield from ((topic, p) for p, n in enumerate(list(done)) if n)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _LastOffsets(Mapping[tuple[str, int], int]):
    """The offset of the last record delivered by (topic, partition)."""

    def __init__(self, reports: _Reports) -> None:
        self._reports = reports

    def __getitem__(self, tp: tuple[str, int]) -> int:
        topic, partition = tp
        counts = self._reports.get(topic)
        message = counts[1][partition] if counts is not None and 0 <= partition < len(counts[1]) else None
        if message is None:
            raise KeyError(tp)
        return message.offset()  # type: ignore[return-value]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for topic, (_, last) in list(self._reports.items()):
            yield from ((topic, p) for p, m in enumerate(list(last)) if m is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)
