"""Write rates over one window [start_ms, end_ms) from the offsets the broker finds by timestamp.

Pure arithmetic; the broker questions are asked by ``PartitionLoadSampler.window_rates``.

The broker answers a timestamp with the earliest offset whose record timestamp is >= it, or -1
when no such record exists yet. So ``offset(end) - offset(start)`` counts the records appended
between the first one stamped in the window and the first one stamped after it. On CreateTime
topics that is the producers' clock at send time (RoutingProducer leaves the timestamp to
librdkafka, which stamps each record when it is produced), the same clock the usage windows
use. Records stamped far from when they were written (replays with old timestamps, a producer
with a wrong clock) are miscounted: that is the known limit of this method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowRates:
    rates: dict[int, float]  # records/s over the window, for the partitions the answers cover
    unknown: tuple[int, ...]  # partitions the answers left out: the caller needs another source


def rates_from_edge_offsets(
    start_ms: int,
    end_ms: int,
    partitions: Iterable[int],
    at_start: Mapping[int, int],
    at_end: Mapping[int, int],
    latest: Mapping[int, int],
) -> WindowRates:
    """Records/s per partition in [start_ms, end_ms).

    ``at_start`` / ``at_end``: the offset the broker found for each edge's timestamp (negative:
    none found); ``latest``: end offsets read *before* ``at_end`` was asked for, so that a
    missing end edge means none of the records below ``latest`` is stamped at or after the end.
    A partition absent from an answer it needs is reported in ``unknown``.
    """
    window_ms = end_ms - start_ms
    if window_ms <= 0:
        raise ValueError(f"empty window [{start_ms}, {end_ms})")
    rates: dict[int, float] = {}
    unknown: list[int] = []
    for partition in partitions:
        first = at_start.get(partition)
        if first is None:
            unknown.append(partition)
            continue
        if first < 0:
            # Nothing stamped at or after the start yet, so nothing in the window either.
            rates[partition] = 0.0
            continue
        after = at_end.get(partition)
        if after is not None and after < 0:
            # Nothing stamped at or after the end yet: the window runs up to the log's end.
            after = latest.get(partition)
            if after is not None and after < 0:
                after = None
        if after is None:
            unknown.append(partition)
            continue
        # Below zero only when ``latest`` was read before the start edge's record arrived.
        rates[partition] = max(0, after - first) * 1000.0 / window_ms
    return WindowRates(rates, tuple(unknown))
