"""Samples each partition's end offset; the difference between samples is its write rate."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from routing_app.connection import admin_client, cluster_metadata


class PartitionLoadSampler:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._admin = admin_client(bootstrap)
        metadata = cluster_metadata(self._admin, bootstrap)
        self.partitions = sorted(metadata.topics[topic].partitions)
        self._last: tuple[float, dict[int, int]] | None = None

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


def consumer_lag(bootstrap: str, groups: list[str], topic: str, end_offsets: dict[int, int],
                 timeout: float = 10.0) -> dict[int, int]:
    """The largest lag of any of ``groups`` on each partition of ``topic`` (0 if none commits)."""
    if not groups:
        return {}
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = admin_client(bootstrap)
    lag: dict[int, int] = {}
    for group in groups:
        request = [ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in sorted(end_offsets)])]
        result = admin.list_consumer_group_offsets(request, request_timeout=timeout)
        for future in result.values():
            for tp in future.result(timeout).topic_partitions or []:
                if tp.offset is None or tp.offset < 0:
                    continue
                behind = max(0, end_offsets.get(tp.partition, tp.offset) - tp.offset)
                lag[tp.partition] = max(lag.get(tp.partition, 0), behind)
    return lag


def committed_offsets(admin: AdminClient, groups: list[str], topic: str, partitions: list[int],
                      timeout: float = 10.0) -> dict[int, int] | None:
    """The lowest offset any of ``groups`` committed on each partition (-1: not yet), counting
    only groups that committed on ``topic`` at all; None when no such group exists."""
    if not groups or not partitions:
        return None
    from confluent_kafka import ConsumerGroupTopicPartitions

    lowest: dict[int, int] | None = None
    for group in groups:
        request = [ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in sorted(partitions)])]
        for future in admin.list_consumer_group_offsets(request, request_timeout=timeout).values():
            found = {tp.partition: (tp.offset if tp.offset is not None and tp.offset >= 0 else -1)
                     for tp in future.result(timeout).topic_partitions or []}
            if all(o < 0 for o in found.values()):
                # The group has never committed here, or does not read this topic.
                continue
            if lowest is None:
                lowest = dict.fromkeys(partitions, 1 << 62)
            for partition in partitions:
                lowest[partition] = min(lowest[partition], found.get(partition, -1))
    return lowest


def end_offsets(admin: AdminClient, topic: str, partitions: list[int],
                timeout: float = 10.0) -> dict[int, int]:
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    results = admin.list_offsets(request, request_timeout=timeout)
    return {tp.partition: future.result(timeout).offset for tp, future in results.items()}
