"""The report's text sections around the figures: header, machine, balance table, failed runs
and the commands to reproduce it.

Apart from ``report`` (which orders the sections and draws the plots) so that each section's
wording can be read, and changed, without the plotting around it.
"""

from __future__ import annotations

from routing_app.bench.report_format import NOT_MEASURED, is_number, markdown_table, show, two_places
from routing_app.bench.report_results import BALANCE_PARTITIONS, BALANCE_ZIPFS, BenchResults, balance_name


def header_section(results: BenchResults, invocation: str) -> list[str]:
    """The title, where the figures came from, and warnings: a quick run, a busy machine."""
    machine = results.machine
    source = (
        ""
        if results.invocation == invocation
        else (f" from the results of `{results.invocation}`" if results.invocation else " from saved results")
    )
    when = f" (the run started {machine['started']})" if machine.get("started") else ""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{invocation}`{source}{when}. Every figure below was printed by a "
        "command of the last section; ratios are against a baseline measured in the same "
        "command.",
        "",
    ]
    if results.quick:
        lines += [
            "**Quick run**: smaller sizes than the benches' defaults (see the commands); "
            "the rebuild's targets, stated for 1M routes, are not judged below that.",
            "",
        ]
    cores = machine.get("cores") or 0
    loads = {
        when: machine[f"load_avg_{when}"][0] for when in ("start", "end") if machine.get(f"load_avg_{when}")
    }
    if cores and loads and max(loads.values()) >= 0.5 * cores:
        seen = " and ".join(f"{load:g} at the {when}" for when, load in loads.items())
        lines += [
            f"**Noisy figures**: the machine was busy with other work while this ran "
            f"(1-minute load average {seen}, on {cores} cores), which took CPU from the "
            "benchmarks, the broker and the workers alike. Absolute rates and latencies "
            "are lower and noisier than on an idle machine; the ratios against same-run "
            "baselines are the steadier figures.",
            "",
        ]
    if results.note:
        lines += [f"Note from the run: {results.note}", ""]
    return lines


def machine_section(results: BenchResults) -> list[str]:
    """What the figures depend on: cores, memory, load, versions, when it ran."""
    m = results.machine
    if not m:
        return ["## Machine", "", f"{NOT_MEASURED}: these results were saved without it.", ""]

    def load(key: str) -> str:
        value = m.get(key)
        return " / ".join(f"{x:g}" for x in value) if value else NOT_MEASURED

    rows = [
        ["cores", show(m.get("cores"))],
        ["CPU", m.get("cpu") or NOT_MEASURED],
        [
            "memory",
            f"{show(m.get('memory_gib'), 'GiB')} ({show(m.get('memory_available_gib'), 'GiB')}"
            " available at the start)",
        ],
        ["load average (1 / 5 / 15 min), start", load("load_avg_start")],
        ["load average (1 / 5 / 15 min), end", load("load_avg_end")],
        ["OS, Python", f"{m.get('os', NOT_MEASURED)}, Python {m.get('python', '?')}"],
        ["Kafka", m.get("kafka") or NOT_MEASURED],
        ["run", f"{m.get('started', '?')} to {m.get('finished', '?')}"],
    ]
    return ["## Machine", "", *markdown_table(["", ""], rows), ""]


def balance_section(results: BenchResults) -> list[str]:
    """The simulator's max/mean load for every (Zipf, partitions) cell, against the baselines."""
    rows = []
    for zipf in BALANCE_ZIPFS:
        for partitions in BALANCE_PARTITIONS:
            r = results.results.get(balance_name(zipf, partitions), {})
            loads = [
                two_places(r.get(key))
                for key in (
                    "max_over_mean",
                    "max_over_mean_p95",
                    "hash_max_over_mean",
                    "pkg_max_over_mean",
                    "stream_floor_max_over_mean",
                )
            ]
            moved = r.get("moved_fraction_per_hour")
            rows.append(
                [
                    f"{zipf:g}",
                    str(partitions),
                    *loads,
                    f"{moved:.2%}" if is_number(moved) else NOT_MEASURED,
                    show(r.get("hours"), "h"),
                ]
            )
    return [
        "## Balance table",
        "",
        "Median max/mean partition load over the second half of each simulated run (after the "
        "start-up moves; flash crowds, churn and the diurnal wave go on), the planner against "
        "murmur2 hashing and the power of two choices (PKG) on the same traffic. 1.00 is "
        "perfect balance. *Order floor*: the heaviest ordered stream (a key-only tenant, or "
        "a tenant's heaviest key) over the mean; no placement that keeps each stream on one "
        "partition goes below it.",
        "",
        *markdown_table(
            [
                "Zipf z",
                "partitions",
                "planner",
                "planner p95",
                "hashing",
                "PKG",
                "order floor",
                "tenants moved / h",
                "simulated",
            ],
            rows,
        ),
        "",
    ]


def failed_section(results: BenchResults) -> list[str]:
    """The runs that failed and why (none: no section)."""
    if not results.failed:
        return []
    return [
        "## Runs that failed",
        "",
        *markdown_table(
            ["run", "why"],
            [[name, why.replace("\n", " ")[:300]] for name, why in sorted(results.failed.items())],
        ),
        "",
    ]


def reproduce_section(results: BenchResults, invocation: str) -> list[str]:
    """The commands that printed the figures, and the one that wrote this page (the last)."""
    lines = [
        "## Reproduce",
        "",
        "Against the broker and registry of `ROUTING_BOOTSTRAP_SERVERS` / "
        "`ROUTING_SCHEMA_REGISTRY_URL` (or the local stack), each command alone (its last "
        "stdout line is the figures):",
        "",
    ]
    if results.commands:
        lines += ["```bash", *[results.commands[name] for name in results.commands], "```", ""]
    else:
        lines += [
            f"*The commands were {NOT_MEASURED.replace('measured', 'recorded')} with these results.*",
            "",
        ]
    lines += ["All of them, and this page:", "", "```bash", invocation, "```"]
    return lines
