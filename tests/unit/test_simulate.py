"""The simulator: traffic model, baselines, a small run against hashing, the CLI's JSON line."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from routing_app.cli import main
from routing_app.demo.run import DEMO_POLICY
from routing_app.demo.traffic import TrafficPlan
from routing_app.planner import Action, Policy, ReasonKind
from routing_app.simulate import SimConfig, Traffic, TrafficConfig, run_simulation
from routing_app.simulate.replay import replay_demo
from routing_app.simulate.run import TOPIC, pkg_loads, tenant_rates_of
from routing_app.simulate.traffic import KEYLESS, zipf_top_share

SMALL = SimConfig(
    traffic=TrafficConfig(tenants=2_000, total_rate=0.5 * 5_000 * 20, diurnal_period_s=1_800.0),
    partitions=20,
    hours=0.5,
)


@pytest.fixture(scope="module")
def small_run() -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = run_simulation(SMALL)
    return result.summary(), time.perf_counter() - started


def test_a_small_simulation_beats_hashing(small_run: tuple[dict[str, Any], float]) -> None:
    # Its speed is in the summary's "seconds"; machines are shared, so it is not asserted.
    summary, _ = small_run
    assert summary["windows"] == 180
    planner = summary["max_over_mean"]
    assert 1.0 <= planner < summary["hash_max_over_mean"]
    assert planner < summary["pkg_max_over_mean"]
    assert planner <= 1.10
    assert summary["sharded_tenants"] >= 1
    assert summary["moved_fraction_per_hour"] <= 0.05


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    config = replace(SMALL, hours=0.1)
    first, second = run_simulation(config), run_simulation(config)
    assert [w.max_over_mean for w in first.windows] == [w.max_over_mean for w in second.windows]
    assert first.routes == second.routes
    other = run_simulation(replace(config, traffic=replace(config.traffic, seed=2)))
    assert [w.max_over_mean for w in other.windows] != [w.max_over_mean for w in first.windows]


def test_every_route_names_existing_partitions_and_sharding_is_the_only_split() -> None:
    result = run_simulation(replace(SMALL, hours=0.2))
    for (topic, tenant), route in result.routes.items():
        assert route.tenant == tenant and topic == "sim.events"
        assert all(0 <= p < SMALL.partitions for p in route.partitions)
        assert len(set(route.partitions)) == len(route.partitions)
    epochs = [route.epoch for route in result.routes.values()]
    assert all(epoch >= 1 for epoch in epochs)


# -- traffic ------------------------------------------------------------------------------------


def test_zipf_rates_sum_to_the_total_and_follow_the_exponent() -> None:
    traffic = Traffic(
        TrafficConfig(
            tenants=1_000,
            zipf=1.2,
            total_rate=10_000.0,
            noise=0.0,
            flash=False,
            diurnal=False,
            churn_per_hour=0.0,
        )
    )
    assert math.fsum(traffic.base) == pytest.approx(10_000.0)
    assert traffic.base[0] / traffic.base[9] == pytest.approx(10**1.2)
    rates = traffic.step(0.0, 1_000_000.0)  # so long a window that counting noise vanishes
    assert sum(rates.values()) == pytest.approx(10_000.0, rel=1e-2)


def test_flash_crowds_diurnal_wave_and_churn() -> None:
    config = TrafficConfig(
        tenants=500,
        total_rate=5_000.0,
        noise=0.0,
        flash_every_s=600.0,
        flash_duration_s=120.0,
        diurnal_period_s=3_600.0,
        churn_per_hour=0.5,
        seed=3,
    )
    traffic = Traffic(config)
    assert traffic.diurnal_factor(900.0) == pytest.approx(1.3)
    assert traffic.diurnal_factor(2_700.0) == pytest.approx(0.7)
    names_before = list(traffic.names)
    for window in range(60):  # ten minutes of 10 s windows
        rates = traffic.step(window * 10.0, 10.0)
    assert traffic.flashes and traffic.flashes[0].start_s == 300.0
    assert traffic.arrivals > 0 and traffic.names != names_before
    calm = Traffic(replace(config, flash=False, churn_per_hour=0.0))
    during = Traffic(replace(config, churn_per_hour=0.0))
    for window in range(32):  # the first flash runs from 300 s to 420 s
        calm_rates, hot_rates = calm.step(window * 10.0, 10.0), during.step(window * 10.0, 10.0)
    flash = during.flashes[0]
    assert config.flash_ranks[0] <= flash.rank <= config.flash_ranks[1]
    assert hot_rates[flash.tenant] / calm_rates[flash.tenant] == pytest.approx(20.0, rel=0.3)
    assert rates  # the last window still has traffic


def test_key_profiles_are_drawn_per_tenant_and_leave_the_rates_alone() -> None:
    config = TrafficConfig(tenants=2_000, total_rate=20_000.0, churn_per_hour=2.0, seed=5)
    traffic = Traffic(config)
    profiles = [traffic.profile(name) for name in traffic.names]
    again = Traffic(config)
    assert profiles == [again.profile(name) for name in again.names]  # the seed's
    other = Traffic(replace(config, seed=6))
    assert profiles != [other.profile(name) for name in other.names]
    keyless = sum(1 for p in profiles if p.keyless)
    assert 0.25 * 2_000 < keyless < 0.35 * 2_000  # keyless_fraction 0.3
    for profile in profiles:
        if profile.keyless:
            assert profile == KEYLESS and profile.top_stream(300.0) == 300.0
        else:
            assert 1 <= profile.keys <= config.keys_max and 0.0 <= profile.zipf <= config.key_zipf
            assert profile.top_share == zipf_top_share(profile.keys, profile.zipf)
            assert 1 / profile.keys <= profile.top_share <= 1.0
    assert max(p.keys for p in profiles) > 1_000 and min(p.keys for p in profiles) < 10
    # Key settings change no rate (their own random stream); churned tenants get a profile.
    flat = Traffic(replace(config, keyless_fraction=1.0))
    for window in range(30):
        rates = traffic.step(window * 10.0, 10.0)
        assert flat.step(window * 10.0, 10.0) == rates
        assert set(rates) <= set(traffic.profiles)
    assert traffic.arrivals > 0 and set(traffic.profiles) == set(traffic.names)
    assert all(flat.profile(name) is KEYLESS for name in flat.names)


def test_the_heaviest_key_of_a_zipf_distribution() -> None:
    assert zipf_top_share(1, 1.3) == 1.0
    assert zipf_top_share(64, 0.0) == pytest.approx(1 / 64)
    for keys in (2, 300, 5_000):
        for exponent in (0.3, 1.0, 1.7):
            exact = 1 / math.fsum(k**-exponent for k in range(1, keys + 1))
            assert zipf_top_share(keys, exponent) == pytest.approx(exact, rel=1e-6)


def test_the_planner_sees_every_tenants_heaviest_stream() -> None:
    traffic = Traffic(TrafficConfig(tenants=300, total_rate=3_000.0, keyless_fraction=0.5))
    rates = traffic.step(0.0, 10.0)
    seen = tenant_rates_of(traffic, rates)
    assert set(seen) == {(TOPIC, t) for t in rates}
    for (_, tenant), tr in seen.items():
        profile = traffic.profile(tenant)
        assert tr.records_per_s == rates[tenant] and tr.streams == profile.keys
        assert tr.top_stream_per_s == pytest.approx(rates[tenant] * profile.top_share)
        if profile.keyless:
            assert tr.top_stream_per_s == tr.records_per_s and tr.streams == 1


def test_key_only_tenants_are_never_sharded_many_even_keys_are() -> None:
    config = replace(SMALL, hours=0.25)
    keyless = run_simulation(replace(config, traffic=replace(config.traffic, keyless_fraction=1.0)))
    summary = keyless.summary()
    assert "shard" not in keyless.actions
    assert summary["sharded_tenants"] == 0
    assert not [r for r in keyless.routes.values() if len(r.partitions) > 1]
    assert summary["elephants"] >= 1 and summary["unsplittable_elephants"] == summary["elephants"]
    assert 1 <= summary["unsplittable_isolations"] <= keyless.actions["isolate"]
    assert 1 <= summary["unsplittable_isolated_tenants"] <= summary["unsplittable_elephants"]
    # The biggest tenant's one stream alone makes its partition that much above the mean.
    assert summary["max_over_mean"] >= summary["stream_floor_max_over_mean"] > 1.10

    keyed = run_simulation(
        replace(config, traffic=replace(config.traffic, keyless_fraction=0.0, keys_max=100_000, key_zipf=0.0))
    )
    summary = keyed.summary()
    assert keyed.actions["shard"] >= 1 and summary["sharded_tenants"] >= 1
    assert summary["unsplittable_elephants"] == summary["unsplittable_isolations"] == 0
    assert summary["elephants"] >= summary["sharded_tenants"]
    assert summary["max_over_mean"] <= 1.10 and summary["stream_floor_max_over_mean"] < 1.0


def test_pkg_splits_a_tenant_between_its_two_choices() -> None:
    # a splits 5/5 over 0 and 1; b fills 2 up to 5, then splits the rest over 0 and 2.
    loads = pkg_loads({"a": 10.0, "b": 8.0}, {"a": 0, "b": 0}, {"a": 1, "b": 2}, 3)
    assert loads == pytest.approx([6.5, 5.0, 6.5])
    assert pkg_loads({"a": 10.0, "b": 4.0}, {"a": 0, "b": 0}, {"a": 1, "b": 2}, 3) == [5, 5, 4]
    alone = pkg_loads({"c": 6.0}, {"c": 1}, {"c": 1}, 2)
    assert alone == [0.0, 6.0]


# -- the command --------------------------------------------------------------------------------


def test_simulate_json_ends_with_one_json_line() -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["simulate", "--tenants", "1000", "--partitions", "10", "--hours", "0.1", "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for key in (
        "max_over_mean",
        "hash_max_over_mean",
        "pkg_max_over_mean",
        "moved_fraction_per_hour",
        "sharded_tenants",
        "windows",
        "seconds",
        "elephants",
        "unsplittable_elephants",
        "unsplittable_isolations",
        "unsplittable_isolated_tenants",
        "stream_floor_max_over_mean",
    ):
        assert key in figures, key
    assert (figures["keyless_fraction"], figures["keys_max"], figures["key_zipf"]) == (0.3, 10_000, 1.0)
    assert figures["windows"] == 36
    assert isinstance(figures["sharded_tenants"], int)
    assert figures["targets"] == {"max_over_mean": 1.10, "moved_fraction_per_hour": 0.01}
    assert set(figures["targets_met"]) == set(figures["targets"])
    assert figures["timeline"] and "minute" in figures["timeline"][0]
    assert figures["policy"]["max_shards"] is None


def test_simulate_takes_the_key_distribution() -> None:
    args = ["simulate", "--tenants", "300", "--partitions", "6", "--hours", "0.05", "--json"]
    result = CliRunner().invoke(
        main, [*args, "--keyless-fraction", "1", "--keys-max", "50", "--key-zipf", "0.5"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["keyless_fraction"], figures["keys_max"], figures["key_zipf"]) == (1, 50, 0.5)
    assert figures["sharded_tenants"] == 0 and "shard" not in figures["actions"]
    assert figures["unsplittable_elephants"] == figures["elephants"]
    for bad in (["--keyless-fraction", "1.5"], ["--keys-max", "0"], ["--key-zipf", "-1"]):
        assert CliRunner().invoke(main, [*args, *bad]).exit_code == 2, bad
    help_text = CliRunner().invoke(main, ["simulate", "--help"]).stdout
    assert "--keyless-fraction" in help_text and "--keys-max" in help_text
    assert "--key-zipf" in help_text


def test_simulate_prints_a_table_without_json() -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--tenants",
            "500",
            "--partitions",
            "8",
            "--hours",
            "0.05",
            "--no-flash",
            "--no-diurnal",
            "--churn",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "max / mean" in result.stdout and "PKG" in result.stdout
    assert "unsplittable" in result.stdout
    assert not result.stdout.lstrip().startswith("{")


def test_simulate_takes_policy_overrides() -> None:
    args = ["simulate", "--tenants", "200", "--partitions", "4", "--hours", "0.01", "--json"]
    result = CliRunner().invoke(
        main, [*args, "--policy", "shard_fill=1,min_dwell_s=60", "--capacity", "2000"]
    )
    assert result.exit_code == 0, result.output
    policy = json.loads(result.stdout)["policy"]
    assert (policy["shard_fill"], policy["min_dwell_s"], policy["partition_capacity"]) == (1, 60, 2000)
    bad = CliRunner().invoke(main, [*args, "--policy", "no_such=1"])
    assert bad.exit_code == 2 and "no_such" in bad.output


# -- the demo's workload, replayed ----------------------------------------------------------------


def test_the_demo_isolates_the_hot_tenant_and_merges_it_back_without_churn() -> None:
    """The demo's traffic and policy, with the live loop's timing (broker rates ahead of the
    window, moves that drain): tenant-hot is isolated, merges back once cool, nothing else."""
    from routing_app.app.policy_text import policy_from_text

    policy = policy_from_text(DEMO_POLICY)
    for seed in (1, 2, 3):
        replay = replay_demo(TrafficPlan(hot_start_s=15, hot_end_s=60), policy, 120, seed=seed)
        assert [(c.action, c.tenant) for _, c in replay.decisions] == [
            (Action.ISOLATE, "tenant-hot"),
            (Action.MERGE, "tenant-hot"),
        ], replay.decisions
        (isolated_at, _), (merged_at, _) = replay.decisions
        assert 15 < isolated_at <= 15 + 2 * 5 + 2  # within two windows of turning hot
        assert 60 + 20 < merged_at <= 60 + 20 + 3 * 5 + 2  # cool-down, then a window or so
    # Beyond what one partition should carry (0.7 x 1,000/s): the demo's producer sends
    # key-only records, one ordered stream, so it is isolated, never sharded...
    plan_big = TrafficPlan(records_per_s=6_000, hot_start_s=15, hot_end_s=60)
    big = replay_demo(plan_big, policy, 120)
    assert [c.action for _, c in big.decisions] == [Action.ISOLATE, Action.MERGE]
    (_, isolated), _ = big.decisions
    assert "it is one ordered stream (records without a secondary key)" in isolated.reason
    assert isolated.kind is ReasonKind.UNSPLITTABLE
    # ... while the same traffic spread over 64 keys is sharded.
    keyed = replay_demo(plan_big, policy, 120, keys=64)
    assert [c.action for _, c in keyed.decisions] == [Action.SHARD, Action.MERGE]
    (_, sharded), _ = keyed.decisions
    assert sharded.partitions is not None and len(sharded.partitions) > 1


def test_demo_offline_prints_the_decisions() -> None:
    result = CliRunner().invoke(main, ["demo", "--offline", "--duration", "100"])
    assert result.exit_code == 0, result.output
    assert "isolate   tenant-hot" in result.stdout
    assert "decisions by action: isolate 1, merge 1" in result.stdout


def test_simulate_defaults_put_mean_load_at_half_the_capacity() -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--tenants", "200", "--partitions", "4", "--hours", "0.01", "--json"]
    )
    figures = json.loads(result.stdout)
    assert figures["total_rate"] == 0.5 * Policy().partition_capacity * 4


def test_an_expansion_keeps_unrouted_tenants_on_the_base_and_the_planner_fills_the_new_partitions() -> None:
    # 200 even tenants (no elephants, each 1/5 of the grown mean, above the smallest move): the
    # fill alone decides how balanced the grown topic gets.
    config = replace(
        SMALL,
        traffic=replace(SMALL.traffic, tenants=200, zipf=0.0, flash=False, diurnal=False, churn_per_hour=0.0),
        expand_at=0.3,
        expand_to=40,
    )
    result = run_simulation(config)
    expansion = result.expansion()
    assert expansion is not None and (expansion["from"], expansion["to"]) == (20, 40)
    # At the growth every tenant still hashes by 20: half the partitions are empty.
    assert expansion["max_over_mean_at_growth"] >= 1.9
    assert expansion["fill_moves"] > 0 and expansion["minutes_to_trigger"] is not None
    assert expansion["max_over_mean_end"] <= 1.10
    assert all(w.partitions == 40 for w in result.windows[config.expand_window or 0 :])
    runner = CliRunner()
    cli_run = runner.invoke(
        main,
        [
            "simulate",
            "--tenants",
            "500",
            "--partitions",
            "10",
            "--hours",
            "0.1",
            "--expand-at",
            "0.5",
            "--to",
            "20",
            "--json",
        ],
    )
    assert cli_run.exit_code == 0, cli_run.output
    assert json.loads(cli_run.stdout)["expansion"]["to"] == 20
    refused = runner.invoke(main, ["simulate", "--partitions", "10", "--expand-at", "0.5", "--to", "8"])
    assert refused.exit_code != 0 and "more than --partitions" in refused.output
