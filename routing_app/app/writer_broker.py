"""What the route writer asks the broker while strict moves drain: the answers topic's offsets
(when a roll call is over, see app.producers.RollCalls) and the consumer groups' commits and the
old partitions' end offsets (when the consumers are done, see control.drain).

Apart because these are blocking admin-client calls (callers run them off the event loop), and
one client, connected on first use, serves them all.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from routing_app.config import Settings
from routing_app.connection import admin_client
from routing_app.load import committed_offsets, end_offsets


class WriterBroker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: Any = None

    @property
    def connected(self) -> bool:
        return self._admin is not None

    def answers_offset(self, spec: OffsetSpec) -> int:
        """The answers topic's end (or first) offset."""
        request = {TopicPartition(self._settings.answers_topic, 0): spec}
        results = self._client().list_offsets(request, request_timeout=10.0)
        return int(next(iter(results.values())).result(10.0).offset)

    def answers_resume(self) -> int:
        """Where this worker's group resumes reading the answers topic: its committed offset,
        or the topic's first offset (hold_flow_until_seek: no commit means from the start)."""
        topic = self._settings.answers_topic
        found = committed_offsets(self._client(), [self._settings.app_id], topic, [0])
        if found is not None and found.get(0, -1) >= 0:
            return found[0]
        return self.answers_offset(OffsetSpec.earliest())

    def consumer_commits(self, groups: list[str], topic: str, partitions: list[int]) -> dict[int, int] | None:
        """The lowest commit of ``groups`` on each partition (see load.committed_offsets)."""
        return committed_offsets(self._client(), groups, topic, partitions)

    def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return end_offsets(self._client(), topic, partitions)

    def _client(self) -> Any:
        if self._admin is None:
            self._admin = admin_client(self._settings.kafka)
        return self._admin
