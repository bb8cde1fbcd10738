"""The route writer's side of the events topic: appending each decision's event (counted, logged,
kept for the live page and told to the metrics), writing each route change ahead of its route and
event, and holding a finished strict move's closing event until the producers that held the
tenant report what they held (control.drain: held records).

Apart from the writer's core because when an event goes out is its own rule: per key, events stay
in decision order, so a held closing event goes out before the key's next event at the latest.

The write-ahead: a route change goes to the routes topic, the writer's tables and the events
topic, which no transaction ties together, and a worker killed at any instant leaves on the broker
any subset of what it had not seen acknowledged (WriterTables.acks). So the change (its route and
its event) is first kept in a table (``releases``) and acknowledged there; only then is the route
written; the entry goes only once the event, and the route before it, are acknowledged. A worker
that takes the writer over finds every change whose event might be missing
(RouteWriter.recover): it writes the route where the table lacks it and appends the event. An
event appended twice keeps its event id, and the audit counts it once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import faust

from routing_app.app.writer_tables import Acknowledgements
from routing_app.codec import AvroCodec
from routing_app.control import Decision
from routing_app.routes import Route
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
        acks: Acknowledgements,
    ) -> None:
        self._topic = topic
        self._codec = codec
        self._releases = releases  # WriterTables.releases: the changes written ahead
        self._counters = counters
        # How long a closing event waits for the producers' release reports.
        self._grace_ms = max(release_grace_ms, 1000)
        self._acks = acks
        self.decisions_by_action: dict[str, int] = {}
        # The newest events this writer appended, newest last: for the live page and metrics.
        self.recent: deque[ReassignmentEvent] = deque(maxlen=RECENT_EVENTS)
        # Called with each event once the events topic took it (metrics count them).
        self.listeners: list[Callable[[ReassignmentEvent], None]] = []

    async def append(self, event: ReassignmentEvent) -> None:
        key = route_key(event.topic, event.tenant)
        sent = await self._topic.send(key=key.encode("utf-8"), value=self._codec.encode(event.to_record()))
        if sent is not None:
            self._acks.add(sent)
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

    # -- route changes written ahead --------------------------------------------------------------
    async def stage(self, key: str, decision: Decision, release_from: Sequence[str] = ()) -> None:
        """Keeps the route change until its event is out, and returns once the broker has it:
        the caller writes the route only then. With ``release_from`` (the end of a move) the
        event waits for those producers' release reports, or for the grace."""
        event = decision.event
        now = _now_ms()
        self._releases[key] = {
            "event": event.to_record(),
            "epoch": event.to_epoch,
            "waiting": sorted(release_from),
            "reports": {},
            "until_ms": now + self._grace_ms if release_from else now,
            "route": None if decision.route is None else decision.route.to_record(),
            "tombstone": decision.tombstone,
        }
        try:
            await self._acks.wait()
        except Exception:
            # Not known to be on the broker: the route is not written, the change is given up
            # (a successor that finds the entry all the same writes it as decided).
            del self._releases[key]
            raise

    def staged(self) -> dict[str, Decision]:
        """The route changes written ahead whose events are not known to be out (at takeover:
        the ones the writer before left). An entry of a version before the write-ahead names
        no route: its route was written with it."""
        found = {}
        for key, pending in self._releases.items():
            route = pending.get("route")
            found[key] = Decision(
                ReassignmentEvent.from_record(pending["event"]),
                route=None if route is None else Route.from_record(route),
                tombstone=bool(pending.get("tombstone")),
            )
        return found

    async def resume(self, now_ms: int) -> None:
        """At takeover, once the staged routes are in the table: appends the events of the
        changes not waiting for release reports; a closing event that is waits its grace again,
        as the reports the writer before had not read are read again now."""
        for key, pending in list(self._releases.items()):
            if not pending["waiting"]:
                await self.flush(key)
            elif pending["until_ms"] < now_ms + self._grace_ms:
                self._releases[key] = {**pending, "until_ms": now_ms + self._grace_ms}

    def discard(self, key: str) -> None:
        """A change whose route was never written (see RouteWriter.recover): no event either."""
        del self._releases[key]

    # -- closing events held for the producers' release reports ---------------------------------
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
        """Appends the key's change's event, if one is kept (a held one with what the reports
        said), and forgets the change once the broker has the event."""
        pending = self._releases.get(key)
        if pending is None:
            return
        event = ReassignmentEvent.from_record(pending["event"])
        if pending["waiting"]:
            reports: dict[str, int] = pending["reports"]
            observed = {
                **event.observed,
                "held_records": float(sum(reports.values())),
                "held_reports": float(len(reports)),
                "held_unreported": float(len(set(pending["waiting"]) - set(reports))),
            }
            event = replace(event, observed=observed)
        await self.append(event)
        # Only once acknowledged (the route was written before it): a writer killed before
        # leaves its successor the entry, and the event goes out again under the same id.
        await self._acks.wait()
        del self._releases[key]

    async def flush_due(self, now_ms: int) -> None:
        """Appends the closing events whose producers did not all report in time."""
        for key in [k for k, v in self._releases.items() if v["until_ms"] <= now_ms]:
            await self.flush(key)


def _now_ms() -> int:
    return int(time.time() * 1000)
