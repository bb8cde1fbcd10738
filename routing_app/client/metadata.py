"""Partition counts of the data topics, as the broker last listed them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException, Producer

from routing_app.client.errors import RoutingProducerError, UnknownTopicError

log = logging.getLogger(__name__)


class PartitionCounts:
    def __init__(
        self,
        producer: Producer,
        bootstrap: str,
        timeout_s: float,
        refresh_s: float,
        on_change: Callable[[list[str]], None],
    ) -> None:
        # Topic -> partitions; replaced whole on each load, so read it afresh (never hold it).
        self.counts: dict[str, int] = {}
        self._producer: Producer | None = producer
        self._bootstrap = bootstrap
        self._timeout_s = max(timeout_s, 1.0)
        self._refresh_s = refresh_s
        self._on_change = on_change  # with the topics whose count changed
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def get(self, topic: str) -> int:
        count = self.counts.get(topic)
        if count is None:
            count = self.load(topic)
        return count

    def load(self, topic: str) -> int:
        """Asks the broker (for every topic); ``topic`` must be among them."""
        with self._lock:
            if self._producer is None:
                raise RoutingProducerError("producer is closed")
            try:
                # All topics, not list_topics(topic): asking for one topic may auto-create it.
                metadata = self._producer.list_topics(timeout=self._timeout_s)
            except KafkaException as exc:
                raise UnknownTopicError(
                    f"cannot read metadata for {topic!r} from {self._bootstrap}: {exc}"
                ) from exc
            counts = {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
            previous, self.counts = self.counts, counts
            self._loaded_at = time.monotonic()
            changed = [name for name, n in previous.items() if counts.get(name) != n]
            if changed:
                self._on_change(changed)
        if topic not in counts:
            raise UnknownTopicError(
                f"topic {topic!r} does not exist on {self._bootstrap}; data topics are never "
                f"created implicitly: create it first (e.g. kafka-topics.sh --create)"
            )
        return counts[topic]

    def refresh_if_due(self, now: float) -> None:
        """Poll thread: reloads every routing.metadata.refresh.ms once any topic is known."""
        if self.counts and now - self._loaded_at >= self._refresh_s:
            try:
                self.load(next(iter(self.counts)))
            except RoutingProducerError as exc:
                log.warning("metadata refresh: %s", exc)
                self._loaded_at = now

    def detach(self) -> None:
        """The producer is closing: let go of librdkafka (see RoutingProducer.close)."""
        with self._lock:
            self._producer = None
