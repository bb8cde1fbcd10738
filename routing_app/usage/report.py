"""One usage report. Plain data; on the wire many of them share a record (``usage_report`` Avro
schema, version 2; see ``routing_app.usage.batch``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing_app.routes.model import route_key

USAGE_SCHEMA = "usage_report"


@dataclass(frozen=True, slots=True)
class UsageReport:
    producer_id: str
    topic: str
    tenant: str
    records: int
    bytes: int
    interval_start: int  # ms since the epoch
    interval_end: int
    partition: int = -1
    # Records of the heaviest ordered stream (see routing_app.usage.streams) and how many
    # streams; -1 and 0 when not known (read as one stream).
    top_stream: int = -1
    streams: int = 0

    @property
    def key(self) -> str:
        return route_key(self.topic, self.tenant)

    def to_record(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies field by field (8 us against 0.2 us), and the
        # producer encodes up to usage.top.k reports each interval.
        return {
            "producer_id": self.producer_id,
            "topic": self.topic,
            "tenant": self.tenant,
            "records": self.records,
            "bytes": self.bytes,
            "interval_start": self.interval_start,
            "interval_end": self.interval_end,
            "partition": self.partition,
            "top_stream": self.top_stream,
            "streams": self.streams,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> UsageReport:
        return cls(
            record["producer_id"],
            record["topic"],
            record["tenant"],
            record["records"],
            record["bytes"],
            record["interval_start"],
            record["interval_end"],
            record.get("partition", -1),
            record.get("top_stream", -1),
            record.get("streams", 0),
        )
