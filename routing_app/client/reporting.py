"""Usage reports: the producer's per-tenant counts, sent to the usage topic every interval."""

from __future__ import annotations

import logging

from confluent_kafka import Producer

from routing_app.client.errors import UnknownTopicError
from routing_app.client.metadata import PartitionCounts
from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec, RegistryUnavailable
from routing_app.usage import UsageAccumulator, batch_reports

log = logging.getLogger(__name__)


class UsageReporter:
    def __init__(
        self,
        producer: Producer,
        accumulator: UsageAccumulator,
        codec: AvroCodec,
        topic: str,
        top_k: int,
        metadata: PartitionCounts,
        registry_url: str | None,
    ) -> None:
        self.reports = 0  # tenant reports sent, however many records carried them
        self.deferred = 0  # intervals whose reports waited for the next one
        self._producer: Producer | None = producer
        self._accumulator = accumulator
        self._codec = codec
        self._topic = topic
        self._top_k = top_k
        self._metadata = metadata
        self._registry_url = registry_url
        self._error_logged = False

    def send(self) -> None:
        """Sends what the accumulator holds (the caller harvested the memo into it first)."""
        reports = self._accumulator.take(top_k=self._top_k)
        if not reports or self._producer is None:
            return
        batches = []
        sent = 0  # batches sent
        try:
            if not self._codec.registered:
                # Resolved by the schema thread; asking the registry here would block.
                raise RegistryUnavailable(
                    f"the usage schema is not resolved yet (schema registry at {self._registry_url})"
                )
            count = self._metadata.get(self._topic)
            # One record per usage partition (split if large): every report in it has a key
            # that hashes there, and so does the record's key (its first report's).
            batches = batch_reports(reports, count)
            for batch in batches:
                # Timestamped inside the interval (its last ms): workers window by it.
                self._producer.produce(
                    self._topic,
                    self._codec.encode(batch.to_record()),
                    batch.key,
                    partition=java_partition(batch.key, count),
                    timestamp=batch.interval_end - 1,
                )
                sent += 1
        except (UnknownTopicError, RegistryUnavailable, BufferError) as exc:
            # Usage is telemetry: keep producing data, keep the counts for the next interval.
            self._accumulator.restore([r for b in batches[sent:] for r in b.reports] if batches else reports)
            self.deferred += 1
            if not self._error_logged and not isinstance(exc, BufferError):
                log.error("usage reports not sent (kept for the next interval): %s", exc)
                self._error_logged = True
        self.reports += sum(len(b.reports) for b in batches[:sent])

    def detach(self) -> None:
        """The producer is closing: let go of librdkafka (see RoutingProducer.close)."""
        self._producer = None
