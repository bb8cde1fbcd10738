"""Per-tenant usage in tumbling windows, closed by stream time and a timer. Worker-side I/O.

Every worker runs this for the usage partitions it owns. Totals live in a windowed Table (so a
restarted or new owner gets them back from the changelog) and in a WindowAccumulator that the
closing reads from. Closed windows go to the control topic as WindowSummary records.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.routes.model import RouteError, parse_route_key, route_key
from routing_app.usage import UsageReport
from routing_app.windows import WindowAccumulator, WindowCloser, window_start_of

log = logging.getLogger(__name__)

SUMMARY_HEADER = ("routing.type", b"window-summary")
# Windowed-table keys: "T<topic>/<tenant>" for a tenant, "R<topic>/<partition>" for a residual.
_TENANT, _RESIDUAL = "T", "R"


def table_key(report: UsageReport) -> str:
    if report.tenant:
        return _TENANT + route_key(report.topic, report.tenant)
    return _RESIDUAL + route_key(report.topic, str(report.partition))


class UsageWindows:
    def __init__(self, settings: Settings, usage_codec: AvroCodec, summary_codec: AvroCodec,
                 table: Any, control_topic: faust.TopicT, worker_id: str) -> None:
        self._settings = settings
        self._usage = usage_codec
        self._summaries = summary_codec
        self._table = table
        self._control = control_topic
        self.worker_id = worker_id
        self.size_ms = int(settings.window_s * 1000)
        self.closer = WindowCloser(self.size_ms, settings.window_grace_ms, settings.window_idle_ms)
        self.windows = WindowAccumulator()
        self._last_event_wall: dict[int, int] = {}
        self._stale_after_ms = 3 * self.size_ms + settings.window_grace_ms
        self._owned: set[int] = set()
        self.counters: dict[str, int] = {"usage_reports": 0, "usage_undecodable": 0,
                                         "late_reports": 0, "stale_reports": 0, "windows_closed": 0,
                                         "windows_restored": 0}

    # -- the agent's side: one usage report ---------------------------------------------------
    async def on_report(self, raw: bytes | None, partition: int) -> None:
        try:
            report = UsageReport.from_record(self._usage.decode(raw))
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            self.counters["usage_undecodable"] += 1
            log.error("usage partition %d: undecodable report skipped: %s", partition, exc)
            return
        self._own(partition)
        self.counters["usage_reports"] += 1
        now = _now_ms()
        if report.interval_end < now - self._stale_after_ms:
            # A backlog (a new worker group, a long outage) says nothing about traffic now and
            # would make the planner replay history; it must not move stream time either.
            self.counters["stale_reports"] += 1
            return
        self._last_event_wall[partition] = now
        # Windows by the interval's end: the report counts where its traffic finished.
        event_time = report.interval_end - 1
        start = self.closer.observe(partition, event_time)
        if self.closer.is_closed(partition, start):
            self.counters["late_reports"] += 1
        else:
            self.windows.add(partition, start, report.topic, report.tenant, report.partition,
                             report.records, report.bytes)
            self.windows.saw_producer(partition, start, report.producer_id)
            key = table_key(report)
            current = self._table[key].current()
            self._table[key] = [current[0] + report.records, current[1] + report.bytes]
        await self._close_due(partition, now)

    # -- the timer's side: quiet partitions, assignment changes -------------------------------
    async def on_tick(self, assigned: set[int]) -> None:
        for partition in self._owned - assigned:
            self._owned.discard(partition)
            self.closer.forget(partition)
            self.windows.forget(partition)
            self._last_event_wall.pop(partition, None)
        for partition in sorted(assigned - self._owned):
            self._own(partition)
        now = _now_ms()
        for partition in sorted(self._owned):
            await self._close_due(partition, now)

    def _own(self, partition: int) -> None:
        if partition in self._owned:
            return
        self._owned.add(partition)
        self.closer.track(partition)
        self._restore(partition)

    def _restore(self, partition: int) -> None:
        """Re-opens windows of the partition that the table holds and nobody closed here."""
        restored = 0
        oldest_open = _now_ms() - 3 * self.size_ms
        # The wrapper's underlying table holds (key, (start_s, end_s)) -> value.
        for window_key, value in list(self._table.table.data.items()):
            key, (start_s, _) = window_key
            start = window_start_of(round(start_s * 1000), self.size_ms)
            if start < oldest_open or not isinstance(key, str) or not value:
                continue
            try:
                topic, rest = parse_route_key(key[1:])
            except RouteError:
                continue
            # The partition the producer sent it to (see RoutingProducer._report_usage).
            producer_key = key[1:] if key[0] == _TENANT else route_key(topic, "")
            if java_partition(producer_key.encode(), self._settings.usage_partitions) != partition:
                continue
            if self.closer.is_closed(partition, start):
                continue
            self.closer.reopen(partition, start)
            if key[0] == _TENANT:
                self.windows.set_tenant(partition, start, topic, rest, int(value[0]),
                                        int(value[1]))
            else:
                self.windows.add(partition, start, topic, "", int(rest), int(value[0]),
                                 int(value[1]))
            restored += 1
        if restored:
            self.counters["windows_restored"] += restored
            log.info("usage partition %d: restored %d window entries from the changelog",
                     partition, restored)

    async def _close_due(self, partition: int, now: int) -> None:
        for start, closed_by in self.closer.due(partition, now,
                                                self._last_event_wall.get(partition)):
            summary = self.windows.close(partition, start, self.size_ms,
                                         self._settings.usage_partitions, closed_by,
                                         self.worker_id)
            await self._control.send(value=self._summaries.encode(summary.to_record()),
                                     headers=[SUMMARY_HEADER])
            self.counters["windows_closed"] += 1
            log.debug("closed window %d of usage partition %d by %s (%d tenants)", start,
                      partition, closed_by, len(summary.tenants))


def _now_ms() -> int:
    return int(time.time() * 1000)
