"""Surges seen before their window closes: the early path's detector. Pure and deterministic.

A flash crowd shows in the producers' usage reports (every usage interval, ~1 s) long before a
10 s window closes. The usage worker feeds every report of its usage partitions here; a tenant
whose rate, summed over producers, stays above its surge level for ``confirm`` consecutive
report intervals of one producer is a ``Surge``, which the worker sends to the planner at once
(an early summary). Windows still decide everything else.

The surge level of a tenant is ``max(factor x its baseline, min_rate)``. Its baseline is its
rate in the last window its usage partition closed (every producer's reports of a tenant meet on
one usage partition, so that window is the tenant's whole rate), or, within ``cooldown_ms`` of a
surge, the rate that surge was sent with: a tenant fires once per surge, and again within the
cool-down only if it grows by ``factor`` once more. A single spike does not fire (the next
interval is below the level again), and noise on a steady tenant stays well under ``factor`` x
its rate. Before its usage partition closed a window here, a tenant has no baseline and never
fires (a worker that just took a partition over knows nothing of its traffic yet).

Its rate is each producer's latest interval (records / the interval's length), summed: the
trend now, not a window's average. A producer that stopped reporting the tenant drops out once
it missed one of its intervals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from routing_app.windows.summary import UsageRow, WindowSummary

TenantKey = tuple[str, str]  # (data topic, tenant)


@dataclass(frozen=True)
class SurgeRules:
    # The recent rate must reach this many times the tenant's baseline...
    factor: float = 2.0
    # ... and at least this many records per second (small tenants doubling are no crowd).
    min_rate: float = 100.0
    # Report intervals in a row above the level: one interval above is a spike, not a surge.
    confirm: int = 2
    # After a surge, the tenant fires again only if it grows by `factor` over that surge.
    cooldown_ms: int = 30_000


@dataclass(frozen=True)
class Surge:
    """A tenant confirmed above its surge level: what the early summary tells the planner."""

    usage_partition: int
    topic: str
    tenant: str
    records_per_s: float  # its latest rate, all producers
    bytes_per_s: float
    top_stream_per_s: float  # of its heaviest ordered stream (records_per_s when unknown)
    streams: int
    baseline_per_s: float
    since_ms: int  # the start of the first interval above the level
    until_ms: int  # the end of the interval that confirmed it


# One producer's latest report of a tenant: (interval end ms, interval ms, records, bytes,
# heaviest stream's records, streams). A tuple of what the row holds: one is made per tenant
# per usage record, on the worker's hot path.
_ProducerRate = tuple[int, int, int, int, int, int]


def _rate(seen: _ProducerRate, index: int) -> float:
    return seen[index] * 1000.0 / seen[1]


class _Tenant:
    __slots__ = (
        "above_reports",
        "above_since_ms",
        "fired_ms",
        "fired_rate",
        "producers",
        "total",
        "usage_partition",
    )

    def __init__(self, usage_partition: int) -> None:
        self.usage_partition = usage_partition
        self.producers: dict[str, _ProducerRate] = {}
        # Sum of the producers' latest rates, kept as reports come: an upper bound (a producer
        # that stopped still counts until the exact sum drops it), so below the level it
        # settles the common case without a look at every producer.
        self.total = 0.0
        self.above_since_ms: int | None = None
        # Intervals above the level in the current streak, per producer (with the end of the
        # last one counted): a surge is confirmed by one producer's consecutive intervals, so
        # another producer's report falling within one spiky interval cannot confirm it.
        self.above_reports: dict[str, tuple[int, int]] = {}
        self.fired_ms: int | None = None
        self.fired_rate = 0.0


class SurgeDetector:
    def __init__(self, rules: SurgeRules | None = None) -> None:
        self.rules = rules or SurgeRules()
        self._tenants: dict[TenantKey, _Tenant] = {}
        # Rates of the last closed window, per usage partition that closed one here.
        self._baselines: dict[int, dict[TenantKey, float]] = {}

    def window_closed(self, summary: WindowSummary) -> None:
        """A window of the partition closed: its tenants' rates are their baselines now."""
        seconds = max(summary.window_end - summary.window_start, 1) / 1000.0
        baselines = self._baselines[summary.usage_partition] = {
            key: records / seconds for key, (records, _) in summary.tenants.items()
        }
        # Tenants that sent nothing in the window, in no streak and no cool-down, are
        # forgotten (the detector holds the partition's recent tenants, not every one ever
        # seen), and so are producers that reported none of the window.
        horizon = summary.window_end - self.rules.cooldown_ms
        for key, state in list(self._tenants.items()):
            if state.usage_partition != summary.usage_partition:
                continue
            if (
                key not in baselines
                and state.above_since_ms is None
                and (state.fired_ms is None or state.fired_ms < horizon)
            ):
                del self._tenants[key]
                continue
            for producer_id in [p for p, seen in state.producers.items() if seen[0] < summary.window_start]:
                state.total -= _rate(state.producers.pop(producer_id), 2)

    def forget(self, usage_partition: int) -> None:
        """The partition moved to another worker (and its tenants with it)."""
        self._baselines.pop(usage_partition, None)
        for key in [k for k, t in self._tenants.items() if t.usage_partition == usage_partition]:
            del self._tenants[key]

    def observe(
        self,
        usage_partition: int,
        producer_id: str,
        interval_start_ms: int,
        interval_end_ms: int,
        rows: Iterable[UsageRow],
    ) -> list[Surge]:
        """One producer's usage record of one interval; returns the surges it confirms.

        On the usage worker's hot path (every tenant of every record): the common case, a
        tenant below the floor or its level and in no streak, costs a few dict operations."""
        baselines = self._baselines.get(usage_partition)
        if baselines is None:
            return []
        interval_ms = max(interval_end_ms - interval_start_ms, 1)
        per_s = 1000.0 / interval_ms
        tenants, floor, factor = self._tenants, self.rules.min_rate, self.rules.factor
        # Every row first, then each tenant once: a tenant on several partitions (shards) has a
        # row for each, and is judged on their sum.
        touched: list[tuple[TenantKey, _Tenant]] = []
        for topic, tenant, _, records, nbytes, top, streams in rows:
            if not tenant:
                continue  # a residual: no tenant to move
            key = (topic, tenant)
            state = tenants.get(key)
            if state is None:
                state = tenants[key] = _Tenant(usage_partition)
            old = state.producers.get(producer_id)
            if old is None:
                state.total += records * per_s
                touched.append((key, state))
            elif old[0] == interval_end_ms:
                # Another row of the same record: the tenant's share of another partition.
                records, nbytes = records + old[2], nbytes + old[3]
                top, streams = max(top, old[4]), streams + old[5]
                state.total += (records - old[2]) * per_s
            else:
                state.total += records * per_s - _rate(old, 2)
                touched.append((key, state))
            state.producers[producer_id] = (interval_end_ms, interval_ms, records, nbytes, top, streams)
        surges = []
        for key, state in touched:
            if state.above_since_ms is None and (
                state.total < floor or state.total < factor * baselines.get(key, 0.0)
            ):
                continue
            surge = self._judge(
                key, state, producer_id, baselines.get(key, 0.0), interval_start_ms, interval_end_ms
            )
            if surge is not None:
                surges.append(surge)
        return surges

    def _judge(
        self, key: TenantKey, state: _Tenant, producer_id: str, window_rate: float, start_ms: int, end_ms: int
    ) -> Surge | None:
        rules = self.rules
        # A producer that missed a report of the tenant (its interval and a half since the
        # last one) stopped sending it: reports name only tenants that sent something.
        for other, seen in list(state.producers.items()):
            if end_ms - seen[0] > 1.5 * seen[1]:
                del state.producers[other]
        producers = state.producers.values()
        rate = state.total = sum(_rate(p, 2) for p in producers)
        cooling = state.fired_ms is not None and end_ms - state.fired_ms < rules.cooldown_ms
        baseline = max(window_rate, state.fired_rate) if cooling else window_rate
        if rate < max(rules.factor * baseline, rules.min_rate):
            state.above_since_ms = None
            state.above_reports.clear()
            return None
        if state.above_since_ms is None:
            state.above_since_ms = start_ms
        count, counted_end = state.above_reports.get(producer_id, (0, -1))
        if counted_end != end_ms:  # an interval counts once, however often it is judged
            count += 1
            state.above_reports[producer_id] = (count, end_ms)
        if count < rules.confirm:
            return None
        since = state.above_since_ms
        state.fired_ms, state.fired_rate = end_ms, rate
        state.above_since_ms = None
        state.above_reports.clear()
        return Surge(
            state.usage_partition,
            key[0],
            key[1],
            rate,
            sum(_rate(p, 3) for p in producers),
            min(rate, sum(_rate(p, 4) for p in producers)),
            max((p[5] for p in producers), default=0),
            baseline,
            since,
            end_ms,
        )

    def tracked(self) -> int:
        return len(self._tenants)


EARLY = "early"  # an early summary's closed_by


def early_summary(surge: Surge, usage_partitions: int, worker_id: str) -> WindowSummary:
    """The surge as a summary of its span [since, until) on its usage partition: the tenant's
    latest rate times the span (so records / span is that rate), ``closed_by`` "early". Only
    the surging tenant is in it: the planner keeps every other figure from the last window."""
    span_s = max(surge.until_ms - surge.since_ms, 1) / 1000.0
    key = (surge.topic, surge.tenant)
    records = max(1, round(surge.records_per_s * span_s))
    top = min(records, round(surge.top_stream_per_s * span_s))
    return WindowSummary(
        surge.usage_partition,
        usage_partitions,
        surge.since_ms,
        surge.until_ms,
        EARLY,
        {key: (records, round(surge.bytes_per_s * span_s))},
        {},
        worker_id,
        (),
        {key: (top, surge.streams)} if top < records else {},
    )
