"""Synthetic multi-tenant traffic: Zipf-distributed tenants, one of which turns hot for a while."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from routing_app.client import RoutingProducer


@dataclass(frozen=True)
class TrafficPlan:
    topic: str = "demo.orders"
    tenants: int = 200
    zipf: float = 0.3
    records_per_s: float = 2000.0
    hot_tenant: str = "tenant-hot"
    hot_share: float = 0.01  # of all traffic before it turns hot
    hot_factor: float = 20.0
    hot_start_s: float = 15.0
    hot_end_s: float = 60.0
    value_bytes: int = 100

    def weights(self, hot: bool) -> tuple[list[str], list[float]]:
        names = [f"tenant-{i:04d}" for i in range(1, self.tenants + 1)]
        zipf = [1.0 / (rank**self.zipf) for rank in range(1, self.tenants + 1)]
        total = sum(zipf)
        shares = [w / total * (1 - self.hot_share) for w in zipf]
        hot_share = self.hot_share * (self.hot_factor if hot else 1.0)
        return [*names, self.hot_tenant], [*shares, hot_share]


class TrafficGenerator(threading.Thread):
    """Sends the plan's traffic through a RoutingProducer, paced in 50 ms ticks."""

    def __init__(self, producer: RoutingProducer, plan: TrafficPlan, seed: int = 1) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.producer = producer
        self.plan = plan
        self._rng = random.Random(seed)
        self._halt = threading.Event()
        self.started_at = 0.0
        self.sent = 0
        self.last_second: Counter[str] = Counter()
        self._this_second: Counter[str] = Counter()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def hot(self) -> bool:
        return self.plan.hot_start_s <= self.elapsed() < self.plan.hot_end_s

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        self.started_at = time.monotonic()
        value = b"x" * self.plan.value_bytes
        tick = 0.05
        names, weights = self.plan.weights(hot=False)
        was_hot = False
        cumulative = list(itertools.accumulate(weights))
        second_started = time.monotonic()
        next_tick = time.monotonic()
        while not self._halt.is_set():
            if self.hot() != was_hot:
                was_hot = self.hot()
                names, weights = self.plan.weights(hot=was_hot)
                cumulative = list(itertools.accumulate(weights))
            # Keep the overall rate while the hot tenant grows: it squeezes the others' share.
            count = max(1, round(self.plan.records_per_s * tick))
            for tenant in self._rng.choices(names, cum_weights=cumulative, k=count):
                self.producer.produce(self.plan.topic, value, tenant.encode())
                self._this_second[tenant] += 1
            self.sent += count
            now = time.monotonic()
            if now - second_started >= 1.0:
                self.last_second, self._this_second = self._this_second, Counter()
                second_started = now
            next_tick += tick
            self._halt.wait(max(0.0, next_tick - time.monotonic()))


class LiveRates(threading.Thread):
    """Sends each tenant's current rate (records/s) in 20 ms ticks; callers change ``rates`` live.

    Used where the timing of a change matters (tests, the reaction benchmark): unlike
    TrafficGenerator there is no randomness, so a x20 spike is exactly x20.
    """

    def __init__(
        self, producer: RoutingProducer, topic: str, rates: dict[str, float], value_bytes: int = 100
    ) -> None:
        super().__init__(name="live-rates", daemon=True)
        self.producer = producer
        self.topic = topic
        self.rates = dict(rates)
        self.value = b"x" * value_bytes
        self.sent = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        owed: dict[str, float] = {}
        tick = 0.02
        next_tick = time.monotonic()
        while not self._halt.is_set():
            for tenant, rate in list(self.rates.items()):
                due = owed.get(tenant, 0.0) + rate * tick
                whole = int(due)
                owed[tenant] = due - whole
                key = tenant.encode()
                for _ in range(whole):
                    self.producer.produce(self.topic, self.value, key)
                self.sent += whole
            next_tick += tick
            self._halt.wait(max(0.0, next_tick - time.monotonic()))
