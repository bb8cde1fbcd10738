"""Per-tenant usage in tumbling windows, closed by stream time and a timer. Worker-side I/O.

Every worker runs this for the usage partitions it owns. One usage record carries the reports of
many tenants (one producer, one interval, one usage partition). Totals live in a
WindowAccumulator that the closing reads from, and in a windowed Table, one write per record:
the record's producer's totals in the window so far, so that a restarted or new owner gets them
back from the changelog. Closed windows go to the control topic as WindowSummary records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteError, parse_route_key, route_key
from routing_app.usage import usage_of
from routing_app.usage.batch import REJECTION_REASONS, UsageLimits
from routing_app.windows import (
    WindowAccumulator,
    WindowCloser,
    WindowSummary,
    stored_totals,
    window_start_of,
)
from routing_app.windows.early import SurgeDetector, SurgeRules, early_summary

log = logging.getLogger(__name__)

# Windowed-table keys: "P<usage partition>/<producer id>" holds what one producer reported to
# one usage partition in the window so far (WindowAccumulator.add_usage). Written before usage
# records carried many tenants, and still read back: "T<topic>/<tenant>" for a tenant,
# "R<topic>/<partition>" for a residual.
_PRODUCER, _TENANT, _RESIDUAL = "P", "T", "R"
# Producers whose refused usage was logged (one line per producer and reason): bounded, since
# forged records can name any number of producers.
_MAX_TOLD = 1_000


def usage_limits(settings: Settings) -> UsageLimits:
    """The bounds of a usage report for these settings (``usage_max_*``, 0 for the default);
    the clock skew allowed defaults to ``window_grace_ms``, which is what grace is for (a
    report within it cannot close a window before its end)."""
    default = UsageLimits()

    def setting(value: int, fallback: float) -> int:
        return int(fallback if value <= 0 else value)

    return UsageLimits(
        max_records_per_s=setting(settings.usage_max_records_per_s, default.max_records_per_s),
        max_bytes_per_s=setting(settings.usage_max_bytes_per_s, default.max_bytes_per_s),
        max_future_ms=setting(settings.usage_max_clock_skew_ms, settings.window_grace_ms),
        max_interval_ms=setting(settings.usage_max_interval_ms, default.max_interval_ms),
        window_ms=int(settings.window_s * 1000),
    )


def surge_rules(settings: Settings) -> SurgeRules:
    return SurgeRules(
        factor=settings.early_surge_factor,
        min_rate=settings.early_min_rate,
        confirm=settings.early_confirm_intervals,
        cooldown_ms=settings.early_cooldown_ms,
    )


def producer_key(usage_partition: int, producer_id: str) -> str:
    return f"{_PRODUCER}{usage_partition}/{producer_id}"


def parse_producer_key(key: str) -> tuple[int, str]:
    partition, sep, producer_id = key[1:].partition("/")
    if key[:1] != _PRODUCER or not sep:
        raise ValueError(f"not a producer window key: {key!r}")
    return int(partition), producer_id


class UsageWindows:
    def __init__(
        self,
        settings: Settings,
        usage_codec: AvroCodec,
        summary_codec: AvroCodec,
        table: Any,
        control_topic: faust.TopicT,
        worker_id: str,
        ready: Callable[[], bool] | None = None,
        limits: UsageLimits | None = None,
    ) -> None:
        """``ready`` says whether the table holds what its changelog holds (no rebalance or
        recovery under way): only then can a newly assigned partition's windows be restored.
        ``limits``: what one report may claim (default: ``usage_limits(settings)``)."""
        self._ready = ready or (lambda: True)
        self._settings = settings
        self.limits = limits or usage_limits(settings)
        self._told: set[tuple[str, str]] = set()
        self._usage = usage_codec
        self._summaries = summary_codec
        self._table = table
        self._control = control_topic
        self.worker_id = worker_id
        self.size_ms = int(settings.window_s * 1000)
        self.closer = WindowCloser(self.size_ms, settings.window_grace_ms, settings.window_idle_ms)
        self.windows = WindowAccumulator()
        # Surges seen before their window closes (the early path); None when it is off.
        self.surges = SurgeDetector(surge_rules(settings)) if settings.early_reaction else None
        self._last_event_wall: dict[int, int] = {}
        self._stale_after_ms = 3 * self.size_ms + settings.window_grace_ms
        self._owned: set[int] = set()
        # usage_records: Kafka records decoded; usage_reports: the tenant reports they carried
        # (each record holds many); reports_aggregated: those that went into an open window.
        self.counters: dict[str, int] = {
            "usage_records": 0,
            "usage_reports": 0,
            "reports_aggregated": 0,
            "usage_undecodable": 0,
            "late_reports": 0,
            "duplicate_reports": 0,
            "stale_reports": 0,
            "windows_closed": 0,
            "windows_restored": 0,
            "summary_errors": 0,
            "rejected_reports": 0,
            "early_summaries": 0,
            **dict.fromkeys(REJECTION_REASONS, 0),
        }

    # -- the agent's side: one usage record (the reports of many tenants) ---------------------
    async def on_report(self, raw: bytes | None, partition: int, offset: int = -1) -> None:
        try:
            record = self._usage.decode(raw)
            producer_id = record["producer_id"]
            interval_start, interval_end = int(record["interval_start"]), int(record["interval_end"])
            usage = usage_of(record)
            if not isinstance(producer_id, str):
                raise TypeError("producer_id is not a string")
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            self.counters["usage_undecodable"] += 1
            log.error("usage partition %d: undecodable record skipped: %s", partition, exc)
            return
        self._own(partition)
        reports = len(usage)
        self.counters["usage_records"] += 1
        self.counters["usage_reports"] += reports
        now = _now_ms()
        problem = self.limits.interval_problem(interval_start, interval_end, now)
        if problem is not None:
            # Counted in no window and moving no stream time: a report stamped an hour ahead
            # used to close every window up to then. The producer is alive all the same (its
            # reports are the heartbeats drains wait on), so it counts as seen now.
            self._refuse(partition, producer_id, problem[0], problem[1], reports)
            self._saw(partition, producer_id, now)
            return
        if interval_end < now - self._stale_after_ms:
            # A backlog (a new worker group, a long outage) says nothing about traffic now and
            # would make the planner replay history; it must not move stream time either.
            self.counters["stale_reports"] += reports
            return
        self._last_event_wall[partition] = now
        # Windows by the interval's end: the reports count where their traffic finished.
        event_time = interval_end - 1
        start = self.closer.observe(partition, event_time)
        if self.closer.is_closed(partition, start):
            self.counters["late_reports"] += reports
        elif 0 <= offset <= self.windows.applied_offset(partition, start, producer_id):
            # Read again after a rebalance: faust resumes at the last commit, and the totals
            # (here, or restored from the changelog) already hold this record.
            self.counters["duplicate_reports"] += reports
        else:
            usage, refused = self.limits.bound(usage, interval_start, interval_end)
            for reason, what in refused:
                self._refuse(partition, producer_id, reason, what, 1)
            totals = self.windows.add_usage(partition, start, producer_id, usage, offset)
            self.counters["reports_aggregated"] += len(usage)
            # One table write per record: this producer's totals in the window so far. It goes
            # to the changelog partition of the current event, the usage partition of every
            # tenant in it, where a new owner of the partition finds it (_restore).
            self._table[producer_key(partition, producer_id)][self._range(start)] = stored_totals(
                totals, offset
            )
            if self.surges is not None:
                for surge in self.surges.observe(partition, producer_id, interval_start, interval_end, usage):
                    await self._send_summary(
                        early_summary(surge, self._settings.usage_partitions, self.worker_id),
                        MessageKind.EARLY_SUMMARY,
                    )
                    self.counters["early_summaries"] += 1
                    log.info(
                        "usage partition %d: %s/%s surges to %.0f/s (baseline %.0f/s): early summary sent",
                        partition,
                        surge.topic,
                        surge.tenant,
                        surge.records_per_s,
                        surge.baseline_per_s,
                    )
        await self._close_due(partition, now)

    def _refuse(self, partition: int, producer_id: str, reason: str, what: str, reports: int) -> None:
        self.counters[reason] += reports
        self.counters["rejected_reports"] += reports
        told = (producer_id, reason)
        if told in self._told or len(self._told) >= _MAX_TOLD:
            return
        self._told.add(told)
        log.warning(
            "usage partition %d: usage of producer %r refused (%s; counted in %s, "
            "further ones from it are only counted): %s",
            partition,
            producer_id[:200],
            reason,
            f"routing_usage_{reason}_total",
            what,
        )

    def _saw(self, partition: int, producer_id: str, now: int) -> None:
        """The producer is alive: its id goes into the summary of the window open now."""
        start = window_start_of(now, self.size_ms)
        if not self.closer.is_closed(partition, start):
            self.closer.reopen(partition, start)
            self.windows.saw_producer(partition, start, producer_id)

    def _range(self, start: int) -> Any:
        """The table's window range holding the window that starts at ``start`` (ms)."""
        return self._table.table.window.current((start + self.size_ms / 2) / 1000)

    # -- the timer's side: quiet partitions, assignment changes -------------------------------
    async def on_tick(self, assigned: set[int]) -> None:
        if not self._ready():
            # The assignment may be half-done and the table still recovering: owning a partition
            # now would restore its windows from an incomplete table, once and for all.
            return
        for partition in self._owned - assigned:
            self._owned.discard(partition)
            self.closer.forget(partition)
            self.windows.forget(partition)
            self._last_event_wall.pop(partition, None)
            if self.surges is not None:
                self.surges.forget(partition)
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
            if start < oldest_open or not isinstance(key, str) or not key or not value:
                continue
            try:
                if key[0] == _PRODUCER:
                    owner, producer_id = parse_producer_key(key)
                    if owner != partition or self.closer.is_closed(partition, start):
                        continue
                    self.closer.reopen(partition, start)
                    if self.windows.restore_producer(partition, start, producer_id, value):
                        restored += 1
                    continue
                restored += self._restore_v1(partition, start, key, value)
            except (RouteError, KeyError, TypeError, ValueError) as exc:
                log.warning("usage partition %d: unreadable window entry %r skipped: %s", partition, key, exc)
        if restored:
            self.counters["windows_restored"] += restored
            log.info("usage partition %d: restored %d window entries from the changelog", partition, restored)

    def _restore_v1(self, partition: int, start: int, key: str, value: Any) -> int:
        """A per-tenant entry written before usage records carried many tenants."""
        if key[0] not in (_TENANT, _RESIDUAL):
            return 0
        topic, rest = parse_route_key(key[1:])
        # The partition the producer sent it to (see UsageReporter.send in client/reporting.py).
        producer_key_ = key[1:] if key[0] == _TENANT else route_key(topic, "")
        if java_partition(producer_key_.encode(), self._settings.usage_partitions) != partition:
            return 0
        if self.closer.is_closed(partition, start):
            return 0
        self.closer.reopen(partition, start)
        if key[0] == _TENANT:
            self.windows.add(partition, start, topic, rest, -1, int(value[0]), int(value[1]))
        else:
            self.windows.add(partition, start, topic, "", int(rest), int(value[0]), int(value[1]))
        return 1

    async def _close_due(self, partition: int, now: int) -> None:
        for start, closed_by in self.closer.due(partition, now, self._last_event_wall.get(partition)):
            summary = self.windows.close(
                partition, start, self.size_ms, self._settings.usage_partitions, closed_by, self.worker_id
            )
            if self.surges is not None:
                self.surges.window_closed(summary)
            if not await self._send_summary(summary, MessageKind.WINDOW_SUMMARY):
                continue
            self.counters["windows_closed"] += 1
            log.debug(
                "closed window %d of usage partition %d by %s (%d tenants)",
                start,
                partition,
                closed_by,
                len(summary.tenants),
            )

    async def _send_summary(self, summary: WindowSummary, kind: MessageKind) -> bool:
        try:
            value = self._summaries.encode(summary.to_record())
        except (ValueError, OverflowError) as exc:
            # Never the agent's end: this window's summary is lost, the planner plans it
            # without this partition (planner_max_wait_ms), and the next ones go on.
            self.counters["summary_errors"] += 1
            log.error(
                "usage partition %d: summary of window %d not sent: %s",
                summary.usage_partition,
                summary.window_start,
                exc,
            )
            return False
        await self._control.send(value=value, headers=[kind.header])
        return True


def _now_ms() -> int:
    return int(time.time() * 1000)
