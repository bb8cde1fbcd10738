"""Window closing (stream time + timer, per partition), completion across partitions, summaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.windows import (
    CompleteWindow,
    WindowAccumulator,
    WindowCloser,
    WindowCompletion,
    WindowSummary,
    stored_totals,
    window_start_of,
)
from routing_app.windows import summary as summary_module

SIZE = 10_000
GRACE = 2_000
IDLE = 5_000
BASE = 1_700_000_000_000  # a window-aligned epoch-ish time, so nothing is near zero
assert BASE % SIZE == 0


def _closer() -> WindowCloser:
    return WindowCloser(SIZE, GRACE, IDLE)


def _starts(due: list[tuple[int, str]]) -> list[int]:
    return [start for start, _ in due]


# -- window_start_of ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "start"),
    [
        (0, 0),
        (1, 0),
        (SIZE - 1, 0),
        (SIZE, SIZE),
        (BASE + 12_345, BASE + SIZE),
    ],
)
def test_window_start_of(ts: int, start: int) -> None:
    assert window_start_of(ts, SIZE) == start


@given(st.integers(0, 10**15), st.integers(1, 10**7))
def test_window_start_of_contains_the_timestamp(ts: int, size: int) -> None:
    start = window_start_of(ts, size)
    assert start % size == 0
    assert start <= ts < start + size


# -- WindowCloser: stream time ------------------------------------------------------------------


def test_observe_returns_the_window_start() -> None:
    closer = _closer()
    assert closer.observe(0, BASE + 3) == BASE
    assert closer.observe(0, BASE + SIZE + 9_999) == BASE + SIZE


def test_closes_by_stream_time_at_end_plus_grace_not_before() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1_000)
    # Not quiet (an event just now), so only stream time can close.
    now = BASE + 1_000
    assert closer.due(0, now, last_event_wall_ms=now) == []
    closer.observe(0, BASE + SIZE + GRACE - 1)  # one ms short of end + grace
    assert closer.due(0, now, last_event_wall_ms=now) == []
    assert not closer.is_closed(0, BASE)
    closer.observe(0, BASE + SIZE + GRACE)
    assert closer.due(0, now, last_event_wall_ms=now) == [(BASE, "stream-time")]
    assert closer.is_closed(0, BASE)
    assert not closer.is_closed(0, BASE + SIZE)
    # Exactly once.
    assert closer.due(0, now, last_event_wall_ms=now) == []
    closer.observe(0, BASE + SIZE + GRACE + 5)
    assert closer.due(0, now, last_event_wall_ms=now) == []


def test_closing_a_window_closes_every_earlier_one_oldest_first_including_empty() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(0, BASE + 3 * SIZE + 1)  # windows 1 and 2 stay empty
    closer.observe(0, BASE + 5 * SIZE + GRACE)  # closes up to window 4 by stream time
    due = closer.due(0, BASE, last_event_wall_ms=BASE)
    assert due == [(BASE + i * SIZE, "stream-time") for i in range(5)]
    assert closer.due(0, BASE, last_event_wall_ms=BASE) == []
    # The partition's next window continues right after: contiguous.
    closer.observe(0, BASE + 6 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, last_event_wall_ms=BASE)) == [BASE + 5 * SIZE]


def test_first_close_starts_at_the_oldest_open_window() -> None:
    closer = _closer()
    closer.observe(0, BASE + 4 * SIZE + 7)
    closer.observe(0, BASE + 2 * SIZE + 7)  # out of order, but not late: nothing closed yet
    closer.observe(0, BASE + 6 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE + i * SIZE for i in range(2, 6)]


def test_late_events_are_reported_closed() -> None:
    closer = _closer()
    closer.observe(0, BASE + 5)
    closer.observe(0, BASE + 2 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE, BASE + SIZE]
    late = closer.observe(0, BASE + SIZE + 1)
    assert late == BASE + SIZE
    assert closer.is_closed(0, late)
    assert closer.is_closed(0, BASE)
    # A late event does not reopen the window: it is never due again.
    closer.observe(0, BASE + 3 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE + 2 * SIZE]


def test_stream_time_never_goes_back() -> None:
    closer = _closer()
    closer.observe(0, BASE + SIZE + GRACE)
    closer.observe(0, BASE + 1)  # an older report: stream time stays
    assert _starts(closer.due(0, BASE, BASE)) == [BASE]


def test_first_report_does_not_invent_an_empty_window_before_it() -> None:
    # The app calls due() after every report. The first report lands early in its window, so
    # stream time - grace is still in the previous window: nothing is due, and that previous
    # window (this partition never had data there) must not be returned later either.
    closer = _closer()
    closer.observe(0, BASE + 1)
    assert closer.due(0, BASE + 1, BASE + 1) == []
    closer.observe(0, BASE + SIZE + GRACE)
    assert closer.due(0, BASE + 2, BASE + 2) == [(BASE, "stream-time")]


def test_partitions_starting_at_different_offsets_agree_on_the_first_window() -> None:
    # Partition 0's first report is past grace into its window, partition 1's is not. Both must
    # close the same windows, or the planner waits max_wait for a window only one of them sent.
    closer = _closer()
    completion = WindowCompletion(max_wait_ms=60_000)
    acc = WindowAccumulator()
    for p, event in ((0, BASE + GRACE + 1), (1, BASE + 1)):
        start = closer.observe(p, event)
        acc.add(p, start, "orders", f"t{p}", 0, 1, 1)
        assert closer.due(p, event, event) == []
    now = BASE + SIZE + GRACE
    for p in (0, 1):
        closer.observe(p, now)
        for start, reason in closer.due(p, now, now):
            completion.add(acc.close(p, start, SIZE, 2, reason, "w"))
    (window,) = completion.ready(now)
    assert (window.window_start, window.complete) == (BASE, True)
    assert window.tenant_totals() == {("orders", "t0"): (1, 1), ("orders", "t1"): (1, 1)}


# -- WindowCloser: timer ------------------------------------------------------------------------


def test_closes_by_timer_when_quiet_and_past_end_grace_idle() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    last_wall = BASE + 1
    end = BASE + SIZE
    # Quiet, but not yet past end + grace + idle.
    assert closer.due(0, end + GRACE + IDLE - 1, last_wall) == []
    assert closer.due(0, end + GRACE + IDLE, last_wall) == [(BASE, "timer")]
    assert closer.is_closed(0, BASE)
    assert closer.due(0, end + GRACE + IDLE + 1, last_wall) == []


def test_timer_waits_while_the_partition_is_not_quiet() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    now = BASE + SIZE + GRACE + IDLE + 10 * SIZE
    assert closer.due(0, now, last_event_wall_ms=now - IDLE + 1) == []
    # Quiet from exactly idle_ms on.
    due = closer.due(0, now, last_event_wall_ms=now - IDLE)
    assert due and due[0] == (BASE, "timer")
    assert {reason for _, reason in due} == {"timer"}


def test_timer_closes_up_to_now_with_empty_windows() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    now = BASE + 4 * SIZE + GRACE + IDLE + 3
    assert closer.due(0, now, None) == [(BASE + i * SIZE, "timer") for i in range(4)]


def test_reason_is_stream_time_when_stream_time_reaches_further() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(0, BASE + 3 * SIZE + GRACE)
    # Quiet too, but the timer only reaches window 0.
    due = closer.due(0, BASE + SIZE + GRACE + IDLE, None)
    assert due == [(BASE + i * SIZE, "stream-time") for i in range(3)]


def test_reason_is_stream_time_when_both_reach_equally_far() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(0, BASE + SIZE + GRACE)
    assert closer.due(0, BASE + SIZE + GRACE + IDLE, None) == [(BASE, "stream-time")]


def test_partition_that_never_had_data_closes_by_timer() -> None:
    closer = _closer()
    closer.track(3)
    now = BASE + 7 * SIZE + GRACE + IDLE + 1
    # Never had data: the window just before the horizon, an empty one.
    assert closer.due(3, now, None) == [(BASE + 6 * SIZE, "timer")]
    assert closer.is_closed(3, BASE + 6 * SIZE)
    # Then one window per window size, none skipped.
    assert closer.due(3, now + SIZE, None) == [(BASE + 7 * SIZE, "timer")]
    assert closer.due(3, now + 3 * SIZE, None) == [(BASE + 8 * SIZE, "timer"), (BASE + 9 * SIZE, "timer")]


def test_untracked_partition_has_nothing_due() -> None:
    closer = _closer()
    assert closer.due(9, BASE + 100 * SIZE, None) == []
    assert not closer.is_closed(9, BASE)


# -- WindowCloser: partitions are independent ---------------------------------------------------


def test_closing_one_partition_does_not_close_another() -> None:
    # The Faust bug avoided here: on_window_close fired for only one partition per worker.
    closer = _closer()
    for p in range(4):
        closer.observe(p, BASE + 10 + p)
    now = BASE + 1
    closer.observe(2, BASE + SIZE + GRACE)
    assert closer.due(2, now, now) == [(BASE, "stream-time")]
    for p in (0, 1, 3):
        assert closer.due(p, now, now) == []
        assert not closer.is_closed(p, BASE)
    # Every partition closes it once its own stream time gets there.
    for p in (0, 1, 3):
        closer.observe(p, BASE + SIZE + GRACE + p)
        assert closer.due(p, now, now) == [(BASE, "stream-time")]
        assert closer.is_closed(p, BASE)


def test_timer_closes_each_quiet_partition_separately() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(1, BASE + 1)
    now = BASE + SIZE + GRACE + IDLE
    assert closer.due(0, now, last_event_wall_ms=now) == []  # busy
    assert closer.due(1, now, last_event_wall_ms=BASE) == [(BASE, "timer")]  # quiet
    assert not closer.is_closed(0, BASE)
    assert closer.due(0, now, last_event_wall_ms=now - IDLE) == [(BASE, "timer")]


def test_forget_drops_the_partition_and_track_starts_it_fresh() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(1, BASE + 1)
    closer.forget(0)
    closer.forget(42)  # unknown: no error
    now = BASE + 5 * SIZE
    assert closer.due(0, now, None) == []  # not ours any more
    assert not closer.is_closed(0, BASE)
    assert _starts(closer.due(1, now, None))[0] == BASE  # the other one is untouched
    closer.track(0)
    # Tracked again without its data: it closes like a partition that never had data.
    assert _starts(closer.due(0, now, None)) == [window_start_of(now - GRACE - IDLE, SIZE) - SIZE]


def test_track_does_not_reset_a_known_partition() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(0, BASE + SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE]
    closer.track(0)
    assert closer.is_closed(0, BASE)
    closer.observe(0, BASE + 2 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE + SIZE]


# -- WindowCloser: restored windows -------------------------------------------------------------


def test_reopened_windows_are_closed_after_a_restart_by_timer() -> None:
    before = _closer()
    before.observe(0, BASE + 1)
    before.observe(0, BASE + SIZE + 1)
    before.observe(1, BASE + 1)
    # Crash before anything closed. A fresh closer gets the windows back from the changelog.
    after = _closer()
    for p in (0, 1):
        after.track(p)
    after.reopen(0, BASE)
    after.reopen(0, BASE + SIZE)
    after.reopen(1, BASE)
    now = BASE + 2 * SIZE + GRACE + IDLE
    assert after.due(0, now, None) == [(BASE, "timer"), (BASE + SIZE, "timer")]
    assert after.due(1, now, None) == [(BASE, "timer"), (BASE + SIZE, "timer")]
    assert after.due(0, now, None) == []


def test_reopened_window_is_closed_by_stream_time_after_new_reports() -> None:
    closer = _closer()
    closer.reopen(5, BASE + SIZE)  # without track: reopen starts tracking
    closer.observe(5, BASE + 2 * SIZE + 3)
    now = BASE + SIZE
    assert closer.due(5, now, now) == []
    closer.observe(5, BASE + 2 * SIZE + GRACE)
    assert closer.due(5, now, now) == [(BASE + SIZE, "stream-time")]


def test_reopen_of_an_already_closed_window_does_not_make_it_due_again() -> None:
    closer = _closer()
    closer.observe(0, BASE + 1)
    closer.observe(0, BASE + SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE]
    closer.reopen(0, BASE)
    closer.observe(0, BASE + 2 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE + SIZE]


def test_reopen_makes_an_earlier_window_than_the_data_due() -> None:
    closer = _closer()
    closer.observe(0, BASE + 3 * SIZE + 1)
    closer.reopen(0, BASE + SIZE)  # restored, older than anything seen since the restart
    closer.observe(0, BASE + 4 * SIZE + GRACE)
    assert _starts(closer.due(0, BASE, BASE)) == [BASE + i * SIZE for i in (1, 2, 3)]


# -- WindowCloser: property ---------------------------------------------------------------------


@dataclass
class _Model:
    size: int
    grace: int
    idle: int
    stream: dict[int, int] = field(default_factory=dict)
    last_wall: dict[int, int] = field(default_factory=dict)
    horizon: dict[int, int] = field(default_factory=dict)  # furthest closing point so far
    data: dict[int, set[int]] = field(default_factory=dict)
    emitted: dict[int, list[int]] = field(default_factory=dict)
    quiet_emitted: set[tuple[int, int]] = field(default_factory=set)

    def horizons(self, p: int, now: int) -> tuple[int, int]:
        by_stream = self.stream.get(p, -1) - self.grace
        last = self.last_wall.get(p)
        quiet = last is None or now - last >= self.idle
        by_timer = now - self.grace - self.idle if quiet else -1
        return by_stream, by_timer


class _Replay:
    """A WindowCloser driven by a list of operations next to the model, checking every window
    due() closes against what the model says may close by then."""

    def __init__(self, grace: int, idle: int, tracked: set[int]) -> None:
        self.closer = WindowCloser(SIZE, grace, idle)
        self.m = _Model(SIZE, grace, idle)
        self.now = BASE
        self.tracked = tracked
        for p in tracked:
            self.closer.track(p)

    def observe(self, p: int, value: int) -> None:
        m = self.m
        # Event times trail the wall clock by up to 3 windows (slow producers) or lead a bit.
        event = self.now + value
        start = self.closer.observe(p, event)
        assert start == window_start_of(event, SIZE)
        m.stream[p] = max(m.stream.get(p, -1), event)
        closed = self.closer.is_closed(p, start)
        # Closed exactly when some earlier due() call reached past its end + grace.
        assert closed == (start + SIZE <= m.horizon.get(p, -1))
        if closed:
            assert start not in m.data.get(p, set()) or start in m.emitted.get(p, [])
        else:
            m.data.setdefault(p, set()).add(start)
        m.last_wall[p] = self.now
        self.close_due(p)

    def tick(self, ms: int) -> None:
        self.now += ms
        for q in sorted(set(self.m.stream) | self.tracked):
            self.close_due(q)

    def close_due(self, p: int) -> None:
        m = self.m
        by_stream, by_timer = m.horizons(p, self.now)
        horizon = max(by_stream, by_timer)
        due = self.closer.due(p, self.now, m.last_wall.get(p))
        old = m.horizon.get(p)
        if horizon > (old if old is not None else -1):
            m.horizon[p] = horizon
        emitted = m.emitted.setdefault(p, [])
        if due and not emitted:
            # The first window closed is the oldest with data, no empty history invented before
            # it; a partition without data starts with the window just before the horizon.
            held = m.data.get(p)
            expected = min(held) if held else window_start_of(horizon, SIZE) - SIZE
            assert due[0][0] == expected
        for start, reason in due:
            # Never before its end + grace, by stream time or by the (quiet) timer.
            assert start + SIZE <= horizon
            assert reason == ("stream-time" if by_stream >= by_timer else "timer")
            # Oldest first, contiguous, never twice.
            if emitted:
                assert start == emitted[-1] + SIZE
            emitted.append(start)
        # Exactly the windows that just became closable (none held back).
        assert all(s in emitted for s in m.data.get(p, ()) if s + SIZE <= m.horizon.get(p, -1))


_op = st.one_of(
    st.tuples(st.just("obs"), st.integers(0, 3), st.integers(-3 * SIZE, SIZE // 2)),
    st.tuples(st.just("tick"), st.integers(0, 3), st.integers(0, 2 * SIZE)),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(_op, max_size=60),
    grace=st.integers(0, SIZE),
    idle=st.integers(1, 2 * SIZE),
    tracked=st.sets(st.integers(0, 3)),
)
def test_every_window_with_data_closes_exactly_once_in_order_never_early(
    ops: list[tuple[str, int, int]], grace: int, idle: int, tracked: set[int]
) -> None:
    replay = _Replay(grace, idle, tracked)
    for kind, p, value in ops:
        if kind == "obs":
            replay.observe(p, value)
        else:
            replay.tick(value)

    # Flush: long after everything, every partition is quiet and closes all it holds.
    replay.tick(10 * SIZE + grace + idle)
    m = replay.m
    for p, windows in m.data.items():
        emitted = m.emitted[p]
        assert len(emitted) == len(set(emitted))
        assert emitted == sorted(emitted)
        assert windows <= set(emitted), f"partition {p}: {sorted(windows - set(emitted))} lost"
    for p in tracked - set(m.data):
        # Never had data: still heard from, window after window.
        assert m.emitted[p]


# -- WindowSummary -------------------------------------------------------------------------------


def _summary(
    p: int,
    start: int = BASE,
    partitions: int = 3,
    tenants: dict[tuple[str, str], tuple[int, int]] | None = None,
    residuals: dict[tuple[str, int], tuple[int, int]] | None = None,
    worker: str = "w",
) -> WindowSummary:
    return WindowSummary(
        p,
        partitions,
        start,
        start + SIZE,
        "stream-time",
        tenants if tenants is not None else {("orders", f"t{p}"): (p + 1, 10)},
        residuals if residuals is not None else {},
        worker,
    )


def test_summary_record_roundtrip() -> None:
    s = WindowSummary(
        2,
        6,
        BASE,
        BASE + SIZE,
        "timer",
        {("orders", "acme"): (5, 500), ("orders", "zeta"): (1, 1), ("pay", "acme"): (2, 20)},
        {("orders", -1): (7, 70), ("orders", 3): (1, 9)},
        "worker-1",
    )
    record = s.to_record()
    assert record["tenants"][0] == {
        "topic": "orders",
        "tenant": "acme",
        "records": 5,
        "bytes": 500,
        "top_stream": -1,
        "streams": 0,
    }
    assert [r["partition"] for r in record["residuals"]] == [-1, 3]
    back = WindowSummary.from_record(record)
    assert back == s
    assert dict(back.tenants) == dict(s.tenants)
    assert dict(back.residuals) == dict(s.residuals)


def test_summary_from_record_tolerates_missing_optional_parts() -> None:
    s = WindowSummary.from_record(
        {
            "usage_partition": "1",
            "usage_partitions": 2,
            "window_start": BASE,
            "window_end": BASE + SIZE,
            "closed_by": "timer",
            "tenants": None,
        }
    )
    assert (s.usage_partition, s.worker_id, dict(s.tenants), dict(s.residuals)) == (1, "", {}, {})


_names = st.text("abcxyz/-", min_size=1, max_size=5)
_counts = st.tuples(st.integers(0, 2**40), st.integers(0, 2**50))


@given(
    tenants=st.dictionaries(st.tuples(_names, _names), _counts, max_size=8),
    residuals=st.dictionaries(st.tuples(_names, st.integers(-1, 50)), _counts, max_size=4),
    p=st.integers(0, 63),
    closed_by=st.sampled_from(["stream-time", "timer"]),
    worker=st.text(max_size=8),
)
def test_summary_record_roundtrip_property(
    tenants: dict[tuple[str, str], tuple[int, int]],
    residuals: dict[tuple[str, int], tuple[int, int]],
    p: int,
    closed_by: str,
    worker: str,
) -> None:
    s = WindowSummary(p, 64, BASE, BASE + SIZE, closed_by, tenants, residuals, worker)
    assert WindowSummary.from_record(s.to_record()) == s


# -- WindowAccumulator ---------------------------------------------------------------------------


def test_accumulator_sums_per_partition_and_window() -> None:
    acc = WindowAccumulator()
    acc.add(0, BASE, "orders", "acme", 4, 2, 200)
    acc.add(0, BASE, "orders", "acme", 5, 3, 300)  # another data partition: same tenant total
    acc.add(0, BASE, "orders", "", 4, 7, 70)  # unkeyed: residual by data partition
    acc.add(0, BASE, "orders", "", 4, 1, 10)
    acc.add(0, BASE + SIZE, "orders", "acme", 4, 100, 1)  # next window
    acc.add(1, BASE, "orders", "acme", 4, 1000, 1)  # another usage partition
    s = acc.close(0, BASE, SIZE, 2, "stream-time", "w-1")
    assert (s.usage_partition, s.usage_partitions, s.window_start, s.window_end) == (0, 2, BASE, BASE + SIZE)
    assert (s.closed_by, s.worker_id) == ("stream-time", "w-1")
    assert dict(s.tenants) == {("orders", "acme"): (5, 500)}
    assert dict(s.residuals) == {("orders", 4): (8, 80)}
    # The slot is cleared: closing again gives an empty summary.
    again = acc.close(0, BASE, SIZE, 2, "timer", "w-1")
    assert (dict(again.tenants), dict(again.residuals)) == ({}, {})
    # Other slots are untouched.
    assert dict(acc.close(0, BASE + SIZE, SIZE, 2, "timer", "w").tenants) == {("orders", "acme"): (100, 1)}
    assert dict(acc.close(1, BASE, SIZE, 2, "timer", "w").tenants) == {("orders", "acme"): (1000, 1)}


def test_accumulator_set_tenant_restores_a_total() -> None:
    acc = WindowAccumulator()
    acc.add(0, BASE, "orders", "acme", 0, 1, 1)
    acc.set_tenant(0, BASE, "orders", "acme", 50, 5000)  # replaces
    acc.set_tenant(0, BASE, "orders", "beta", 2, 20)
    acc.add(0, BASE, "orders", "beta", 0, 1, 1)  # adds on top of the restored total
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert dict(s.tenants) == {("orders", "acme"): (50, 5000), ("orders", "beta"): (3, 21)}


def test_accumulator_forget_drops_only_that_partition() -> None:
    acc = WindowAccumulator()
    for p in (0, 1):
        acc.add(p, BASE, "orders", "acme", 0, 1, 1)
        acc.add(p, BASE + SIZE, "orders", "", 0, 1, 1)
    acc.forget(0)
    gone = acc.close(0, BASE, SIZE, 2, "timer", "w")
    gone_next = acc.close(0, BASE + SIZE, SIZE, 2, "timer", "w")
    assert (dict(gone.tenants), dict(gone_next.residuals)) == ({}, {})
    kept = acc.close(1, BASE, SIZE, 2, "timer", "w")
    kept_next = acc.close(1, BASE + SIZE, SIZE, 2, "timer", "w")
    assert dict(kept.tenants) == {("orders", "acme"): (1, 1)}
    assert dict(kept_next.residuals) == {("orders", 0): (1, 1)}


def test_accumulator_caps_tenants_and_folds_the_rest_into_a_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "MAX_TENANTS_PER_SUMMARY", 3)
    acc = WindowAccumulator()
    records = {"a": 50, "b": 40, "c": 30, "d": 30, "e": 2, "f": 1}
    for name, n in records.items():
        acc.add(0, BASE, "orders", name, 0, n, 10 * n)
    acc.add(0, BASE, "pay", "z", 0, 1, 7)
    acc.add(0, BASE, "orders", "", 2, 5, 5)  # an existing residual
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    # The 3 busiest by records (tie c/d broken by key: ("orders", "c") first).
    assert dict(s.tenants) == {
        ("orders", "a"): (50, 500),
        ("orders", "b"): (40, 400),
        ("orders", "c"): (30, 300),
    }
    # The rest folded per topic into partition -1, existing residuals untouched.
    assert dict(s.residuals) == {("orders", -1): (33, 330), ("pay", -1): (1, 7), ("orders", 2): (5, 5)}
    # Nothing lost.
    total_in = sum(records.values()) + 1 + 5
    total_out = sum(r for r, _ in s.tenants.values()) + sum(r for r, _ in s.residuals.values())
    assert total_out == total_in


def test_accumulator_cap_ranks_by_records_not_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "MAX_TENANTS_PER_SUMMARY", 1)
    acc = WindowAccumulator()
    acc.add(0, BASE, "orders", "many-small", 0, 10, 10)
    acc.add(0, BASE, "orders", "few-large", 0, 1, 1_000_000)
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert dict(s.tenants) == {("orders", "many-small"): (10, 10)}
    assert dict(s.residuals) == {("orders", -1): (1, 1_000_000)}


def test_accumulator_under_the_cap_keeps_every_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "MAX_TENANTS_PER_SUMMARY", 3)
    acc = WindowAccumulator()
    for name in "abc":
        acc.add(0, BASE, "orders", name, 0, 1, 1)
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert len(s.tenants) == 3
    assert dict(s.residuals) == {}


def test_add_usage_returns_the_producers_running_totals_and_sums_at_close() -> None:
    acc = WindowAccumulator()
    first = acc.add_usage(
        0, BASE, "p-1", [("orders", "acme", 4, 2, 200, 2, 1), ("orders", "", 4, 7, 70, 7, 1)]
    )
    assert first == [("orders", "acme", 4, 2, 200, 2, 1), ("orders", "", 4, 7, 70, 7, 1)]
    second = acc.add_usage(
        0, BASE, "p-1", [("orders", "acme", 4, 3, 300, 3, 1), ("orders", "acme", 5, 1, 10, 1, 1)]
    )
    # Per (topic, tenant, partition), everything p-1 sent in this window so far.
    assert sorted(second) == [
        ("orders", "", 4, 7, 70, 7, 1),
        ("orders", "acme", 4, 5, 500, 5, 1),
        ("orders", "acme", 5, 1, 10, 1, 1),
    ]
    assert acc.add_usage(0, BASE, "p-2", [("orders", "acme", 0, 1, 1, 1, 1)]) == [
        ("orders", "acme", 0, 1, 1, 1, 1)
    ]
    acc.add(0, BASE, "orders", "acme", 0, 100, 0)  # a report on its own still adds up
    acc.add_usage(0, BASE + SIZE, "p-1", [("orders", "acme", 4, 9, 9, 9, 1)])  # next window
    s = acc.close(0, BASE, SIZE, 1, "stream-time", "w")
    assert dict(s.tenants) == {("orders", "acme"): (107, 511)}
    assert dict(s.residuals) == {("orders", 4): (7, 70)}
    assert s.producers == ("p-1", "p-2")
    assert dict(acc.close(0, BASE + SIZE, SIZE, 1, "timer", "w").tenants) == {("orders", "acme"): (9, 9)}
    # Closed: a new record of p-1 for the window starts from nothing.
    assert acc.add_usage(0, BASE, "p-1", [("orders", "x", 0, 1, 1, 1, 1)]) == [("orders", "x", 0, 1, 1, 1, 1)]


def test_restore_producer_puts_back_totals_and_later_records_add_to_them() -> None:
    acc = WindowAccumulator()
    # As the table holds it after a JSON round trip through the changelog: lists.
    # Rows written before rows had stream figures (5 fields) read as one stream each.
    assert acc.restore_producer(
        2, BASE, "p-1", [["orders", "acme", 4, 5, 500], ["orders", "", 1, 2, 20, 2, 1]]
    )
    assert acc.add_usage(2, BASE, "p-1", [("orders", "acme", 4, 1, 100, 1, 1)]) == [
        ("orders", "acme", 4, 6, 600, 6, 1),
        ("orders", "", 1, 2, 20, 2, 1),
    ]
    # What this accumulator already holds is newer than the table: not restored twice.
    assert not acc.restore_producer(2, BASE, "p-1", [["orders", "acme", 4, 5, 500]])
    s = acc.close(2, BASE, SIZE, 3, "timer", "w")
    assert dict(s.tenants) == {("orders", "acme"): (6, 600)}
    assert dict(s.residuals) == {("orders", 1): (2, 20)}
    assert s.producers == ("p-1",)


def test_restore_producer_rejects_malformed_rows() -> None:
    acc = WindowAccumulator()
    with pytest.raises((TypeError, ValueError)):
        acc.restore_producer(0, BASE, "p", [["orders", "acme", 4]])
    with pytest.raises((TypeError, ValueError)):
        acc.restore_producer(0, BASE, "q", [["orders", "acme", "x", 1, 1]])
    with pytest.raises(KeyError):
        acc.restore_producer(0, BASE, "r", {"offset": 3})
    with pytest.raises(TypeError):
        acc.restore_producer(0, BASE, "s", {"offset": 3, "totals": "rows"})


def test_restored_totals_keep_the_offset_of_the_record_that_made_them() -> None:
    acc = WindowAccumulator()
    assert acc.restore_producer(0, BASE, "p-1", stored_totals([("orders", "a", 1, 2, 3, 2, 1)], 41))
    assert acc.applied_offset(0, BASE, "p-1") == 41
    assert acc.applied_offset(0, BASE, "p-2") == -1
    assert acc.applied_offset(0, BASE + SIZE, "p-1") == -1
    acc.add_usage(0, BASE, "p-1", [("orders", "a", 1, 1, 1, 1, 1)], offset=42)
    assert acc.applied_offset(0, BASE, "p-1") == 42
    acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert acc.applied_offset(0, BASE, "p-1") == -1


def test_forget_drops_producer_totals_of_that_partition_only() -> None:
    acc = WindowAccumulator()
    for p in (0, 1):
        acc.add_usage(p, BASE, "p-1", [("orders", "acme", 0, 1, 1, 1, 1)])
    acc.forget(0)
    assert dict(acc.close(0, BASE, SIZE, 2, "timer", "w").tenants) == {}
    assert acc.add_usage(1, BASE, "p-1", [("orders", "acme", 0, 1, 1, 1, 1)]) == [
        ("orders", "acme", 0, 2, 2, 2, 1)
    ]


def test_producer_totals_count_against_the_summary_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "MAX_TENANTS_PER_SUMMARY", 2)
    acc = WindowAccumulator()
    acc.add_usage(0, BASE, "p-1", [("orders", n, 0, r, r, r, 1) for n, r in (("a", 9), ("b", 8), ("c", 1))])
    acc.add_usage(0, BASE, "p-2", [("orders", "c", 1, 1, 1, 1, 1), ("orders", "d", 1, 3, 3, 3, 1)])
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert dict(s.tenants) == {("orders", "a"): (9, 9), ("orders", "b"): (8, 8)}
    assert dict(s.residuals) == {("orders", -1): (5, 5)}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p-1", "p-2", "p-3"]),
            st.lists(
                st.tuples(
                    st.sampled_from(["orders", "pay"]),
                    st.sampled_from(["", "a", "b", "c"]),
                    st.integers(-1, 3),
                    st.integers(0, 1000),
                    st.integers(0, 10**9),
                    st.integers(0, 1000),
                    st.integers(1, 64),
                ),
                max_size=8,
            ),
        ),
        max_size=20,
    )
)
def test_add_usage_totals_equal_adding_each_report(
    records: list[tuple[str, list[tuple[str, str, int, int, int, int, int]]]],
) -> None:
    batched, single = WindowAccumulator(), WindowAccumulator()
    for producer, rows in records:
        batched.add_usage(0, BASE, producer, rows)
        for topic, tenant, partition, n, nbytes, _, _ in rows:
            single.add(0, BASE, topic, tenant, partition, n, nbytes)
    a = batched.close(0, BASE, SIZE, 1, "timer", "w")
    b = single.close(0, BASE, SIZE, 1, "timer", "w")
    assert (dict(a.tenants), dict(a.residuals)) == (dict(b.tenants), dict(b.residuals))


def test_stream_figures_add_up_to_a_bound_over_intervals_partitions_and_producers() -> None:
    """A tenant's heaviest stream in a window: summed over a producer's intervals (each may be
    the same stream), the most on one of its partitions (a key goes to one shard), summed
    over producers (they may send the same key). Streams: the most one producer saw."""
    acc = WindowAccumulator()
    # p-1: tenant "big" sharded over 4 and 5, 64 keys; two intervals.
    acc.add_usage(
        0, BASE, "p-1", [("orders", "big", 4, 320, 0, 10, 32), ("orders", "big", 5, 320, 0, 12, 32)]
    )
    acc.add_usage(0, BASE, "p-1", [("orders", "big", 4, 320, 0, 11, 32), ("orders", "big", 5, 320, 0, 9, 32)])
    acc.add_usage(0, BASE, "p-2", [("orders", "big", 4, 100, 0, 5, 20)])
    # A key-only tenant: one stream, all its records.
    acc.add_usage(0, BASE, "p-1", [("orders", "solo", 1, 50, 0, 50, 1)])
    s = acc.close(0, BASE, SIZE, 1, "timer", "w")
    assert dict(s.tenants) == {("orders", "big"): (1380, 0), ("orders", "solo"): (50, 0)}
    # p-1: max(10 + 11, 12 + 9) = 21; p-2: 5; summed 26. Streams: p-1 saw 32 + 32.
    assert dict(s.streams) == {("orders", "big"): (26, 64)}
    back = WindowSummary.from_record(s.to_record())
    assert back == s


def test_a_forged_summary_cannot_make_a_tenant_look_more_splittable_than_even() -> None:
    record = WindowSummary(0, 1, BASE, BASE + SIZE, "timer", {("t", "a"): (100, 0)}, {}).to_record()
    record["tenants"][0].update(top_stream=0, streams=10)
    assert dict(WindowSummary.from_record(record).streams) == {("t", "a"): (10, 10)}
    record["tenants"][0].update(top_stream=100, streams=10)
    assert dict(WindowSummary.from_record(record).streams) == {}


# -- WindowCompletion ----------------------------------------------------------------------------

MAX_WAIT = 30_000


def test_complete_window_is_handed_out_once_all_partitions_arrived() -> None:
    wc = WindowCompletion(MAX_WAIT)
    wc.add(_summary(2))
    wc.add(_summary(0))
    assert wc.ready(BASE + SIZE) == []
    wc.add(_summary(1))
    (w,) = wc.ready(BASE + SIZE)
    assert (w.window_start, w.window_end, w.missing_partitions, w.complete) == (BASE, BASE + SIZE, (), True)
    assert [s.usage_partition for s in w.summaries] == [0, 1, 2]  # sorted by partition
    assert wc.ready(BASE + 10 * MAX_WAIT) == []  # never twice
    assert wc.planned_through == BASE


def test_incomplete_window_is_handed_out_when_overdue_with_missing_partitions() -> None:
    wc = WindowCompletion(MAX_WAIT)
    wc.add(_summary(1, partitions=4))
    end = BASE + SIZE
    assert wc.ready(end + MAX_WAIT - 1) == []
    (w,) = wc.ready(end + MAX_WAIT)
    assert w.missing_partitions == (0, 2, 3)
    assert not w.complete
    assert [s.usage_partition for s in w.summaries] == [1]


def test_later_complete_window_waits_behind_an_earlier_incomplete_one() -> None:
    wc = WindowCompletion(MAX_WAIT)
    first, second, third = BASE, BASE + SIZE, BASE + 2 * SIZE
    wc.add(_summary(0, first, partitions=2))
    for p in (0, 1):
        wc.add(_summary(p, second, partitions=2))
        wc.add(_summary(p, third, partitions=2))
    assert wc.ready(second + SIZE) == []  # first not overdue yet
    wc.add(_summary(1, first, partitions=2))  # first completes
    assert [w.window_start for w in wc.ready(second + SIZE)] == [first, second, third]


def test_overdue_window_releases_the_complete_ones_behind_it_in_order() -> None:
    wc = WindowCompletion(MAX_WAIT)
    first, second = BASE, BASE + SIZE
    wc.add(_summary(0, second, partitions=2))
    wc.add(_summary(1, second, partitions=2))
    wc.add(_summary(1, first, partitions=2))  # arrives after, but plans first
    out = wc.ready(first + SIZE + MAX_WAIT)
    assert [(w.window_start, w.missing_partitions) for w in out] == [(first, (0,)), (second, ())]


def test_duplicate_summaries_count_and_the_first_wins() -> None:
    wc = WindowCompletion(MAX_WAIT)
    first = _summary(0, partitions=2, tenants={("orders", "a"): (1, 1)}, worker="old-owner")
    wc.add(first)
    wc.add(_summary(0, partitions=2, tenants={("orders", "a"): (99, 99)}, worker="new-owner"))
    assert wc.duplicates == 1
    wc.add(_summary(1, partitions=2))
    (w,) = wc.ready(BASE)
    assert w.summaries[0] is first
    assert w.tenant_totals()[("orders", "a")] == (1, 1)


def test_summaries_for_planned_windows_count_as_late() -> None:
    wc = WindowCompletion(MAX_WAIT)
    wc.add(_summary(0, partitions=1))
    wc.add(_summary(0, BASE + SIZE, partitions=1))
    assert len(wc.ready(BASE)) == 2
    wc.add(_summary(0, partitions=1))  # a re-close of a planned window
    wc.add(_summary(0, BASE - SIZE, partitions=1))  # older than anything planned
    assert (wc.late, wc.duplicates) == (2, 0)
    assert wc.ready(BASE + 100 * MAX_WAIT) == []


def test_complete_window_totals_sum_across_partitions() -> None:
    a = _summary(
        0, tenants={("orders", "acme"): (3, 30), ("pay", "acme"): (1, 1)}, residuals={("orders", 2): (5, 50)}
    )
    b = _summary(
        1,
        tenants={("orders", "acme"): (4, 40), ("orders", "beta"): (2, 2)},
        residuals={("orders", 2): (1, 10), ("orders", -1): (9, 9)},
    )
    w = CompleteWindow(BASE, BASE + SIZE, (a, b), (2,))
    assert w.tenant_totals() == {
        ("orders", "acme"): (7, 70),
        ("pay", "acme"): (1, 1),
        ("orders", "beta"): (2, 2),
    }
    assert w.residual_totals() == {("orders", 2): (6, 60), ("orders", -1): (9, 9)}
    assert not w.complete
    assert CompleteWindow(BASE, BASE + SIZE, (), ()).tenant_totals() == {}


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, SIZE)), max_size=40),
    partitions=st.integers(1, 3),
)
def test_completion_hands_out_in_order_once_and_only_when_complete_or_overdue(
    arrivals: list[tuple[int, int, int]], partitions: int
) -> None:
    wc = WindowCompletion(MAX_WAIT)
    now = BASE
    seen: set[tuple[int, int]] = set()
    handed: list[int] = []
    accepted = late = dupes = 0
    for window, p, dt in arrivals:
        now += dt
        start = BASE + window * SIZE
        if p < partitions:
            s = _summary(p, start, partitions)
            wc.add(s)
            if handed and start <= handed[-1]:
                late += 1
            elif (start, p) in seen:
                dupes += 1
            else:
                seen.add((start, p))
                accepted += 1
        for w in wc.ready(now):
            assert not handed or w.window_start > handed[-1]
            handed.append(w.window_start)
            got = tuple(s.usage_partition for s in w.summaries)
            assert got == tuple(sorted({q for (st_, q) in seen if st_ == w.window_start}))
            assert w.missing_partitions == tuple(q for q in range(partitions) if q not in got)
            assert w.complete or now >= w.window_end + MAX_WAIT
    assert (wc.late, wc.duplicates) == (late, dupes)
    # Eventually everything accepted is planned.
    for w in wc.ready(now + 10 * SIZE + MAX_WAIT):
        handed.append(w.window_start)
    assert handed == sorted(set(handed))
    assert set(handed) == {start for start, _ in seen}


def test_summary_names_the_producers_seen_in_its_window_and_round_trips() -> None:
    from routing_app.windows import WindowAccumulator, WindowSummary

    acc = WindowAccumulator()
    acc.add(0, 1000, "orders", "a", 2, 5, 50)
    acc.saw_producer(0, 1000, "p-2")
    acc.saw_producer(0, 1000, "p-1")
    acc.saw_producer(0, 1000, "p-2")
    acc.saw_producer(1, 1000, "p-9")  # another usage partition: not in this summary
    summary = acc.close(0, 1000, 1000, 2, "timer", "w")
    assert summary.producers == ("p-1", "p-2")
    assert WindowSummary.from_record(summary.to_record()) == summary
    assert acc.close(0, 1000, 1000, 2, "timer", "w").producers == ()
