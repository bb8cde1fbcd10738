"""Samples each partition's end offset; the difference between samples is its write rate."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

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
        request = {TopicPartition(self._topic, p): OffsetSpec.latest() for p in self.partitions}
        results = self._admin.list_offsets(request, request_timeout=timeout)
        return {tp.partition: future.result(timeout).offset for tp, future in results.items()}

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
