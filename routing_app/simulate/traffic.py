"""Synthetic per-tenant rates: Zipf sizes, noise, flash crowds, a diurnal wave and churn.

Deterministic for a seed. A tenant is a *slot* with a Zipf weight (slot 0 is the largest) and a
name; churn gives a slot a new name (one tenant leaves, a new one of the same size arrives
elsewhere in the hash space), so the size distribution stays Zipf while placements change.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

_TRIANGULAR_TO_UNIT = math.sqrt(6.0)


@dataclass(frozen=True)
class TrafficConfig:
    tenants: int = 10_000
    zipf: float = 1.4
    total_rate: float = 125_000.0  # records/s summed over all tenants, before the diurnal wave
    # A window's rate is a count over the window: Poisson noise (relative sd 1/sqrt(records)),
    # plus `noise` relative burstiness on top. Big tenants are aggregates of many sources, so
    # their relative noise is the burstiness; a tenant sending 1/s sees about 30% per window.
    noise: float = 0.02
    flash: bool = True
    flash_factor: float = 20.0
    flash_every_s: float = 1_800.0
    flash_duration_s: float = 300.0
    # The flash tenant's Zipf rank, drawn log-uniformly from this range (clipped to the tenants).
    flash_ranks: tuple[int, int] = (10, 1_000)
    diurnal: bool = True
    diurnal_amplitude: float = 0.3  # total rate x (1 + amplitude x sin(2 pi t / period))
    diurnal_period_s: float = 7_200.0
    churn_per_hour: float = 0.02  # fraction of tenants replaced (one leaves, one arrives) per hour
    seed: int = 1


@dataclass(frozen=True)
class Flash:
    start_s: float
    end_s: float
    tenant: str
    rank: int


class Traffic:
    """Call ``step`` once per window, in time order."""

    def __init__(self, config: TrafficConfig) -> None:
        if config.tenants < 1:
            raise ValueError("at least one tenant")
        self.config = config
        self._rng = random.Random(config.seed)
        weights = [rank ** -config.zipf for rank in range(1, config.tenants + 1)]
        total = math.fsum(weights)
        self.base = [config.total_rate * w / total for w in weights]
        self.names = [f"tenant-{i:06d}" for i in range(config.tenants)]
        self._next_id = config.tenants
        self.arrivals = 0
        self.flashes: list[Flash] = []
        self._next_flash_s = config.flash_every_s / 2

    def diurnal_factor(self, t_s: float) -> float:
        cfg = self.config
        if not cfg.diurnal or cfg.diurnal_period_s <= 0:
            return 1.0
        return 1.0 + cfg.diurnal_amplitude * math.sin(2 * math.pi * t_s / cfg.diurnal_period_s)

    def active_flashes(self, t_s: float) -> list[Flash]:
        return [f for f in self.flashes if f.start_s <= t_s < f.end_s]

    def step(self, t_s: float, window_s: float) -> dict[str, float]:
        """Each tenant's mean rate over the window starting at t_s (tenants at 0 are left out)."""
        self._churn(window_s)
        self._start_flashes(t_s)
        level = self.diurnal_factor(t_s)
        burst = self.config.noise ** 2
        uniform = self._rng.random
        sqrt = math.sqrt
        rates: dict[str, float] = {}
        for name, base in zip(self.names, self.base, strict=True):
            mean = base * level
            records = mean * window_s
            if records <= 0:
                continue
            # Unit-variance noise from two uniforms (triangular, within +-2.45 sd): about normal,
            # and four times cheaper than random.gauss for 100k tenants a window.
            sd = min(sqrt(burst + 1.0 / records), 1.0) * _TRIANGULAR_TO_UNIT
            rate = mean * (1.0 + sd * (uniform() + uniform() - 1.0))
            if rate > 0:
                rates[name] = rate
        for flash in self.active_flashes(t_s):
            if flash.tenant in rates:  # it may have left mid-flash
                rates[flash.tenant] *= self.config.flash_factor
        return rates

    def _churn(self, window_s: float) -> None:
        expected = len(self.names) * self.config.churn_per_hour * window_s / 3600
        count = int(expected) + (1 if self._rng.random() < expected - int(expected) else 0)
        for _ in range(count):
            slot = self._rng.randrange(len(self.names))
            self.names[slot] = f"tenant-{self._next_id:06d}"
            self._next_id += 1
            self.arrivals += 1

    def _start_flashes(self, t_s: float) -> None:
        cfg = self.config
        while cfg.flash and cfg.flash_every_s > 0 and self._next_flash_s <= t_s:
            low = max(1, min(cfg.flash_ranks[0], len(self.names)))
            high = max(low, min(cfg.flash_ranks[1], len(self.names)))
            rank = int(math.exp(self._rng.uniform(math.log(low), math.log(high + 1))))
            rank = min(max(rank, low), high)
            start = self._next_flash_s
            self.flashes.append(Flash(start, start + cfg.flash_duration_s, self.names[rank - 1],
                                      rank))
            self._next_flash_s += cfg.flash_every_s
