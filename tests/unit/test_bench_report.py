"""``routing-app bench report``: saved figures in, markdown and PNGs out; the runs at its edge.

The fixtures in tests/data/bench_report are the saved results of one real
``routing-app bench report --quick --save DIR`` run on the development stack (JSON lines as the
commands printed them, and its run.json).
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from routing_app.bench.report import PLOTS, REPORT_FILE, render, write_report
from routing_app.bench.report_format import NOT_MEASURED, show
from routing_app.bench.report_results import BALANCE_PARTITIONS, BALANCE_ZIPFS, BenchResults, balance_name
from routing_app.bench.report_runs import (
    BENCHES,
    Run,
    execute_runs,
    last_json_line,
    load_results,
    plan_runs,
    subprocess_executor,
)
from routing_app.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "bench_report"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fixture(name: str) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return figures


def _row(markdown: str, first_cells: str) -> list[str]:
    """The cells of the table row that starts with ``first_cells`` (e.g. "| 1.4 | 50 |")."""
    rows = [line for line in markdown.splitlines() if line.startswith(first_cells)]
    assert len(rows) == 1, f"{first_cells!r}: {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    assert len(data) > 5_000, f"{path} is nearly empty"


@pytest.fixture(scope="module")
def saved() -> BenchResults:
    return load_results(FIXTURES)


@pytest.fixture(scope="module")
def rendered(saved: BenchResults, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("docs")
    path = write_report(saved, out, "routing-app bench report --from tests/data/bench_report")
    return path.read_text(), out


def test_the_fixtures_hold_every_run_of_the_report() -> None:
    names = {run.name for run in plan_runs(BENCHES, quick=True)}
    saved = {path.stem for path in FIXTURES.glob("*.json")} - {"run"}
    assert saved == names


def test_every_figure_is_shown_with_its_same_run_baseline(rendered: tuple[str, Path]) -> None:
    text, _ = rendered
    producer = _fixture("producer")
    cells = [line for line in text.splitlines() if line.startswith("| RoutingProducer throughput")]
    assert len(cells) == 2
    assert show(producer["routing_rps"], "records/s") in cells[0]
    assert f"raw confluent-kafka Producer: {show(producer['raw_rps'], 'records/s')}" in cells[0]
    assert f"aiokafka: {show(producer['aiokafka_rps'], 'records/s')}" in cells[1]
    assert f"{producer['ratio_vs_aiokafka']:.3g}x" in cells[1]
    for name in ("rebuild-10000", "rebuild-100000", "rebuild-300000"):
        rebuild = _fixture(name)
        row = _row(text, f"| route cache rebuild to ready, {rebuild['routes']:,} routes |")
        assert row[1] == show(rebuild["seconds"], "s")
        assert row[2].endswith(show(rebuild["consume_only_seconds"], "s"))
        assert row[4] == "(≤ 1.2x at 1M routes)"  # a quick run's rebuild is never judged
    propagation = _fixture("propagation")
    row = _row(text, "| route change in every cache, p99 |")
    assert row[1] == show(propagation["p99_ms"], "ms")
    assert row[2].endswith(show(propagation["baseline_p99_ms"], "ms"))
    reaction = _fixture("reaction")
    row = _row(text, "| x20 hotspot: routed to its new partition |")
    assert row[1] == show(reaction["seconds"], "s")
    assert row[4].startswith("met" if reaction["seconds"] <= reaction["target_s"] else "missed")
    drain = _fixture("drain")
    assert _row(text, "| strict move pause, p99 (with the killed")[1] == show(drain["pause_p99_ms"], "ms")
    assert _row(text, "| strict records out of order |")[1] == show(drain["reordered_strict"])
    aggregate = _fixture("aggregate")
    row = _row(text, "| usage reports aggregated, two workers |")
    assert row[1] == show(aggregate["events_per_s_2w"], "reports/s")
    assert row[3] == f"{aggregate['scale_2w']:.3g}x"
    flash = _fixture("simulate-flash")
    assert _row(text, f"| max/mean partition load (planner) | {show(flash['max_over_mean'])} | murmur2")[
        2
    ].endswith(show(flash["hash_max_over_mean"]))
    assert NOT_MEASURED not in text  # every run of the quick report is in the fixtures


def test_the_balance_table_has_every_cell(rendered: tuple[str, Path]) -> None:
    text, _ = rendered
    for zipf in BALANCE_ZIPFS:
        for partitions in BALANCE_PARTITIONS:
            figures = _fixture(balance_name(zipf, partitions))
            assert (figures["zipf"], figures["partitions"]) == (zipf, partitions)
            row = _row(text, f"| {zipf:g} | {partitions} |")
            assert row[2:6] == [
                f"{figures[key]:.2f}"
                for key in ("max_over_mean", "max_over_mean_p95", "hash_max_over_mean", "pkg_max_over_mean")
            ]


def test_the_machine_commands_and_noise_are_stated(rendered: tuple[str, Path]) -> None:
    text, _ = rendered
    machine = json.loads((FIXTURES / "run.json").read_text())["machine"]
    assert _row(text, "| cores |")[1] == str(machine["cores"])
    start = " / ".join(f"{x:g}" for x in machine["load_avg_start"])
    assert _row(text, "| load average (1 / 5 / 15 min), start |")[1] == start
    assert "**Noisy figures**" in text  # the fixture run shared 2 cores with a CI run
    assert "**Quick run**" in text
    for command in json.loads((FIXTURES / "run.json").read_text())["commands"].values():
        assert f"\n{command}\n" in text


def test_every_plot_is_written_and_linked(rendered: tuple[str, Path]) -> None:
    text, out = rendered
    for png in PLOTS.values():
        assert f"]({png})" in text
        _assert_png(out / png)


def test_missing_figures_say_not_measured_and_draw_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(FIXTURES, results)
    for name in ("producer", "simulate-balance-z2-p100", "run"):
        (results / f"{name}.json").unlink()
    drain = _fixture("drain")
    del drain["pauses_ms"], drain["pause_p50_ms"]  # as an older drain bench printed them
    (results / "drain.json").write_text(json.dumps(drain))
    out = tmp_path / "docs"
    out.mkdir()
    stale = out / PLOTS["throughput"]
    stale.write_bytes(PNG_MAGIC)  # an earlier report's picture must not survive
    text = write_report(load_results(results), out, "routing-app bench report").read_text()

    assert _row(text, "| RoutingProducer throughput | not measured | aiokafka")
    assert "*not measured*: the producer bench did not run." in text
    assert not stale.exists()
    assert not (out / PLOTS["drain"]).exists()
    assert "no `pauses_ms` list" in text
    assert _row(text, "| strict move pause, p50 |")[1] == NOT_MEASURED
    assert _row(text, "| strict move pause, p99 (with the killed")[1] == show(drain["pause_p99_ms"], "ms")
    assert _row(text, "| 2 | 100 |")[2:] == [NOT_MEASURED] * 7
    assert "## Machine\n\nnot measured" in text
    assert "*The commands were not recorded with these results.*" in text
    for kept in ("flash", "rebuild", "reaction"):
        _assert_png(out / PLOTS[kept])


def test_nothing_measured_is_a_page_of_not_measured(tmp_path: Path) -> None:
    text = render(BenchResults(), tmp_path, "routing-app bench report")
    assert text.count(NOT_MEASURED) > 20
    assert not list(tmp_path.glob("*.png"))


def test_a_rebuild_at_a_million_routes_is_judged(tmp_path: Path) -> None:
    results = BenchResults(
        results={
            "rebuild-1000000": {
                "routes": 1_000_000,
                "seconds": 6.5,
                "consume_only_seconds": 2.0,
                "ratio_vs_consume_only": 3.25,
                "settled_seconds": 4.0,
                "settled_ratio_vs_consume_only": 2.0,
                "rss_mb": 250.0,
                "consume_only_rss_mb": 100.0,
            },
            "rebuild-10000": {"routes": 10_000, "seconds": 0.2, "consume_only_seconds": 0.1},
        }
    )
    text = render(results, tmp_path, "x")
    assert _row(text, "| route cache rebuild to ready, 1,000,000 routes |")[3:] == [
        "3.25x",
        "missed (≤ 1.2x)",
    ]
    assert _row(text, "| route cache settled (every route checked), 1,000,000 routes |")[3:] == [
        "2x",
        "met (≤ 5 s)",
    ]
    assert _row(text, "| rebuild peak RSS growth, 1,000,000 routes |")[3:] == ["2.5x", "met (≤ 300 MB)"]
    assert _row(text, "| route cache rebuild to ready, 10,000 routes |")[3:] == [
        "2x",
        "(≤ 1.2x at 1M routes)",
    ]
    # Fewest routes first, in the table as in the plot.
    assert text.index("10,000 routes") < text.index("1,000,000 routes")


def test_show() -> None:
    assert show(None) == NOT_MEASURED
    assert show(float("nan")) == NOT_MEASURED
    assert show(1234567, "records/s") == "1,234,567 records/s"
    assert show(212092.4) == "212,092"
    assert show(684.0, "ms") == "684 ms"
    assert show(1.4455) == "1.45"
    assert show(True) == "true"


# -- the edge: commands, saving, loading --------------------------------------------------------
def test_plan_runs() -> None:
    full = plan_runs(BENCHES, quick=False)
    assert [r.name for r in full if r.bench == "rebuild"] == [
        "rebuild-10000",
        "rebuild-100000",
        "rebuild-1000000",
    ]
    assert sum(1 for r in full if r.name.startswith("simulate-balance")) == 9
    assert all(r.args[-1] == "--json" for r in full)
    assert "--series" in next(r for r in full if r.name == "simulate-flash").args
    quick = plan_runs(["producer", "rebuild"], quick=True)
    assert {r.bench for r in quick} == {"producer", "rebuild"}
    assert quick[0].command == "routing-app bench producer --records 50000 --rounds 1 --json"
    with pytest.raises(ValueError, match="unknown"):
        plan_runs(["nope"], quick=True)


def test_last_json_line() -> None:
    assert last_json_line('noise\n{"a": 1}\n{"b": 2}\n\n') == {"b": 2}
    with pytest.raises(ValueError):
        last_json_line("")
    with pytest.raises(ValueError):
        last_json_line("[1, 2]\n")


def test_runs_are_saved_and_a_failure_is_recorded(tmp_path: Path) -> None:
    runs = [
        Run("producer", "producer", ("bench", "producer", "--json")),
        Run("drain", "drain", ("bench", "drain", "--json")),
    ]

    def execute(run: Run, log: Path) -> dict[str, Any]:
        log.write_text("progress\n")
        if run.name == "drain":
            raise RuntimeError("exit 1: the worker did not start")
        return {"routing_rps": 5.0}

    notes: list[str] = []
    outcome = execute_runs(
        runs,
        execute,
        True,
        tmp_path,
        notes.append,
        "routing-app bench report --bench=producer --bench=drain",
        remark="a CI run shared the machine",
    )
    assert outcome.results == {"producer": {"routing_rps": 5.0}}
    assert outcome.failed == {"drain": "exit 1: the worker did not start"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drain.log",
        "producer.json",
        "producer.log",
        "run.json",
    ]
    assert any("failed" in note for note in notes)
    loaded = load_results(tmp_path)
    assert (loaded.results, loaded.failed, loaded.quick) == (outcome.results, outcome.failed, True)
    assert loaded.commands == {
        "producer": "routing-app bench producer --json",
        "drain": "routing-app bench drain --json",
    }
    assert loaded.machine["cores"] >= 1 and loaded.machine["load_avg_end"]
    text = render(loaded, tmp_path / "docs", "routing-app bench report --from x")
    assert "| drain | exit 1: the worker did not start |" in text
    assert "*not measured*: `drain` failed (see *Runs that failed*)." in text
    assert "from the results of `routing-app bench report --bench=producer --bench=drain`" in text
    assert "Note from the run: a CI run shared the machine" in text


def test_a_real_child_command_is_run_and_its_last_line_read(tmp_path: Path) -> None:
    run = Run(
        "simulate",
        "simulate",
        ("simulate", "--hours", "0.05", "--tenants", "100", "--partitions", "5", "--json"),
    )
    figures = subprocess_executor([])(run, tmp_path / "simulate.log")
    assert (figures["windows"], figures["partitions"], figures["tenants"]) == (18, 5, 100)
    failing = Run("bad", "simulate", ("simulate", "--partitions", "0", "--json"))
    with pytest.raises(RuntimeError, match="exit 2"):
        subprocess_executor([])(failing, tmp_path / "bad.log")


def test_the_cli_writes_the_report_from_saved_results(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["bench", "report", "--from", str(FIXTURES), "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / REPORT_FILE).exists()
    assert len(list(tmp_path.glob("*.png"))) == len(PLOTS)
    refused = runner.invoke(main, ["bench", "report", "--from", str(FIXTURES), "--quick"])
    assert refused.exit_code == 2


def test_simulate_series_has_every_window_and_the_flash() -> None:
    done = CliRunner().invoke(
        main, ["simulate", "--hours", "0.3", "--tenants", "300", "--partitions", "10", "--series", "--json"]
    )
    assert done.exit_code == 0, done.output
    figures = json.loads(done.output.strip().splitlines()[-1])
    series = figures["series"]
    windows = figures["windows"]
    assert windows == 108
    for key in ("t_s", "max_over_mean", "hash_max_over_mean", "pkg_max_over_mean"):
        assert len(series[key]) == windows
    assert series["t_s"][:2] == [0.0, 10.0]
    assert series["flash_periods_s"] == [[900.0, 1200.0]]  # the first flash: at 15 min, 5 min
    # The summary's medians are those of the same windows (the second half).
    settled = series["hash_max_over_mean"][windows // 2 :]
    assert statistics.median(settled) == pytest.approx(figures["hash_max_over_mean"], abs=1e-3)
