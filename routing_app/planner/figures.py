"""The per-partition figures the planning steps search, for ``placement.Placement``: loads in
both views (estimate, measured), headroom under a level, target scores, and the searches over
them (where does this fit best?).

The steps ask about every partition at once far more often than anything moves, so every
figure is computed for all partitions when first asked and kept, and a move has only the
partitions it touched recomputed (``_forget``): a search is a scan of kept lists, or a walk
along a kept order that stops at the first fit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence

from routing_app.planner import reasons
from routing_app.planner.model import Policy


class PartitionFigures:
    """Mixed into ``Placement``, which sets the attributes below and calls ``_init_figures``
    once its loads are known, and ``_forget(p)`` after a move changes p's load."""

    n: int
    policy: Policy
    active: list[int]
    est: list[float]
    residual: list[float]
    lag: list[float]
    offset: list[float]
    mean: float
    meas_mean: float
    measured: bool
    floor: float
    hot_factor: float
    settle_factor: float
    min_move: float
    unit: float
    # Every tenant's piece on each partition.
    pieces_on: list[Sequence[float]]

    def _init_figures(self) -> None:
        n = self.n
        # Per level factor, every partition's headroom.
        self._rooms: dict[float, list[float]] = {}
        self._scores: list[tuple[float, int]] | None = None
        self._by_score: list[int] | None = None
        self._by_room_order: list[tuple[float, tuple[float, int], int]] | None = None
        self._roomiest: tuple[tuple[float, int], tuple[float, int]] | None = None
        # The load rebalancing cannot move away, and the largest piece (None: not known yet).
        self._fixed: list[float | None] = [None] * n
        self._largest: list[float | None] = [None] * n
        self._least_fixed: list[tuple[float, tuple[float, int], int]] | None = None

    def _forget(self, p: int) -> None:
        """p's load changed: its figures again, and the orders over all partitions anew."""
        self._fixed[p] = self._largest[p] = None
        for factor, rooms in self._rooms.items():
            rooms[p] = self._headroom(p, factor)
        if self._scores is not None:
            self._scores[p] = self._score(p)
        self._by_score = self._by_room_order = self._least_fixed = self._roomiest = None

    def _views(self, p: int) -> tuple[tuple[float, float, bool], ...]:
        """(load, its mean, measured?) for each view of p."""
        if self.measured and self.offset[p] != 0.0:
            return (
                (self.est[p], self.mean, False),
                (max(0.0, self.est[p] + self.offset[p]), self.meas_mean, True),
            )
        return ((self.est[p], self.mean, False),)

    def headroom(self, p: int, factor: float) -> float:
        """How much more p takes before a view passes factor x its mean. Below the hot floor
        (scaled to the level, so settling stays below rebalancing) nothing is a problem."""
        return self.rooms(factor)[p]

    def rooms(self, factor: float) -> list[float]:
        """Every partition's headroom at factor x the mean."""
        known = self._rooms.get(factor)
        if known is None:
            known = self._rooms[factor] = [self._headroom(p, factor) for p in range(self.n)]
        return known

    def _headroom(self, p: int, factor: float) -> float:
        floor = self.floor * factor / self.hot_factor
        return min(max(factor * mean, floor) - load for load, mean, _ in self._views(p))

    def over(self, p: int, factor: float) -> bool:
        return self.headroom(p, factor) < 0

    def excess(self, p: int) -> float:
        """Load above the mean, in the view where it is largest."""
        return max(load - mean for load, mean, _ in self._views(p))

    def ratio(self, p: int) -> float:
        return max((load / mean for load, mean, _ in self._views(p) if mean > 0), default=0.0)

    def hot(self, factor: float) -> list[int]:
        """The active partitions over factor x the mean, the most loaded first."""
        rooms = self.rooms(factor)
        return sorted((p for p in self.active if rooms[p] < 0), key=lambda p: (-self.ratio(p), p))

    def describe(self, p: int) -> str:
        load, mean, measured = max(self._views(p), key=lambda v: v[0] / v[1] if v[1] > 0 else 0.0)
        return reasons.partition_state(p, load, mean, measured)

    def score(self, p: int) -> tuple[float, int]:
        """Target preference: low load in either view (measured scaled to the estimate's mean),
        low lag (a backlog counts as the rate that clears it within lag_horizon_s), low number."""
        return self.scores()[p]

    def scores(self) -> list[tuple[float, int]]:
        """Every partition's score."""
        if self._scores is None:
            self._scores = [self._score(p) for p in range(self.n)]
        return self._scores

    def by_score(self) -> list[int]:
        """The active partitions, best target first."""
        if self._by_score is None:
            self._by_score = sorted(self.active, key=self.scores().__getitem__)
        return self._by_score

    def _score(self, p: int) -> tuple[float, int]:
        load = self.est[p]
        if self.measured and self.offset[p] != 0.0 and self.meas_mean > 0:
            load = max(load, (self.est[p] + self.offset[p]) * self.mean / self.meas_mean)
        return (load + self.lag[p] / max(self.policy.lag_horizon_s, 1e-9), p)

    def fixed_load(self, p: int) -> float:
        """The load on p that rebalancing would leave there: residual and tenants too small
        to move (below min_move)."""
        known = self._fixed[p]
        if known is None:
            low = self.min_move
            known = self._fixed[p] = self.residual[p] + math.fsum(
                [size for size in self.pieces_on[p] if size < low]
            )
        return known

    def largest_piece(self, p: int) -> float:
        """The largest piece of any tenant on p (-inf on an empty partition)."""
        known = self._largest[p]
        if known is None:
            known = self._largest[p] = max(self.pieces_on[p], default=-math.inf)
        return known

    def least_fixed(self, but: int) -> tuple[float, int] | None:
        """(fixed load, partition): the active partition other than ``but`` where the fixed
        load is least (then the best score), among those with no piece of a unit or more."""
        if self._least_fixed is None:
            unit = self.unit
            self._least_fixed = heapq.nsmallest(
                2,
                ((self.fixed_load(q), self.score(q), q) for q in self.active if self.largest_piece(q) < unit),
            )
        for fixed, _, q in self._least_fixed:
            if q != but:
                return fixed, q
        return None

    def best_fit(
        self,
        exclude: Iterable[int],
        amount: float,
        factor: float | None,
        only: Iterable[int] | None = None,
        extra: Mapping[int, float] | None = None,
        cap: float | None = None,
    ) -> int | None:
        """The best-ranked partition taking ``amount`` with both views under factor x mean
        (and the estimate under ``cap``), or None. ``only``: some of the active partitions."""
        rooms = self.rooms(factor) if factor is not None else None
        # ``extra`` only adds load: where nothing has the room for ``amount``, nothing fits.
        if rooms is not None and max(rooms, default=-math.inf) < amount:
            return None
        skip = set(exclude)
        allowed = None if only is None else set(only)
        est = self.est
        for p in self.by_score():
            if p in skip or (allowed is not None and p not in allowed):
                continue
            more = amount + (extra.get(p, 0.0) if extra else 0.0)
            if rooms is not None and rooms[p] < more:
                continue
            if cap is not None and est[p] + more > cap:
                continue
            return p
        return None

    def _by_room(self) -> list[tuple[float, tuple[float, int], int]]:
        """Every partition as (-settle headroom, score, partition), the roomiest first."""
        if self._by_room_order is None:
            rooms, scores = self.rooms(self.settle_factor), self.scores()
            self._by_room_order = sorted((-(rooms[p] + 0.0), scores[p], p) for p in range(self.n))
        return self._by_room_order

    def roomiest_except(self, p: int) -> float:
        """The most settle headroom on any active partition but p (a quick no-fit check)."""
        if self._roomiest is None:
            none = (-math.inf, -1)
            first, second = none, none
            for q in self.active:
                item = (self.headroom(q, self.settle_factor), -q)
                if item > first:
                    first, second = item, first
                elif item > second:
                    second = item
            self._roomiest = (first, second)
        first, second = self._roomiest
        return second[0] if first[1] == -p else first[0]
