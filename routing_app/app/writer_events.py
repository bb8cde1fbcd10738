"""The route writer's side of the events topic: appending each decision's event (counted, logged,
kept for the live page and told to the metrics), and holding a finished strict move's closing
event until the producers that held the tenant report what they held (control.drain: held
records).

Apart from the writer's core because when an event goes out is its own rule: per key, events stay
in decision order, so a held closing event goes out before the key's next event at the latest.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import faust

from routing_app.codec import AvroCodec
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import route_key

log = logging.getLogger(__name__)

RECENT_EVENTS = 200


class EventLog:
    def __init__(
        self,
        topic: faust.TopicT,
        codec: AvroCodec,
        releases: Any,
        counters: dict[str, int],
        release_grace_ms: int,
    ) -> None:
        self._topic = topic
        self._codec = codec
        self._releases = releases  # WriterTables.releases: the held closing events
        self._counters = counters
        self._release_grace_ms = release_grace_ms
        self.decisions_by_action: dict[str, int] = {}
        # The newest events this writer appended, newest last: for the live page and metrics.
        self.recent: deque[ReassignmentEvent] = deque(maxlen=RECENT_EVENTS)
        # Called with each event once the events topic took it (metrics count them).
        self.listeners: list[Callable[[ReassignmentEvent], None]] = []

    async def append(self, event: ReassignmentEvent) -> None:
        key = route_key(event.topic, event.tenant)
        await self._topic.send(key=key.encode("utf-8"), value=self._codec.encode(event.to_record()))
        self.recent.append(event)
        for listener in self.listeners:
            listener(event)
        if event.command_id is None:
            self._counters["decisions"] += 1
            self.decisions_by_action[event.action] = self.decisions_by_action.get(event.action, 0) + 1
        elif event.applied:
            self._counters["commands_applied"] += 1
        else:
            self._counters["commands_rejected"] += 1
        log_at = logging.INFO if event.applied else logging.WARNING
        log.log(
            log_at,
            "%s %s -> %s (epoch %s): %s",
            event.action,
            key,
            list(event.to_partitions),
            event.to_epoch,
            event.reason,
        )

    # -- closing events held for the producers' release reports ---------------------------------
    def hold(self, key: str, event: ReassignmentEvent, release_from: Sequence[str]) -> None:
        """Keeps the end of a move until ``release_from`` all reported, or for the grace."""
        self._releases[key] = {
            "event": event.to_record(),
            "epoch": event.to_epoch,
            "waiting": sorted(release_from),
            "reports": {},
            "until_ms": _now_ms() + max(self._release_grace_ms, 1000),
        }

    async def released(self, report: DrainAck) -> None:
        """A producer released a moved tenant: how many records it held during the move."""
        key = route_key(report.topic, report.tenant)
        pending = self._releases.get(key)
        if pending is None or pending["epoch"] != report.epoch or report.producer_id in pending["reports"]:
            # After the bound, or for a move this writer did not finish.
            self._counters["release_reports_late"] += 1
            return
        self._counters["release_reports"] += 1
        reports = {**pending["reports"], report.producer_id: report.held}
        self._releases[key] = {**pending, "reports": reports}
        if set(pending["waiting"]) <= set(reports):
            await self.flush(key)

    async def flush(self, key: str) -> None:
        """Appends the key's held closing event, if any, with what the reports said."""
        pending = self._releases.get(key)
        if pending is None:
            return
        del self._releases[key]
        event = ReassignmentEvent.from_record(pending["event"])
        reports: dict[str, int] = pending["reports"]
        observed = {
            **event.observed,
            "held_records": float(sum(reports.values())),
            "held_reports": float(len(reports)),
            "held_unreported": float(len(set(pending["waiting"]) - set(reports))),
        }
        await self.append(replace(event, observed=observed))

    async def flush_due(self, now_ms: int) -> None:
        """Appends the closing events whose producers did not all report in time."""
        for key in [k for k, v in self._releases.items() if v["until_ms"] <= now_ms]:
            await self.flush(key)


def _now_ms() -> int:
    return int(time.time() * 1000)
