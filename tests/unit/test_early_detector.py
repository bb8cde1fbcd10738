"""The early path's detector (windows/early.py): a tenant confirmed above its surge level for
`confirm` report intervals fires once; a spike, noise, or a tenant without a baseline does not,
and a tenant that fired does not fire again within the cool-down unless it grows once more."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.windows import WindowSummary
from routing_app.windows.early import (
    EARLY,
    Surge,
    SurgeDetector,
    SurgeRules,
    early_summary,
)

UP = 3  # the usage partition of every tenant here
WINDOW_MS = 10_000
INTERVAL_MS = 500
RULES = SurgeRules(factor=2.0, min_rate=100.0, confirm=2, cooldown_ms=30_000)


def closed(tenants: dict[str, float], end_ms: int = WINDOW_MS) -> WindowSummary:
    """A window of the usage partition in which each tenant sent its rate (records/s)."""
    seconds = WINDOW_MS / 1000
    return WindowSummary(
        UP,
        6,
        end_ms - WINDOW_MS,
        end_ms,
        "stream-time",
        {("orders", t): (round(r * seconds), round(r * seconds) * 100) for t, r in tenants.items()},
        {},
    )


def report(
    detector: SurgeDetector,
    end_ms: int,
    rates: dict[str, float],
    producer: str = "p-1",
    interval_ms: int = INTERVAL_MS,
) -> list[Surge]:
    """One usage record of one producer: each tenant at its rate over the interval."""
    seconds = interval_ms / 1000
    rows = [
        ("orders", t, 0, round(r * seconds), round(r * seconds) * 100, round(r * seconds), 1)
        for t, r in rates.items()
    ]
    return detector.observe(UP, producer, end_ms - interval_ms, end_ms, rows)


def test_a_surge_fires_on_its_second_interval_above_the_level() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 25.0, "calm": 25.0}))
    t = WINDOW_MS
    for _ in range(4):
        t += INTERVAL_MS
        assert report(detector, t, {"hot": 25.0, "calm": 25.0}) == []
    t += INTERVAL_MS
    assert report(detector, t, {"hot": 500.0, "calm": 25.0}) == []  # one interval: a spike yet
    t += INTERVAL_MS
    (surge,) = report(detector, t, {"hot": 500.0, "calm": 25.0})
    assert (surge.topic, surge.tenant, surge.usage_partition) == ("orders", "hot", UP)
    assert surge.records_per_s == 500.0
    assert surge.baseline_per_s == 25.0
    assert (surge.since_ms, surge.until_ms) == (t - 2 * INTERVAL_MS, t)


def test_a_single_spike_does_not_fire() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 25.0}))
    t = WINDOW_MS
    fired = []
    for rate in [25.0, 900.0, 25.0, 25.0, 900.0, 25.0, 900.0, 25.0]:
        t += INTERVAL_MS
        fired += report(detector, t, {"hot": rate})
    assert fired == []


def test_another_producers_report_within_a_spike_does_not_confirm_it() -> None:
    """p-1 spikes for one interval; p-2, half an interval out of phase, reports while the
    spike is p-1's latest figure: the tenant is above the level twice, by one spike."""
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 50.0}))
    t = WINDOW_MS
    fired = report(detector, t, {"hot": 25.0}, "p-1")
    fired += report(detector, t + INTERVAL_MS // 2, {"hot": 25.0}, "p-2")
    fired += report(detector, t + INTERVAL_MS, {"hot": 900.0}, "p-1")
    fired += report(detector, t + 3 * INTERVAL_MS // 2, {"hot": 25.0}, "p-2")
    fired += report(detector, t + 2 * INTERVAL_MS, {"hot": 25.0}, "p-1")
    assert fired == []


def test_a_surge_spread_over_producers_fires() -> None:
    """Each of four producers sends a quarter: none alone reaches the level, all together do."""
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 20.0}))
    fired: list[Surge] = []
    for step in range(1, 4):
        for i in range(4):
            fired += report(detector, WINDOW_MS + step * INTERVAL_MS + 10 * i, {"hot": 100.0}, f"p-{i}")
    assert [s.tenant for s in fired] == ["hot"]
    assert fired[0].records_per_s == 400.0


def test_small_tenants_doubling_stay_below_the_floor() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"small": 10.0}))
    fired = []
    for step in range(1, 10):
        fired += report(detector, WINDOW_MS + step * INTERVAL_MS, {"small": 90.0})
    assert fired == []


def test_no_baseline_no_surge() -> None:
    """A worker that never closed a window of the partition knows nothing of its traffic."""
    detector = SurgeDetector(RULES)
    fired = []
    for step in range(1, 10):
        fired += report(detector, step * INTERVAL_MS, {"hot": 5000.0})
    assert fired == []
    detector.window_closed(closed({"other": 1.0}, end_ms=10 * INTERVAL_MS))
    for step in range(10, 13):  # a tenant absent from a closed window: its baseline is 0
        fired += report(detector, step * INTERVAL_MS, {"hot": 5000.0})
    assert [s.tenant for s in fired] == ["hot"]


def test_once_per_surge_within_the_cool_down_unless_it_grows_again() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 25.0}))
    t = WINDOW_MS
    fired: list[Surge] = []
    for _ in range(20):  # ten seconds at 500/s, and the window that saw 25/s still the last one
        t += INTERVAL_MS
        fired += report(detector, t, {"hot": 500.0})
    assert len(fired) == 1
    for _ in range(4):  # grows by the factor once more: a new surge, cool-down or not
        t += INTERVAL_MS
        fired += report(detector, t, {"hot": 1200.0})
    assert [s.records_per_s for s in fired] == [500.0, 1200.0]
    # The next window saw the crowd: its rate is the baseline now, and nothing fires.
    detector.window_closed(closed({"hot": 1200.0}, end_ms=t))
    for _ in range(80):
        t += INTERVAL_MS
        fired += report(detector, t, {"hot": 1300.0})
    assert len(fired) == 2


def test_a_producer_that_stopped_sending_drops_out_of_the_rate() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 100.0}))
    report(detector, WINDOW_MS + INTERVAL_MS, {"hot": 150.0}, "p-old")
    fired = []
    for step in range(2, 8):  # p-old is gone; p-new alone sends 150/s, below 2 x 100/s
        fired += report(detector, WINDOW_MS + step * INTERVAL_MS, {"hot": 150.0}, "p-new")
    assert fired == []


def test_forgetting_a_partition_forgets_its_tenants_and_baselines() -> None:
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"hot": 25.0}))
    report(detector, WINDOW_MS + INTERVAL_MS, {"hot": 500.0})
    detector.forget(UP)
    assert detector.tracked() == 0
    assert report(detector, WINDOW_MS + 2 * INTERVAL_MS, {"hot": 500.0}) == []


def test_the_early_summary_carries_the_surge_rate_over_its_span() -> None:
    surge = Surge(UP, "orders", "hot", 480.0, 48_000.0, 240.0, 2, 25.0, 1_000, 2_000)
    summary = early_summary(surge, 6, "w-1")
    assert summary.closed_by == EARLY
    assert (summary.window_start, summary.window_end) == (1_000, 2_000)
    assert summary.tenants == {("orders", "hot"): (480, 48_000)}
    assert summary.streams == {("orders", "hot"): (240, 2)}
    assert WindowSummary.from_record(summary.to_record()) == summary


@settings(max_examples=200, deadline=None)
@given(
    baseline=st.floats(min_value=0.0, max_value=5000.0),
    noise=st.lists(st.floats(min_value=0.0, max_value=1.99), min_size=1, max_size=60),
    producers=st.integers(min_value=1, max_value=4),
    phase=st.integers(min_value=0, max_value=INTERVAL_MS - 1),
)
def test_noise_below_the_factor_never_fires(
    baseline: float, noise: list[float], producers: int, phase: int
) -> None:
    """Whatever its size, a tenant whose producers together stay below factor x its baseline
    (or below the floor) fires nothing, whatever the producers' phases."""
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"t": baseline}))
    t = WINDOW_MS
    for wobble in noise:
        t += INTERVAL_MS
        for i in range(producers):
            end = t + (phase * i) % INTERVAL_MS
            assert report(detector, end, {"t": baseline * wobble / producers}, f"p-{i}") == []


@settings(max_examples=200, deadline=None)
@given(
    baseline=st.floats(min_value=0.0, max_value=5000.0),
    factor=st.floats(min_value=2.0, max_value=50.0),
    before=st.integers(min_value=0, max_value=10),
    intervals=st.integers(min_value=2, max_value=40),
)
def test_a_sustained_surge_fires_exactly_once_after_confirming(
    baseline: float, factor: float, before: int, intervals: int
) -> None:
    """From one producer, above the level for `intervals` intervals (at least `confirm`): one
    surge, on the `confirm`-th interval above, whatever came before."""
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"t": baseline}))
    surge_rate = max(factor * baseline, RULES.min_rate) * 1.01 + 1.0
    t = WINDOW_MS
    for _ in range(before):
        t += INTERVAL_MS
        assert report(detector, t, {"t": baseline}) == []
    fired_at = []
    for i in range(intervals):
        t += INTERVAL_MS
        if report(detector, t, {"t": surge_rate}):
            fired_at.append(i + 1)
    assert fired_at == [RULES.confirm]


def test_a_sharded_tenants_rows_add_up_and_count_as_one_interval() -> None:
    """A tenant on two partitions has two rows in a record: together they are its rate, and
    one record is one interval (not two confirmations)."""
    detector = SurgeDetector(RULES)
    detector.window_closed(closed({"wide": 100.0}))
    seconds = INTERVAL_MS / 1000

    def shards(end: int, each: float) -> list[Surge]:
        rows = [("orders", "wide", p, round(each * seconds), 0, round(each * seconds), 1) for p in (0, 1)]
        return detector.observe(UP, "p-1", end - INTERVAL_MS, end, rows)

    assert shards(WINDOW_MS + INTERVAL_MS, 60.0) == []  # 120/s: below 2 x 100/s
    assert shards(WINDOW_MS + 2 * INTERVAL_MS, 150.0) == []  # 300/s, but one interval
    (surge,) = shards(WINDOW_MS + 3 * INTERVAL_MS, 150.0)
    assert surge.records_per_s == 300.0
    assert surge.streams == 2
