"""The edge of ``routing-app bench report``: which commands to run, running them, saved results.

Every figure comes from a real ``routing-app ... --json`` command run in a child process (the
same command a person would type to reproduce it); its last stdout line is its result. Results
are saved as ``DIR/<run>.json`` (that line, as it was) with ``DIR/run.json`` describing the run:
the machine, the commands, what failed. ``load_results`` reads such a folder back.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing_app.bench.report_results import (
    BALANCE_PARTITIONS,
    BALANCE_ZIPFS,
    BenchResults,
    balance_name,
)

# What ``--bench`` chooses from, in the order they run.
BENCHES = ("producer", "rebuild", "propagation", "reaction", "drain", "aggregate", "simulate")
RUN_FILE = "run.json"
FULL_REBUILD_SIZES = (10_000, 100_000, 1_000_000)
QUICK_REBUILD_SIZES = (10_000, 100_000, 300_000)


@dataclass(frozen=True)
class Run:
    """One command of the report: ``name`` is its result's file stem."""

    name: str
    bench: str
    args: tuple[str, ...]  # after ``routing-app``

    @property
    def command(self) -> str:
        return shlex.join(("routing-app", *self.args))


def plan_runs(benches: Iterable[str], quick: bool) -> list[Run]:
    """The commands for the chosen benches: the benches' own defaults (the sizes their targets
    are stated for), or with ``quick`` sizes that finish in minutes on a 2-core machine."""
    chosen = set(benches)
    unknown = chosen - set(BENCHES)
    if unknown:
        raise ValueError(f"unknown benches: {sorted(unknown)}")
    runs: list[Run] = []

    def add(name: str, bench: str, *args: str) -> None:
        if bench in chosen:
            runs.append(Run(name, bench, (*args, "--json")))

    add(
        "producer",
        "producer",
        "bench",
        "producer",
        *(("--records", "50000", "--rounds", "1") if quick else ()),
    )
    for routes in QUICK_REBUILD_SIZES if quick else FULL_REBUILD_SIZES:
        add(f"rebuild-{routes}", "rebuild", "bench", "rebuild", "--routes", str(routes))
    add(
        "propagation",
        "propagation",
        "bench",
        "propagation",
        *(("--changes", "50", "--producers", "2") if quick else ()),
    )
    add("reaction", "reaction", "bench", "reaction", *(("--window-s", "5") if quick else ("--rounds", "3")))
    add("drain", "drain", "bench", "drain")
    add(
        "aggregate",
        "aggregate",
        "bench",
        "aggregate",
        *(("--reports", "200000", "--rounds", "1") if quick else ()),
    )
    # A flash crowd starts at 15 min and every 30 min after, for 5 min (simulate's defaults).
    add("simulate-flash", "simulate", "simulate", "--hours", "0.5" if quick else "1", "--series")
    for zipf in BALANCE_ZIPFS:
        for partitions in BALANCE_PARTITIONS:
            add(
                balance_name(zipf, partitions),
                "simulate",
                "simulate",
                "--zipf",
                f"{zipf:g}",
                "--partitions",
                str(partitions),
                "--hours",
                "0.25" if quick else "2",
            )
    return runs


def last_json_line(stdout: str) -> dict[str, Any]:
    """The figures: the last non-empty stdout line, a JSON object."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("printed nothing on stdout")
    value = json.loads(lines[-1])
    if not isinstance(value, dict):
        raise ValueError("the last stdout line is not a JSON object")
    return value


# (run, stderr log path) -> figures; raises on failure
Executor = Callable[[Run, Path], dict[str, Any]]


def subprocess_executor(cli_prefix: Sequence[str], timeout_s: float = 3600.0) -> Executor:
    """Runs ``python -m routing_app <cli_prefix> <run.args>``; progress and tables go to the log."""

    def execute(run: Run, log: Path) -> dict[str, Any]:
        with log.open("w") as err:
            done = subprocess.run(
                [sys.executable, "-m", "routing_app", *cli_prefix, *run.args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
        return last_json_line(done.stdout)

    return execute


def execute_runs(
    runs: Sequence[Run],
    execute: Executor,
    quick: bool,
    save: Path | None,
    note: Callable[[str], None],
    invocation: str | None = None,
    extra: dict[str, Any] | None = None,
    remark: str | None = None,
) -> BenchResults:
    """Runs every command in turn; a failed one is recorded and the others still run.
    ``extra``: more about the machine (the Kafka address); ``remark``: the person's note."""
    outcome = BenchResults(
        quick=quick, machine={**machine_now(), **(extra or {})}, invocation=invocation, note=remark
    )
    outcome.machine["started"] = _now_text()
    logs = save or Path(tempfile.mkdtemp(prefix="bench-report-"))
    logs.mkdir(parents=True, exist_ok=True)
    for index, run in enumerate(runs, 1):
        outcome.commands[run.name] = run.command
        note(f"[{index}/{len(runs)}] {run.command}")
        started = time.monotonic()
        try:
            outcome.results[run.name] = execute(run, logs / f"{run.name}.log")
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            outcome.failed[run.name] = str(exc)
            note(f"    failed after {time.monotonic() - started:.0f} s: {exc}")
            continue
        note(f"    done in {time.monotonic() - started:.0f} s")
        if save is not None:
            (save / f"{run.name}.json").write_text(
                json.dumps(outcome.results[run.name], separators=(",", ":")) + "\n"
            )
    outcome.machine["finished"] = _now_text()
    outcome.machine["load_avg_end"] = _load_average()
    if save is not None:
        (save / RUN_FILE).write_text(
            json.dumps(
                {
                    "machine": outcome.machine,
                    "commands": outcome.commands,
                    "failed": outcome.failed,
                    "quick": quick,
                    "invocation": invocation,
                    "note": remark,
                },
                indent=1,
            )
            + "\n"
        )
    return outcome


def load_results(folder: Path) -> BenchResults:
    """Saved results: every ``*.json`` but ``run.json`` is one run's figures, named by its stem."""
    outcome = BenchResults()
    for path in sorted(folder.glob("*.json")):
        if path.name == RUN_FILE:
            meta = json.loads(path.read_text())
            outcome.machine = dict(meta.get("machine") or {})
            outcome.commands = dict(meta.get("commands") or {})
            outcome.failed = dict(meta.get("failed") or {})
            outcome.quick = meta.get("quick")
            outcome.invocation = meta.get("invocation")
            outcome.note = meta.get("note")
            continue
        try:
            outcome.results[path.stem] = last_json_line(path.read_text())
        except ValueError as exc:  # a half-written file says so in the report, not a traceback
            outcome.failed[path.stem] = f"{path.name}: {exc}"
    return outcome


# -- the machine -------------------------------------------------------------------------------
def machine_now() -> dict[str, Any]:
    """What the figures depend on: cores, memory, how busy the machine was at the start."""
    memory = _meminfo()
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(memory["MemTotal"] / 2**20, 1) if "MemTotal" in memory else None,
        "memory_available_gib": round(memory["MemAvailable"] / 2**20, 1)
        if "MemAvailable" in memory
        else None,
        "load_avg_start": _load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _meminfo() -> dict[str, int]:
    """kB by field, from /proc/meminfo (empty elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[1:]}
    except (OSError, ValueError):
        return {}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
