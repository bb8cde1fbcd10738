"""A producer's answer to a draining route, and its report once the move is over (see
routing_app.control.drain). Plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DRAIN_ACK_SCHEMA = "drain_ack"


def drain_ack_subject(answers_topic: str) -> str:
    # Named for the record type, not "<topic>-value": drain acks and release reports share it.
    return f"{answers_topic}-{DRAIN_ACK_SCHEMA}"


@dataclass(frozen=True)
class DrainAck:
    producer_id: str
    topic: str
    tenant: str
    epoch: int
    offsets: Mapping[int, int]  # old partition -> last offset this producer wrote (-1: none)
    acked_at_ms: int
    # A drain ack (header routing.type=drain-ack): records held when it went out, early in
    # the hold. A release report (header drain-released, no offsets): every record the
    # producer held during the move, sent when it let them go.
    held: int = 0

    def to_record(self) -> dict[str, Any]:
        return {
            "producer_id": self.producer_id,
            "topic": self.topic,
            "tenant": self.tenant,
            "epoch": self.epoch,
            "held": self.held,
            "acked_at": self.acked_at_ms,
            "offsets": [{"partition": p, "offset": o} for p, o in sorted(self.offsets.items())],
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DrainAck:
        return cls(
            producer_id=r["producer_id"],
            topic=r["topic"],
            tenant=r["tenant"],
            epoch=int(r["epoch"]),
            acked_at_ms=int(r["acked_at"]),
            held=int(r.get("held", 0)),
            offsets={int(x["partition"]): int(x["offset"]) for x in r.get("offsets") or ()},
        )
