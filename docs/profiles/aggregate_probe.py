"""Issue #15, target 4: `bench aggregate` with the CPU seconds of every process on the host over
each timed run (first record sent to last report aggregated).

    cd "$(git rev-parse --show-toplevel)" && .venv/bin/python docs/profiles/aggregate_probe.py --reports 3000000 --rounds 3

Runs routing_app.bench.aggregate.run_aggregate unchanged; in this process only, the bench's own
host-CPU probe (aggregate_feed._host_cpu, called exactly when its clock starts and stops) is
wrapped to also read /proc/<pid>/stat of every process, so each run gets a CPU-seconds table:
workers (by pid), the broker, the registry, the bench process (the feeder: it makes, sends and
polls), kernel threads, everything else; and the host's busy and idle seconds from /proc/stat.
Prints one JSON line: the bench's figures plus "runs": [...].
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import routing_app.bench.aggregate_feed as feed
from routing_app.bench.aggregate import run_aggregate
from routing_app.config import load_settings

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def classify(pid: int, cmdline: str, comm: str) -> str:
    if pid == os.getpid():
        return "bench process (feeder)"
    if "kafka.Kafka" in cmdline:
        return "broker (kafka)"
    if "quarkus-run.jar" in cmdline:
        return "registry"
    if "routing_app" in cmdline or "routing-app" in cmdline:
        if "worker" in cmdline:
            return f"worker pid {pid}"
        return "other routing-app: " + cmdline[:80]
    if not cmdline:
        return "kernel threads"
    return "other: " + comm


def processes() -> dict[int, tuple[str, float]]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[pid] = (classify(pid, cmdline, comm), (int(fields[11]) + int(fields[12])) / TICK)
    return out


def host() -> tuple[float, float]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return idle / TICK, sum(parts[:8]) / TICK


RUNS: list[dict] = []
_pending: list = []
_original = feed._host_cpu


def probed_host_cpu():
    snap = (time.monotonic(), processes(), host(), open("/proc/loadavg").read().split()[:3])
    if not _pending:
        _pending.append(snap)
    else:
        (t0, p0, h0, load0), (t1, p1, h1, load1) = _pending.pop(), snap
        by: dict[str, float] = {}
        for pid, (label, cpu) in p1.items():
            before = p0.get(pid, (label, 0.0))[1] if pid in p0 else 0.0
            d = cpu - before
            if d > 0.005:
                by[label] = by.get(label, 0.0) + d
        idle, total = h1[0] - h0[0], h1[1] - h0[1]
        wall = t1 - t0
        workers = sorted(k for k in by if k.startswith("worker"))
        RUNS.append(
            {
                "workers": len(workers),
                "wall_s": round(wall, 2),
                "host_cpu_s_available": round(wall * CORES, 2),
                "host_busy_s": round(total - idle, 2),
                "host_idle_s": round(idle, 2),
                "load_start": load0,
                "load_end": load1,
                "cpu_s": {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
            }
        )
        print(f"run: {RUNS[-1]}", file=sys.stderr, flush=True)
    return _original()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=3_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    feed._host_cpu = probed_host_cpu
    out = run_aggregate(load_settings(), reports=args.reports, rounds=args.rounds)
    out["runs"] = RUNS
    print(json.dumps(out))


if __name__ == "__main__":
    main()
