"""Synthetic per-tenant rates: Zipf sizes, noise, flash crowds, a diurnal wave and churn.

Deterministic for a seed. A tenant is a *slot* with a Zipf weight (slot 0 is the largest) and a
name; churn gives a slot a new name (one tenant leaves, a new one of the same size arrives
elsewhere in the hash space), so the size distribution stays Zipf while placements change.

Every tenant also has a key distribution (``KeyProfile``): the planner keeps each ordered
stream of a strict tenant (one per secondary key; all of a tenant's records when it sends them
without one, ``key=tenant``) on one partition, so it shards a tenant only as far as its heaviest
stream allows. A share of tenants send key-only records (one stream); the others
spread theirs over a number of secondary keys, Zipf-skewed. Profiles come from a random stream
of their own, so they change no rate: the same seed gives the same rates whatever the key
settings (runs with and without keys compare the same traffic).
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
    # Key distributions (see KeyProfile): this share of tenants send key-only records, one
    # ordered stream; every other tenant has a key count drawn log-uniformly from 1..keys_max
    # and a Zipf skew over its keys with an exponent drawn uniformly from 0..key_zipf (0: even).
    keyless_fraction: float = 0.3
    keys_max: int = 10_000
    key_zipf: float = 1.0
    seed: int = 1


@dataclass(frozen=True)
class KeyProfile:
    """How a tenant's records spread over its ordered streams."""

    keys: int  # distinct ordered streams: secondary keys (1 for key-only records)
    zipf: float  # skew over the keys: the k-th heaviest key carries a share ~ k ** -zipf
    top_share: float  # share of the tenant's records in its heaviest stream
    keyless: bool = False  # every record is sent without a secondary key (key=tenant)

    def top_stream(self, rate: float) -> float:
        """The rate of the heaviest ordered stream of a tenant sending ``rate``."""
        return rate * self.top_share


KEYLESS = KeyProfile(keys=1, zipf=0.0, top_share=1.0, keyless=True)


def zipf_top_share(keys: int, exponent: float) -> float:
    """The heaviest key's share when ``keys`` keys follow Zipf(``exponent``): 1 / H(keys, s).
    Exact over the first keys, Euler-Maclaurin for the tail (relative error below 1e-6)."""
    if keys <= 1:
        return 1.0
    exact = min(keys, 256)
    total = math.fsum(k**-exponent for k in range(1, exact + 1))
    if keys > exact:
        a, b = float(exact), float(keys)
        if abs(exponent - 1.0) < 1e-12:
            integral = math.log(b / a)
        else:
            integral = (b ** (1 - exponent) - a ** (1 - exponent)) / (1 - exponent)
        # sum_{a < k <= b} f(k) = integral + (f(b) - f(a)) / 2 + (f'(b) - f'(a)) / 12 + ...
        total += (
            integral
            + (b**-exponent - a**-exponent) / 2
            - exponent * (b ** (-exponent - 1) - a ** (-exponent - 1)) / 12
        )
    return 1.0 / total


def draw_profile(rng: random.Random, config: TrafficConfig) -> KeyProfile:
    """One tenant's key distribution (see TrafficConfig's keyless_fraction, keys_max,
    key_zipf). Always draws three numbers, so profiles stay aligned across settings."""
    keyless, spread, skew = rng.random(), rng.random(), rng.random()
    if keyless < config.keyless_fraction:
        return KEYLESS
    keys = max(1, min(config.keys_max, int(math.exp(spread * math.log(config.keys_max + 1)))))
    exponent = skew * max(0.0, config.key_zipf)
    return KeyProfile(keys=keys, zipf=exponent, top_share=zipf_top_share(keys, exponent))


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
        weights = [rank**-config.zipf for rank in range(1, config.tenants + 1)]
        total = math.fsum(weights)
        self.base = [config.total_rate * w / total for w in weights]
        self.names = [f"tenant-{i:06d}" for i in range(config.tenants)]
        # Key distributions by tenant name, from their own random stream (see the docstring).
        self._key_rng = random.Random(f"keys-{config.seed}")
        self.profiles = {name: draw_profile(self._key_rng, config) for name in self.names}
        self._next_id = config.tenants
        self.arrivals = 0
        self.flashes: list[Flash] = []
        self._next_flash_s = config.flash_every_s / 2

    def diurnal_factor(self, t_s: float) -> float:
        cfg = self.config
        if not cfg.diurnal or cfg.diurnal_period_s <= 0:
            return 1.0
        return 1.0 + cfg.diurnal_amplitude * math.sin(2 * math.pi * t_s / cfg.diurnal_period_s)

    def profile(self, tenant: str) -> KeyProfile:
        """The tenant's key distribution (a tenant that left keeps none: key-only)."""
        return self.profiles.get(tenant, KEYLESS)

    def active_flashes(self, t_s: float) -> list[Flash]:
        return [f for f in self.flashes if f.start_s <= t_s < f.end_s]

    def step(self, t_s: float, window_s: float) -> dict[str, float]:
        """Each tenant's mean rate over the window starting at t_s (tenants at 0 are left out)."""
        self._churn(window_s)
        self._start_flashes(t_s)
        level = self.diurnal_factor(t_s)
        burst = self.config.noise**2
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
            del self.profiles[self.names[slot]]
            self.names[slot] = name = f"tenant-{self._next_id:06d}"
            self.profiles[name] = draw_profile(self._key_rng, self.config)
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
            self.flashes.append(Flash(start, start + cfg.flash_duration_s, self.names[rank - 1], rank))
            self._next_flash_s += cfg.flash_every_s
