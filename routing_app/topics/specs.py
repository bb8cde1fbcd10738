"""What each of the project's topics must look like. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from routing_app.config import Settings
from routing_app.routes.drain_ack import drain_ack_subject
from routing_app.windows.summary import WINDOW_SUMMARY_SCHEMA


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
    # Holds state that must survive a broker's loss (routes, decisions, commands): with 3 or more
    # replicas it gets min.insync.replicas, so acks=all means "on two brokers".
    durable: bool = False
    # The registry subjects of the records on it (see SUBJECT_COMPATIBILITY).
    subjects: tuple[str, ...] = ()

    def replicated(self, replicas: int | None) -> TopicSpec:
        """This spec as created with ``replicas`` copies (None: unknown, nothing added)."""
        extra = min_insync_config(replicas) if self.durable else {}
        if not extra or all(k in self.config for k in extra):
            return self
        return replace(self, config={**extra, **self.config})


# replication_factor 0: whatever the cluster creates by default (its brokers'
# default.replication.factor, as `kafka-topics.sh --create` without --replication-factor does).
# The local stack sets that to 1 with one broker and to 3 with `stack up --brokers 3`.
AUTO_REPLICATION = 0
# With 3+ replicas an acknowledged (acks=all) write is on at least two brokers, so losing any
# one loses nothing acknowledged, and writes go on while it is down.
MIN_INSYNC_REPLICAS = 2
MIN_INSYNC_FROM = 3


# Every reader must read every writer's records, both ways: a compacted routes topic keeps a
# route written with the first schema for as long as it does not change (new readers read old
# records), and in a rolling upgrade old producers read what new workers write (old readers
# read new records). BACKWARD checks only the first; it would accept a route schema without
# `epoch`, which no producer of today could read.
SUBJECT_COMPATIBILITY = "FULL_TRANSITIVE"
# Levels that already check both directions; anything else is raised to SUBJECT_COMPATIBILITY.
BOTH_WAYS_COMPATIBILITY = frozenset({"FULL", "FULL_TRANSITIVE"})


def min_insync_config(replicas: int | None) -> dict[str, str]:
    """The topic config that goes with ``replicas`` copies: min.insync.replicas from 3 on."""
    if replicas is None or replicas < MIN_INSYNC_FROM:
        return {}
    return {"min.insync.replicas": str(MIN_INSYNC_REPLICAS)}


def routing_topics(s: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(
            s.routes_topic,
            1,
            "routing table (compacted; one partition = one order of decisions)",
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": str(s.min_compaction_lag_ms)},
            # "compact,delete" would let retention drop routes that never changed.
            required={"cleanup.policy": "compact"},
            durable=True,
            subjects=(f"{s.routes_topic}-value",),
        ),
        TopicSpec(
            s.events_topic,
            1,
            "reassignment events (append-only history)",
            config={"cleanup.policy": "delete", "retention.ms": str(s.events_retention_ms)},
            required={"cleanup.policy": "delete"},
            durable=True,
            subjects=(f"{s.events_topic}-value",),
        ),
        TopicSpec(
            s.usage_topic,
            s.usage_partitions,
            "per-tenant usage reports from producers",
            config={"cleanup.policy": "delete", "retention.ms": str(6 * 3_600_000)},
            required={"cleanup.policy": "delete"},
            exact_partitions=False,
            subjects=(f"{s.usage_topic}-value",),
        ),
        TopicSpec(
            s.control_topic,
            1,
            "operator commands to the single route writer",
            config={"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3_600_000)},
            required={"cleanup.policy": "delete"},
            durable=True,
            # Two record types: operators' commands (<topic>-value), workers' window summaries.
            subjects=(f"{s.control_topic}-value", f"{s.control_topic}-{WINDOW_SUMMARY_SCHEMA}"),
        ),
        TopicSpec(
            s.answers_topic,
            1,
            "producers' answers to the route writer (drain acks, release reports, goodbyes)",
            config={"cleanup.policy": "delete", "retention.ms": str(24 * 3_600_000)},
            required={"cleanup.policy": "delete"},
            durable=True,
            subjects=(drain_ack_subject(s.answers_topic),),
        ),
    ]
