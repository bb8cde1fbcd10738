"""Window write rates from the offsets the broker finds at a window's edges (pure arithmetic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing_app.load import WindowRates, rates_from_edge_offsets

START = 1_700_000_000_000
END = START + 10_000  # 10 s


def test_records_between_the_edges_over_the_window_seconds() -> None:
    result = rates_from_edge_offsets(
        START, END, [0, 1], at_start={0: 50, 1: 7}, at_end={0: 150, 1: 7}, latest={0: 180, 1: 7}
    )
    assert result == WindowRates({0: 10.0, 1: 0.0}, ())


def test_no_record_at_or_after_the_end_yet_counts_up_to_the_latest_offset() -> None:
    result = rates_from_edge_offsets(START, END, [0], at_start={0: 50}, at_end={0: -1}, latest={0: 120})
    assert result == WindowRates({0: 7.0}, ())


def test_no_record_since_the_start_is_an_empty_window() -> None:
    # Whatever the end edge says (or leaves out): nothing is stamped in the window.
    result = rates_from_edge_offsets(
        START,
        END,
        [0, 1, 2],
        at_start={0: -1, 1: -1, 2: -1},
        at_end={0: -1, 1: 40},
        latest={0: 40, 1: 40, 2: 40},
    )
    assert result == WindowRates({0: 0.0, 1: 0.0, 2: 0.0}, ())


def test_partitions_missing_from_an_answer_are_unknown() -> None:
    result = rates_from_edge_offsets(
        START,
        END,
        [0, 1, 2, 3, 4],
        at_start={0: 0, 2: 0, 3: 0, 4: 0},  # 1: no start edge
        at_end={0: 20, 3: -1, 4: -1},  # 2: no end edge
        latest={0: 30, 4: -1},
    )  # 3: needs latest, has none; 4: latest unusable
    assert result == WindowRates({0: 2.0}, (1, 2, 3, 4))


def test_a_latest_read_before_the_start_edge_arrived_counts_zero_not_negative() -> None:
    result = rates_from_edge_offsets(START, END, [0], at_start={0: 12}, at_end={0: -1}, latest={0: 10})
    assert result.rates == {0: 0.0}


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty window"):
        rates_from_edge_offsets(START, START, [0], {0: 0}, {0: 1}, {0: 1})


@given(st.lists(st.integers(0, 1_000), min_size=2, max_size=8))
def test_consecutive_windows_count_every_record_once(edges: list[int]) -> None:
    # Window i's end edge is window i+1's start edge, so the records add up across windows.
    offsets = sorted(edges)
    total = 0.0
    for i in range(len(offsets) - 1):
        start = START + i * 1_000
        result = rates_from_edge_offsets(
            start, start + 1_000, [0], {0: offsets[i]}, {0: offsets[i + 1]}, {0: offsets[-1]}
        )
        total += result.rates[0]
    assert total == pytest.approx(offsets[-1] - offsets[0])
