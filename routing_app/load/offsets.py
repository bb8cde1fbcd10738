"""Each partition's write rate: over a window, from the offsets the broker finds by timestamp;
or, as a fallback, from end offsets sampled at two times."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ListOffsetsResultInfo, OffsetSpec

from routing_app.connection import Kafka, admin_client, cluster_metadata
from routing_app.load.window import WindowRates, rates_from_edge_offsets

log = logging.getLogger(__name__)


class PartitionLoadSampler:
    def __init__(self, bootstrap: Kafka, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._admin = admin_client(bootstrap)
        metadata = cluster_metadata(self._admin, bootstrap)
        self.partitions = sorted(metadata.topics[topic].partitions)
        self._last: tuple[float, dict[int, int]] | None = None
        self._fallback_logged = False

    def end_offsets(self, timeout: float = 10.0) -> dict[int, int]:
        return end_offsets(self._admin, self._topic, self.partitions, timeout)

    def last_end_offsets(self) -> dict[int, int]:
        return dict(self._last[1]) if self._last else {}

    def sample(self) -> dict[int, float]:
        """Records per second written to each partition since the previous sample (0 at first)."""
        now, offsets = time.monotonic(), self.end_offsets()
        previous, self._last = self._last, (now, offsets)
        if previous is None:
            return dict.fromkeys(self.partitions, 0.0)
        elapsed = max(now - previous[0], 1e-6)
        return {p: (offsets[p] - previous[1].get(p, offsets[p])) / elapsed for p in offsets}

    def window_rates(
        self, start_ms: int, end_ms: int, latest: Mapping[int, int] | None = None, timeout: float = 10.0
    ) -> WindowRates:
        """Records per second written to each partition in [start_ms, end_ms), by the offsets of
        the records stamped at the window's edges.

        ``latest``: end offsets read just before, if the caller has them. Partitions the broker
        gave no answer for are ``unknown``; raises when it answered no start edge.
        """
        if latest is None:
            latest = self.end_offsets(timeout)
        # Both edges asked at once; only ``latest`` has to come first (see rates_from_edge_offsets).
        at_start = self._ask(start_ms, timeout)
        at_end = self._ask(end_ms, timeout)
        found_start, errors = _answers(at_start, timeout)
        found_end, end_errors = _answers(at_end, timeout)
        errors += end_errors
        if errors and not found_start:
            raise errors[0]  # every partition would be unknown: say why
        return rates_from_edge_offsets(start_ms, end_ms, self.partitions, found_start, found_end, latest)

    def rates_for_window(self, start_ms: int, end_ms: int) -> dict[int, float]:
        """Records per second over the window, each partition that cannot have that falling back
        to its rate since the previous call. Refreshes ``last_end_offsets``."""
        # Sampled every time, even when unused: the fallback needs its previous sample, the lag
        # the current end offsets.
        sampled = self.sample()
        try:
            exact = self.window_rates(start_ms, end_ms, latest=self.last_end_offsets())
        except Exception as exc:  # the fallback exists for whatever the broker answers
            self._fell_back(f"cannot use offsets by timestamp ({exc})")
            return sampled
        if exact.unknown:
            self._fell_back(f"no offsets by timestamp for partitions {list(exact.unknown)}")
        return {**{p: sampled[p] for p in exact.unknown if p in sampled}, **exact.rates}

    def _ask(self, timestamp_ms: int, timeout: float) -> dict[TopicPartition, Future[ListOffsetsResultInfo]]:
        """Each partition's first offset stamped at or after ``timestamp_ms``, as futures."""
        request = {
            TopicPartition(self._topic, p): OffsetSpec.for_timestamp(timestamp_ms) for p in self.partitions
        }
        answers: dict[TopicPartition, Future[ListOffsetsResultInfo]] = self._admin.list_offsets(
            request, request_timeout=timeout
        )
        return answers

    def _fell_back(self, why: str) -> None:
        # Once: a broker that cannot answer would otherwise log every cycle.
        if self._fallback_logged:
            log.debug("%s: window rates fall back to end-offset samples: %s", self._topic, why)
            return
        self._fallback_logged = True
        log.warning(
            "%s: %s; planning on end-offset samples instead, i.e. the write rate between "
            "two planning times rather than over the planned window (logged once)",
            self._topic,
            why,
        )


def _answers(
    futures: Mapping[TopicPartition, Future[ListOffsetsResultInfo]], timeout: float
) -> tuple[dict[int, int], list[Exception]]:
    found: dict[int, int] = {}
    errors: list[Exception] = []
    for tp, future in futures.items():
        try:
            found[tp.partition] = future.result(timeout).offset
        except (KafkaException, TimeoutError) as exc:
            errors.append(exc)
    return found, errors


def consumer_lag(
    bootstrap: Kafka, groups: list[str], topic: str, end_offsets: dict[int, int], timeout: float = 10.0
) -> dict[int, int]:
    """The largest lag of any of ``groups`` on each partition of ``topic`` (0 if none commits)."""
    if not groups:
        return {}
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = admin_client(bootstrap)
    lag: dict[int, int] = {}
    for group in groups:
        request = [
            ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in sorted(end_offsets)])
        ]
        result = admin.list_consumer_group_offsets(request, request_timeout=timeout)
        for future in result.values():
            for tp in future.result(timeout).topic_partitions or []:
                if tp.offset is None or tp.offset < 0:
                    continue
                behind = max(0, end_offsets.get(tp.partition, tp.offset) - tp.offset)
                lag[tp.partition] = max(lag.get(tp.partition, 0), behind)
    return lag


def committed_offsets(
    admin: AdminClient, groups: list[str], topic: str, partitions: list[int], timeout: float = 10.0
) -> dict[int, int] | None:
    """The lowest offset any of ``groups`` committed on each partition (-1: not yet), counting
    only groups that committed on ``topic`` at all; None when no such group exists."""
    if not groups or not partitions:
        return None
    from confluent_kafka import ConsumerGroupTopicPartitions

    lowest: dict[int, int] | None = None
    for group in groups:
        request = [
            ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in sorted(partitions)])
        ]
        for future in admin.list_consumer_group_offsets(request, request_timeout=timeout).values():
            found = {
                tp.partition: (tp.offset if tp.offset is not None and tp.offset >= 0 else -1)
                for tp in future.result(timeout).topic_partitions or []
            }
            if all(o < 0 for o in found.values()):
                # The group has never committed here, or does not read this topic.
                continue
            if lowest is None:
                lowest = dict.fromkeys(partitions, 1 << 62)
            for partition in partitions:
                lowest[partition] = min(lowest[partition], found.get(partition, -1))
    return lowest


def end_offsets(
    admin: AdminClient, topic: str, partitions: list[int], timeout: float = 10.0
) -> dict[int, int]:
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    results = admin.list_offsets(request, request_timeout=timeout)
    return {tp.partition: future.result(timeout).offset for tp, future in results.items()}
