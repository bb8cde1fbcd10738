"""The figures of ``bench drain``: the drains' pauses as the writer recorded them on the events
topic, and what the checker counted lost, duplicated and out of order.

Apart from the scenario because it runs once the traffic stopped and reads the events topic on
its own.
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from routing_app.bench.drain_checker import lost_per_tenant
from routing_app.bench.drain_traffic import CRASHY, SHARDED, STRICT, Traffic
from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.routes.model import RouteStatus


def drain_figures(
    s: Settings,
    traffic: Traffic,
    applied: list[tuple[str, ReassignmentEvent]],
    left: int,
    restart_producer: bool,
) -> dict[str, Any]:
    """The benchmark's result: the moves, their pauses, and what the checker saw."""
    checker = traffic.checker
    timeouts: list[str] = []
    pauses = _pauses(s, {e.tenant for _, e in applied}, timeouts)
    # Without the move that waited for the killed producer to expire (producer_expiry_ms).
    answered: list[float] = []
    live_pauses = _pauses(s, {e.tenant for _, e in applied} - {CRASHY}, answered=answered)
    strict_tenants = set(STRICT) | {SHARDED, CRASHY}
    lost = {t: n for t, n in lost_per_tenant(traffic.sent, checker).items() if n}
    crashed = checker.span.get((CRASHY, "crashed"))
    after = checker.span.get((CRASHY, "after"))
    return {
        "moves": len(applied),
        "strict_moves": sum(1 for _, e in applied if e.status == RouteStatus.DRAINING.value),
        "kinds": sorted({k for k, _ in applied}),
        **_pause_figures(pauses, live_pauses, answered),
        "records": traffic.produced,
        "received": checker.received,
        "unsent_at_close": left,
        "lost_strict": sum(n for t, n in lost.items() if t in strict_tenants),
        "duplicated_strict": sum(n for t, n in checker.duplicated.items() if t in strict_tenants),
        "reordered_strict": sum(n for t, n in checker.reordered.items() if t in strict_tenants),
        "lost_relaxed": sum(n for t, n in lost.items() if t not in strict_tenants),
        "reordered_relaxed": sum(n for t, n in checker.reordered.items() if t not in strict_tenants),
        "producer_restarted_mid_drain": restart_producer,
        # Every record of the killed producer was consumed before the first one sent after
        # its tenant moved (the move waited for it to expire).
        "crashed_producer_records": len(checker.seen.get((CRASHY, "crashed"), ())),
        "crashed_before_moved": bool(crashed and after and crashed[1] < after[0]),
        "drains_timed_out": len(timeouts),
        "timeouts": timeouts,
    }


def _pause_figures(pauses: list[float], live_pauses: list[float], answered: list[float]) -> dict[str, Any]:
    """Percentiles of the drains' pauses, and the pauses themselves for the report's plot."""
    return {
        "pause_p50_ms": round(statistics.median(pauses), 1) if pauses else None,
        "pause_p99_ms": round(_percentile(pauses, 0.99), 1) if pauses else None,
        "pause_max_ms": round(max(pauses), 1) if pauses else None,
        "pause_p50_ms_live_producers": round(statistics.median(live_pauses), 1) if live_pauses else None,
        "pause_p99_ms_live_producers": round(_percentile(live_pauses, 0.99), 1) if live_pauses else None,
        # Of that pause, the producers' part: from the draining write to the last answer (the
        # roll call over); the rest is the consumer group's (the checker commits every 100 ms).
        "answered_p50_ms": round(statistics.median(answered), 1) if answered else None,
        "answered_p99_ms": round(_percentile(answered, 0.99), 1) if answered else None,
        # Every drain's pause in the events topic's order, for the distribution (``bench
        # report`` plots it); the second list leaves out the move that waited for the killed
        # producer to expire.
        "pauses_ms": [round(p, 1) for p in pauses],
        "pauses_ms_live_producers": [round(p, 1) for p in live_pauses],
    }


def _pauses(
    s: Settings, tenants: set[str], timeouts: list[str] | None = None, answered: list[float] | None = None
) -> list[float]:
    """pause_ms of every drain's end on the events topic; the reasons of those that timed out
    go to ``timeouts``, the producers' part of each pause (answered_ms) to ``answered``."""
    codec = AvroCodec(registry_client(s.registry_config()), EVENT_SCHEMA, s.events_topic)
    consumer = Consumer(
        client_settings(s.kafka, **{"group.id": f"bench-drain-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    pauses: list[float] = []
    try:
        tp = TopicPartition(s.events_topic, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(s.events_topic, 0, 0)])
        position = 0
        while position < high:
            for message in consumer.consume(500, 1.0):
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                try:
                    event = ReassignmentEvent.from_record(codec.decode(message.value()))
                except (DecodeError, KeyError, ValueError):
                    continue
                if event.action.startswith("drain-") and event.tenant in tenants:
                    pauses.append(event.observed.get("pause_ms", 0.0))
                    if answered is not None and "answered_ms" in event.observed:
                        answered.append(event.observed["answered_ms"])
                    if event.action != "drain-complete" and timeouts is not None:
                        timeouts.append(f"{event.tenant}: {event.reason}")
    finally:
        consumer.close()
    return pauses


def _percentile(values: list[float], q: float) -> float:
    """Nearest rank: a pause that happened, not one interpolated between two."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
