"""When is a window closed? Driven by stream time and a timer, never by Faust's on_window_close.

Faust-streaming's ``on_window_close`` fires for one partition per worker only and never for
windows restored from the changelog, so closing is decided here, per usage partition:

- by stream time: a report whose interval ends at or after ``window_end + grace`` arrived on that
  partition, so every producer has moved past the window;
- by the timer: the partition has been quiet (no reports) and the wall clock is past
  ``window_end + grace + idle``, so a silent partition cannot hold a window open forever.

Pure and deterministic: the caller passes the times in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def window_start_of(timestamp_ms: int, size_ms: int) -> int:
    return timestamp_ms - timestamp_ms % size_ms


@dataclass
class _PartitionClock:
    stream_time_ms: int = -1
    # Windows that hold data (or were opened) and are not closed yet.
    open_windows: set[int] = field(default_factory=set)
    # Everything that starts before this has been closed.
    closed_before_ms: int = -1
    # Whether due() returned a window yet: until then closing starts at the oldest open window
    # (closed_before_ms can already have moved past empty windows without returning them).
    returned_any: bool = False


class WindowCloser:
    def __init__(self, size_ms: int, grace_ms: int, idle_ms: int) -> None:
        self.size_ms = size_ms
        self.grace_ms = grace_ms
        self.idle_ms = idle_ms
        self._partitions: dict[int, _PartitionClock] = {}

    def forget(self, partition: int) -> None:
        """The partition moved to another worker: its windows are that worker's to close."""
        self._partitions.pop(partition, None)

    def track(self, partition: int) -> None:
        self._partitions.setdefault(partition, _PartitionClock())

    def is_closed(self, partition: int, window_start: int) -> bool:
        clock = self._partitions.get(partition)
        return clock is not None and window_start < clock.closed_before_ms

    def observe(self, partition: int, event_time_ms: int) -> int:
        """Records a report's event time; returns the start of the window it belongs to."""
        clock = self._partitions.setdefault(partition, _PartitionClock())
        clock.stream_time_ms = max(clock.stream_time_ms, event_time_ms)
        start = window_start_of(event_time_ms, self.size_ms)
        if start >= clock.closed_before_ms:
            clock.open_windows.add(start)
        return start

    def reopen(self, partition: int, window_start: int) -> None:
        """A window restored from the changelog that still has to be closed."""
        clock = self._partitions.setdefault(partition, _PartitionClock())
        if window_start >= clock.closed_before_ms:
            clock.open_windows.add(window_start)

    def due(self, partition: int, now_ms: int, last_event_wall_ms: int | None) -> list[tuple[int, str]]:
        """Windows of the partition to close now, oldest first, with what closed them.

        Closing window W also closes every earlier window of the partition, and a quiet
        partition closes the windows up to now even if it never saw them (empty summaries),
        so the planner hears from every partition for every window.
        """
        clock = self._partitions.get(partition)
        if clock is None:
            return []
        quiet = last_event_wall_ms is None or now_ms - last_event_wall_ms >= self.idle_ms
        by_stream = clock.stream_time_ms - self.grace_ms
        by_timer = now_ms - self.grace_ms - self.idle_ms if quiet else -1
        horizon = max(by_stream, by_timer)  # windows ending at or before this are closed
        if horizon < 0:
            return []
        closable_before = window_start_of(horizon, self.size_ms)  # start of first open one
        if closable_before <= clock.closed_before_ms:
            return []
        first = clock.closed_before_ms
        if not clock.returned_any:
            # Nothing closed yet on this partition: start from its oldest open window, or,
            # for a partition that never had data, from the window just before the horizon.
            first = min(clock.open_windows, default=closable_before - self.size_ms)
        reason = "stream-time" if by_stream >= by_timer else "timer"
        due = [(start, reason) for start in range(first, closable_before, self.size_ms)]
        clock.open_windows = {w for w in clock.open_windows if w >= closable_before}
        clock.closed_before_ms = closable_before
        clock.returned_any = clock.returned_any or bool(due)
        return due
