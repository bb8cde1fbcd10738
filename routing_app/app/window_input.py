"""What the planner is given for a complete window: the tenants' rates over the window, the routes
and state from the writer's tables, and partition load and lag from the broker.

Apart from the planning loop because gathering is its own step with its own state (one load
sampler per data topic) and failure rule (load is advice); the loop only orders the steps.
"""

from __future__ import annotations

import asyncio
import logging

from routing_app.app.writer import RouteWriter
from routing_app.config import Settings
from routing_app.load import PartitionLoadSampler, consumer_lag
from routing_app.planner import PartitionLoad, PlannerInput, Policy, TenantRate
from routing_app.planner.model import TenantKey
from routing_app.windows import CompleteWindow

log = logging.getLogger(__name__)

PartitionLoads = dict[tuple[str, int], PartitionLoad]


def window_rates(
    window: CompleteWindow,
) -> tuple[dict[TenantKey, TenantRate], dict[tuple[str, int], float]]:
    """The tenants' rates over ``window`` and the residual (unattributed) records/s per
    partition; residual without a partition (< 0) is left out."""
    window_s = max((window.window_end - window.window_start) / 1000.0, 1e-3)
    streams = window.stream_totals()
    rates = {
        key: TenantRate(
            key[0],
            key[1],
            records / window_s,
            nbytes / window_s,
            *_stream_rate(streams.get(key), window_s),
        )
        for key, (records, nbytes) in window.tenant_totals().items()
    }
    residual = {
        key: records / window_s for key, (records, _) in window.residual_totals().items() if key[1] >= 0
    }
    return rates, residual


async def window_input(
    window: CompleteWindow,
    rates: dict[TenantKey, TenantRate],
    residual: dict[tuple[str, int], float],
    writer: RouteWriter,
    broker: BrokerLoads,
    policy: Policy,
) -> PlannerInput:
    """The planner's input for ``window``: its data topics are those with rates, routes or
    residual; whatever names a topic the writer has no partition count for is left out."""
    routes = writer.routes()
    topics = {t for t, _ in rates} | {t for t, _ in routes} | {t for t, _ in residual}
    counts = await writer.partition_counts(topics)
    loads = await asyncio.to_thread(broker.sample, sorted(counts), window)
    return PlannerInput(
        now_ms=window.window_end,
        partition_counts=counts,
        routes={k: r for k, r in routes.items() if k[0] in counts},
        rates={k: r for k, r in rates.items() if k[0] in counts},
        loads=loads,
        history=writer.history(),
        frozen=writer.frozen(),
        evacuated=writer.evacuated(),
        residual={k: v for k, v in residual.items() if k[0] in counts},
        policy=policy,
        complete=window.complete,
        hash_bases={t: b for t, b in writer.hash_bases().items() if t in counts},
    )


class BrokerLoads:
    """Partition write rates and consumer lag from the broker's offsets (blocking calls: run it
    in a thread)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._samplers: dict[str, PartitionLoadSampler] = {}
        self._lag_groups = [g.strip() for g in settings.lag_groups.split(",") if g.strip()]

    def sample(self, topics: list[str], window: CompleteWindow) -> PartitionLoads:
        loads: PartitionLoads = {}
        for topic in topics:
            try:
                sampler = self._samplers.get(topic)
                if sampler is None:
                    sampler = self._samplers[topic] = PartitionLoadSampler(self._settings.kafka, topic)
                # Over the planned window, like the tenants' rates, not since the last cycle.
                rates = sampler.rates_for_window(window.window_start, window.window_end)
                lag = consumer_lag(self._settings.kafka, self._lag_groups, topic, sampler.last_end_offsets())
            except Exception as exc:  # load is advice: plan on rates alone rather than stop
                log.warning("cannot sample load of %s: %s", topic, exc)
                continue
            for partition, rate in rates.items():
                loads[(topic, partition)] = PartitionLoad(topic, partition, rate, lag.get(partition, 0))
        return loads


def _stream_rate(streams: tuple[int, int] | None, window_s: float) -> tuple[float | None, int]:
    """TenantRate's (top_stream_per_s, streams): None for a tenant that is one stream."""
    if streams is None:
        return None, 1
    return streams[0] / window_s, streams[1]
