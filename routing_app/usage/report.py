"""The usage report record. Plain data; the wire format is the ``usage_report`` Avro schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
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

    @property
    def key(self) -> str:
        return route_key(self.topic, self.tenant)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> UsageReport:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})
