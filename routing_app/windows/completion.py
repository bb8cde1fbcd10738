"""When does the planner have a complete window? When every usage partition closed it, or when
the wait for the missing ones runs out (a dead or lagging worker must not stall planning)."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing_app.windows.summary import WindowSummary


@dataclass(frozen=True)
class CompleteWindow:
    window_start: int
    window_end: int
    summaries: tuple[WindowSummary, ...]
    missing_partitions: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return not self.missing_partitions

    def tenant_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for summary in self.summaries:
            for key, (records, nbytes) in summary.tenants.items():
                r, b = totals.get(key, (0, 0))
                totals[key] = (r + records, b + nbytes)
        return totals

    def stream_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(heaviest stream's records, streams) of the tenants known to send several ordered
        streams; every other tenant is one stream (see WindowSummary.streams)."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for summary in self.summaries:
            for key, (top, streams) in summary.streams.items():
                t, s = totals.get(key, (0, 0))
                totals[key] = (t + top, max(s, streams))
        return totals

    def producers(self) -> set[str]:
        return {p for summary in self.summaries for p in summary.producers}

    def residual_totals(self) -> dict[tuple[str, int], tuple[int, int]]:
        totals: dict[tuple[str, int], tuple[int, int]] = {}
        for summary in self.summaries:
            for key, (records, nbytes) in summary.residuals.items():
                r, b = totals.get(key, (0, 0))
                totals[key] = (r + records, b + nbytes)
        return totals


@dataclass
class WindowCompletion:
    """Collects summaries per window; hands out windows in order, each once."""

    max_wait_ms: int
    _pending: dict[int, dict[int, WindowSummary]] = field(default_factory=dict)
    _expected: dict[int, int] = field(default_factory=dict)
    _ends: dict[int, int] = field(default_factory=dict)
    planned_through: int = -1  # start of the last window handed out
    duplicates: int = 0
    late: int = 0

    def add(self, summary: WindowSummary) -> None:
        if summary.window_start <= self.planned_through:
            self.late += 1
            return
        by_partition = self._pending.setdefault(summary.window_start, {})
        if summary.usage_partition in by_partition:
            # Two workers can close the same window around a rebalance: the first one counts.
            self.duplicates += 1
            return
        by_partition[summary.usage_partition] = summary
        self._expected[summary.window_start] = summary.usage_partitions
        self._ends[summary.window_start] = summary.window_end

    def ready(self, now_ms: int) -> list[CompleteWindow]:
        """Windows to plan now, oldest first: complete ones, and overdue incomplete ones."""
        out: list[CompleteWindow] = []
        for start in sorted(self._pending):
            by_partition = self._pending[start]
            expected = self._expected[start]
            missing = tuple(p for p in range(expected) if p not in by_partition)
            overdue = now_ms >= self._ends[start] + self.max_wait_ms
            if missing and not overdue:
                # A later window cannot be planned before this one: order matters for history.
                break
            out.append(
                CompleteWindow(
                    start, self._ends[start], tuple(by_partition[p] for p in sorted(by_partition)), missing
                )
            )
            del self._pending[start], self._expected[start], self._ends[start]
            self.planned_through = start
        return out
