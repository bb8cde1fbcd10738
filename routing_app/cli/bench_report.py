"""``routing-app bench report``: run every bench (or read saved results), write benchmarks.md.

Apart from the benches' own commands because it drives them from the outside, each as a child
``routing-app ... --json`` process, and only turns the options into a plan and a page.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from routing_app.bench.report_runs import BENCHES
from routing_app.cli.bench_output import err
from routing_app.config import Settings


@click.command()
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read saved results (DIR/<run>.json, DIR/run.json) instead of running the benches.",
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save each run's JSON line as DIR/<run>.json (and its log), plus DIR/run.json.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs"),
    show_default=True,
    help="Where benchmarks.md and its PNGs go.",
)
@click.option("--quick", is_flag=True, help="Smaller sizes: minutes, not an hour, on 2 cores.")
@click.option(
    "--bench",
    "chosen",
    multiple=True,
    type=click.Choice(BENCHES),
    help="Run only these (repeatable) [default: all].",
)
@click.option(
    "--note",
    default=None,
    metavar="TEXT",
    help="A sentence for the page's header, e.g. what else ran on the machine.",
)
@click.pass_context
def report(
    ctx: click.Context,
    from_dir: Path | None,
    save_dir: Path | None,
    out_dir: Path,
    quick: bool,
    chosen: tuple[str, ...],
    note: str | None,
) -> None:
    """Run the benches and the simulator (or read saved results) and write benchmarks.md with
    every figure, its same-run baseline, the machine, the commands and plots."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise click.ClickException("the report draws with matplotlib: pip install 'routing-app[report]'")
    from routing_app.bench.report import write_report
    from routing_app.bench.report_runs import (
        execute_runs,
        load_results,
        plan_runs,
        subprocess_executor,
    )

    if from_dir is not None and (save_dir is not None or quick or chosen or note):
        raise click.UsageError(
            "--from reads saved results: --save, --quick, --bench and --note are for a run"
        )
    invocation = shlex.join(
        [
            "routing-app",
            "bench",
            "report",
            *(["--quick"] if quick else []),
            *[f"--bench={name}" for name in chosen],
            *([f"--from={from_dir}"] if from_dir else []),
            *([f"--save={save_dir}"] if save_dir else []),
            *([f"--out={out_dir}"] if out_dir != Path("docs") else []),
        ]
    )
    if from_dir is not None:
        results = load_results(from_dir)
    else:
        settings = ctx.find_object(Settings)
        root = ctx.find_root().params
        prefix = [
            *(["--config", str(root["config_file"])] if root.get("config_file") else []),
            *(["--bootstrap-servers", root["bootstrap_servers"]] if root.get("bootstrap_servers") else []),
            *(
                ["--schema-registry-url", root["schema_registry_url"]]
                if root.get("schema_registry_url")
                else []
            ),
        ]
        runs = plan_runs(chosen or BENCHES, quick)
        err.print(
            f"{len(runs)} commands; their progress goes to {save_dir or 'a temporary folder'}/<run>.log"
        )
        results = execute_runs(
            runs,
            subprocess_executor(prefix),
            quick,
            save_dir,
            err.print,
            invocation,
            extra={"kafka": settings.bootstrap} if settings else None,
            remark=note,
        )
    path = write_report(results, out_dir, invocation)
    measured, failed = len(results.results), len(results.failed)
    err.print(f"{measured} result(s), {failed} failed" if failed else f"{measured} result(s)")
    click.echo(str(path))
