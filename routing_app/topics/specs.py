"""What each of the project's topics must look like. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing_app.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    purpose: str
    # Written at creation; a difference later is reported but tolerated.
    config: dict[str, str] = field(default_factory=dict)
    # Must hold exactly; a difference makes workers refuse to start.
    required: dict[str, str] = field(default_factory=dict)
    exact_partitions: bool = True


def routing_topics(s: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(
            s.routes_topic, 1, "routing table (compacted; one partition = one order of decisions)",
            config={"cleanup.policy": "compact",
                    "min.compaction.lag.ms": str(s.min_compaction_lag_ms)},
            # "compact,delete" would let retention drop routes that never changed.
            required={"cleanup.policy": "compact"},
        ),
        TopicSpec(
            s.events_topic, 1, "reassignment events (append-only history)",
            config={"cleanup.policy": "delete", "retention.ms": str(s.events_retention_ms)},
            required={"cleanup.policy": "delete"},
        ),
        TopicSpec(
            s.usage_topic, s.usage_partitions, "per-tenant usage reports from producers",
            config={"cleanup.policy": "delete", "retention.ms": str(6 * 3_600_000)},
            required={"cleanup.policy": "delete"},
            exact_partitions=False,
        ),
        TopicSpec(
            s.control_topic, 1, "operator commands to the single route writer",
            config={"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3_600_000)},
            required={"cleanup.policy": "delete"},
        ),
    ]
