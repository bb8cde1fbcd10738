"""Control-plane benchmarks on real workers: reaction time to a hotspot, usage aggregation rate.

Both run `faust -A routing_app.app worker` processes against scratch topics of their own, so
they neither see nor disturb a demo running on the same cluster.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from routing_app.app.launcher import WorkerProcess, launch_worker
from routing_app.bench.common import Reporter, Scratch, SilentReporter
from routing_app.client import RoutingProducer, java_partition
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import admin_client, client_settings
from routing_app.demo.traffic import LiveRates
from routing_app.routes.model import RouteStatus
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports


def _scratch_settings(settings: Settings, scratch: Scratch, kind: str, **changes: Any) -> Settings:
    """Settings whose routing topics are fresh scratch topics shaped like the real ones."""
    return settings.replace(
        routes_topic=scratch.topic(f"{kind}-routes", 1, {"cleanup.policy": "compact"}),
        events_topic=scratch.topic(f"{kind}-events", 1, {"cleanup.policy": "delete"}),
        control_topic=scratch.topic(f"{kind}-control", 1, {"cleanup.policy": "delete"}),
        answers_topic=scratch.topic(f"{kind}-answers", 1, {"cleanup.policy": "delete"}),
        usage_topic=scratch.topic(f"{kind}-usage", settings.usage_partitions, {"cleanup.policy": "delete"}),
        app_id=f"bench-{kind}-{scratch.suffix}",
        **changes,
    )


def _start_workers(settings: Settings, count: int, workdir: Path, reporter: Reporter) -> list[WorkerProcess]:
    workers = [launch_worker(settings, workdir / f"worker-{i}") for i in range(count)]
    for w in workers:
        if not w.wait_ready(120):
            for other in workers:
                other.stop()
            raise RuntimeError(f"benchmark worker did not start; log {w.log_path}:\n{w.log()[-2000:]}")
    reporter.note(f"{count} worker(s) ready")
    return workers


def run_reaction(
    settings: Settings,
    *,
    window_s: float | None = None,
    tenants: int = 40,
    base_rate: float = 25.0,
    factor: float = 20.0,
    rounds: int = 1,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Seconds from a tenant's x20 onset (at a window start) until the writer wrote its new
    route (``written_s``), producers stopped sending it to its old partition
    (``off_old_partition_s``) and sent it to the new one (``seconds``): medians of ``rounds``.

    With the early path on (``early_reaction``, the default) the target is 3 s, well before
    the window closes; without it, the window and its grace."""
    reporter = reporter or SilentReporter()
    window = window_s or settings.window_s
    seconds: list[float] = []
    off_old: list[float] = []
    written: list[float] = []
    before_close: list[bool] = []
    reasons: list[str] = []
    with Scratch(settings, reporter) as scratch, tempfile.TemporaryDirectory() as tmp:
        s = _scratch_settings(settings, scratch, "reaction", window_s=window)
        data = scratch.topic("reaction-data", 12)
        workers = _start_workers(s, 1, Path(tmp), reporter)
        conf = s.producer_config(**{"routing.usage.interval.ms": 500, "linger.ms": 5})
        names = [f"steady-{i:03d}" for i in range(tenants)]
        try:
            with RoutingProducer(conf) as producer:
                producer.wait_ready(30)
                for round_ in range(rounds):
                    hot = f"hot-{round_}"
                    traffic = LiveRates(producer, data, {n: base_rate for n in [*names, hot]})
                    traffic.start()
                    try:
                        time.sleep(2 * window)
                        # Onset at a window start: the measurement is of the loop, not of luck.
                        time.sleep(window - time.time() % window + 0.05)
                        onset, onset_wall = time.monotonic(), time.time()
                        traffic.rates[hot] = base_rate * factor
                        deadline = onset + 6 * window + 10
                        decided = None
                        first = None
                        while True:
                            route = producer.route_for(data, hot)
                            if route is not None and decided is None:
                                # Draining: the tenant's records stop going to the old partition.
                                decided = time.monotonic() - onset
                                first = route
                            if route is not None and route.status is RouteStatus.ACTIVE:
                                break
                            if time.monotonic() > deadline:
                                raise RuntimeError(
                                    f"{hot} was never rerouted; worker log: {workers[0].log_path}"
                                )
                            time.sleep(0.01)
                        seconds.append(time.monotonic() - onset)
                        off_old.append(decided or seconds[-1])
                        # The writer stamps the route when it writes it (its wall clock).
                        # (the drain's end writes it again, later: the decision is the first).
                        first = first or route
                        written.append(first.updated_at_ms / 1000 - onset_wall)
                        window_end = onset_wall - onset_wall % window + window
                        before_close.append(first.updated_at_ms / 1000 < window_end)
                        reasons.append(first.reason)
                        reporter.note(
                            f"round {round_ + 1}: route written after "
                            f"{written[-1]:.2f} s ({first.reason[:100]}), off its "
                            f"partition after {off_old[-1]:.2f} s, routed to the new "
                            f"one after {seconds[-1]:.2f} s"
                        )
                    finally:
                        traffic.stop()
                        traffic.join(5)
        finally:
            for w in workers:
                w.stop()
    all_seconds = [round(x, 3) for x in seconds]
    seconds.sort()
    off_old.sort()
    written.sort()
    # seconds: until producers send the tenant to its new partition (a strict move's drain
    # included); off_old_partition_s: until they stop sending it to the old one.
    return {
        "seconds": round(seconds[len(seconds) // 2], 3),
        "window_s": window,
        "written_s": round(written[len(written) // 2], 3),
        "off_old_partition_s": round(off_old[len(off_old) // 2], 3),
        "target_s": 3.0 if settings.early_reaction else window + 2.0,
        "early_reaction": settings.early_reaction,
        "rerouted_before_window_closed": sum(before_close),
        "rounds": rounds,
        "all_seconds": all_seconds,
        "hot_partition_before": java_partition(b"hot-0", 12),
        "reasons": reasons,
    }


def run_aggregate(
    settings: Settings,
    *,
    reports: int = 3_000_000,
    tenants: int = 5_000,
    top_k: int = 1_000,
    rounds: int = 3,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Tenant usage reports aggregated per second by one worker, then by two, on the same input.

    The input is what RoutingProducers send: each simulated producer reports, every interval,
    its ``top_k`` tenants by name (a fixed slice of ``tenants``) and one residual per data
    partition, grouped into one usage record per usage partition (``batch_reports``). Rates
    count tenant reports (``reports_per_s``; ``events_per_s`` is the same figure) and, apart,
    Kafka records (``records_per_s``): one record carries many reports. The clock runs from
    the first record sent until the workers have aggregated the last report. ``rounds`` pairs
    of runs (one worker, then two); the figures are those of the round with the median ratio.

    The workers' CPU seconds (Linux) tell whether two workers do the same work as one: on a
    machine without two spare cores, ``scale_2w`` is bounded by the cores, not by the workers.
    """
    reporter = reporter or SilentReporter()
    pairs: list[tuple[_AggregateRun, _AggregateRun]] = []
    for round_ in range(rounds):
        one, two = (_aggregate_once(settings, count, reports, tenants, top_k, reporter) for count in (1, 2))
        pairs.append((one, two))
        reporter.note(f"round {round_ + 1}/{rounds}: scale {two.reports_per_s / one.reports_per_s:.3f}")
    # The round with the median ratio stands for all: a shared machine slows single runs, and a
    # ratio within one round (the two runs back to back) cancels most of that.
    ratios = [two.reports_per_s / one.reports_per_s for one, two in pairs]
    one, two = pairs[sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]]
    result: dict[str, Any] = {
        "events_per_s_1w": round(one.reports_per_s, 1),
        "events_per_s_2w": round(two.reports_per_s, 1),
        "scale_2w": round(two.reports_per_s / one.reports_per_s, 3),
        "rounds": rounds,
        "scale_2w_rounds": [round(r, 3) for r in ratios],
        "events_per_s_1w_rounds": [round(a.reports_per_s) for a, _ in pairs],
        "events_per_s_2w_rounds": [round(b.reports_per_s) for _, b in pairs],
        "reports_per_s_1w": round(one.reports_per_s, 1),
        "reports_per_s_2w": round(two.reports_per_s, 1),
        "records_per_s_1w": round(one.records_per_s, 1),
        "records_per_s_2w": round(two.records_per_s, 1),
        "reports": reports,
        "records": one.records,
        "reports_per_record": round(reports / one.records, 1),
        "tenants": tenants,
        "top_k": top_k,
        "usage_partitions": settings.usage_partitions,
        "host_cpus": os.cpu_count(),
        "fed_s_1w": round(one.fed_s, 2),
        "fed_s_2w": round(two.fed_s, 2),
        "elapsed_s_1w": round(one.elapsed_s, 2),
        "elapsed_s_2w": round(two.elapsed_s, 2),
        # How evenly the usage partitions split the work between the two, and when each was done.
        "worker_reports_2w": list(two.worker_reports),
        "worker_done_s_2w": [round(x, 2) for x in two.worker_done_s],
        "worker_planning_2w": list(two.worker_planning),
    }
    if one.worker_cpu_s and two.worker_cpu_s:
        result.update(
            worker_cpu_s_1w=round(one.worker_cpu_s, 2),
            worker_cpu_s_2w=round(two.worker_cpu_s, 2),
            reports_per_worker_cpu_s_1w=round(reports / one.worker_cpu_s, 1),
            reports_per_worker_cpu_s_2w=round(reports / two.worker_cpu_s, 1),
        )
    if one.host_idle is not None and two.host_idle is not None:
        result.update(
            host_idle_pct_1w=round(100 * one.host_idle, 1), host_idle_pct_2w=round(100 * two.host_idle, 1)
        )
        if one.worker_cpu_s and two.worker_cpu_s:
            # What the rest of the machine (broker, registry, this process) used meanwhile: on a
            # host without spare cores it is taken from the workers.
            cores = os.cpu_count() or 1
            result.update(
                {
                    f"other_cpu_s_{n}w": round(
                        run.elapsed_s * cores * (1 - (run.host_idle or 0)) - (run.worker_cpu_s or 0), 2
                    )
                    for n, run in ((1, one), (2, two))
                }
            )
    return result


def _aggregate_once(
    settings: Settings, count: int, reports: int, tenants: int, top_k: int, reporter: Reporter
) -> _AggregateRun:
    with Scratch(settings, reporter) as scratch, tempfile.TemporaryDirectory() as tmp:
        # A long window keeps every pre-made report inside one live window (none stale).
        s = _scratch_settings(settings, scratch, f"aggregate{count}", window_s=600.0)
        workers = _start_workers(s, count, Path(tmp), reporter)
        try:
            # A worker reports ready before the others have joined its group: the clock
            # starts once the group settled, so that it times aggregation, not a rebalance.
            _wait_group_settled(s, count, reporter)
            run = _feed_and_time(s, workers, reports, tenants, top_k, reporter)
        finally:
            for w in workers:
                w.stop()
            _delete_worker_topics(s, reporter)
    reporter.note(
        f"{count} worker(s): {run.reports_per_s:,.0f} tenant usage reports/s "
        f"({run.records_per_s:,.0f} usage records/s)"
    )
    return run


def _delete_worker_topics(s: Settings, reporter: Reporter) -> None:
    """The topics the workers created for themselves (``<app id>-...``: table changelogs, the
    assignor's), which the scratch topics do not cover."""
    admin = admin_client(s.kafka)
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{s.app_id}-")]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result(60)
            reporter.note(f"deleted {len(names)} worker topic(s)")
    except KafkaException as exc:  # cleanup: never hide the benchmark result
        reporter.note(f"[yellow]could not delete the workers' topics: {exc}[/]")


def _wait_group_settled(
    s: Settings, members: int, reporter: Reporter, timeout_s: float = 120.0, settle_s: float = 3.0
) -> None:
    """Until the workers' group is stable with every member and every usage partition assigned,
    then ``settle_s`` more for the members to finish their recovery."""
    from confluent_kafka import ConsumerGroupState

    admin = admin_client(s.kafka)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            group = admin.describe_consumer_groups([s.app_id])[s.app_id].result(timeout=10)
            assigned = {
                tp.partition
                for m in group.members
                for tp in (m.assignment.topic_partitions if m.assignment else [])
                if tp.topic == s.usage_topic
            }
            if (
                group.state == ConsumerGroupState.STABLE
                and len(group.members) == members
                and assigned == set(range(s.usage_partitions))
            ):
                break
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the group {s.app_id} did not settle with {members} member(s)")
        time.sleep(0.5)
    time.sleep(settle_s)
    reporter.note(f"group settled: {members} member(s), {s.usage_partitions} usage partitions")


@dataclass(frozen=True)
class _AggregateRun:
    records: int
    reports_per_s: float
    records_per_s: float
    worker_cpu_s: float | None  # all workers together, during the run
    host_idle: float | None  # share of the machine's CPU time left idle during the run
    fed_s: float  # until the broker had every usage record
    elapsed_s: float
    worker_reports: tuple[int, ...]  # reports each worker handled
    worker_done_s: tuple[float, ...]  # when each worker handled its last report
    worker_planning: tuple[bool, ...]  # which one owns the control partition


def _usage_records(
    s: Settings, reports: int, tenants: int, top_k: int, now: int
) -> list[tuple[bytes, bytes, int, int]]:
    """(key, value, partition, reports in it) of usage records holding ``reports`` reports."""
    codec = AvroCodec(registry_client(s.registry_config()), USAGE_SCHEMA, s.usage_topic)
    named = max(1, min(top_k, tenants))
    producers = -(-tenants // named)
    data_partitions = 12

    def interval(producer: int, size: int) -> list[tuple[bytes, bytes, int, int]]:
        """One interval of one producer: its named tenants, then a residual per partition."""
        first = producer * named
        sent = [
            UsageReport(
                f"bench-{producer}",
                "orders",
                f"tenant-{(first + i) % tenants:06d}",
                10,
                1000,
                now - 1000,
                now,
                (first + i) % data_partitions,
            )
            for i in range(named)
        ]
        sent += [
            UsageReport(f"bench-{producer}", "orders", "", 5, 500, now - 1000, now, p)
            for p in range(data_partitions)
        ]
        return [
            (b.key, codec.encode(b.to_record()), b.usage_partition, len(b.reports))
            for b in batch_reports(sent[:size], s.usage_partitions)
        ]

    per_interval = named + data_partitions
    # Every interval of a producer reports the same tenants (a stable top-k): encode it once.
    full = [interval(p, per_interval) for p in range(min(producers, -(-reports // per_interval)))]
    out: list[tuple[bytes, bytes, int, int]] = []
    made = i = 0
    while made + per_interval <= reports:
        out += full[i % len(full)]
        made += per_interval
        i += 1
    if made < reports:
        out += interval(i % producers, reports - made)
    return out


def _feed_and_time(
    s: Settings, workers: list[WorkerProcess], reports: int, tenants: int, top_k: int, reporter: Reporter
) -> _AggregateRun:
    now = int(time.time() * 1000)
    records = _usage_records(s, reports, tenants, top_k, now)
    producer = Producer(client_settings(s.kafka, **{"linger.ms": 20}))
    cpu_before = [_cpu_seconds(w.process.pid) for w in workers]
    idle_before = _host_cpu()
    started = time.monotonic()
    with reporter.progress("tenant usage reports aggregated", reports) as advance:
        for key, value, partition, _ in records:
            while True:
                try:
                    # Timestamped inside the interval, as RoutingProducer does.
                    producer.produce(s.usage_topic, value, key, timestamp=now - 1, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        fed = time.monotonic() - started
        seen = 0
        deadline = time.monotonic() + 600
        handled = [0] * len(workers)
        last_change = [0.0] * len(workers)  # when each worker's count last grew
        while seen < reports:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {reports} reports aggregated in 600 s")
            time.sleep(0.1)
            for i, w in enumerate(workers):
                count = _handled(w)
                if count != handled[i]:
                    handled[i], last_change[i] = count, time.monotonic() - started
            total = sum(handled)
            advance(total - seen)
            seen = total
    elapsed = time.monotonic() - started
    cpu_after = [_cpu_seconds(w.process.pid) for w in workers]
    idle_after = _host_cpu()
    full = [w.get("/writer/stats") for w in workers]
    stats = [f["usage"] for f in full]
    aggregated = sum(int(u["reports_aggregated"]) for u in stats)
    if aggregated != reports:
        raise RuntimeError(f"{aggregated} of {reports} reports went into a window: {stats}")
    worker_cpu = None
    if None not in cpu_before and None not in cpu_after:
        worker_cpu = sum(
            b - a for a, b in zip(cpu_before, cpu_after, strict=True) if a is not None and b is not None
        )
    host_idle = None
    if idle_before is not None and idle_after is not None and idle_after[1] > idle_before[1]:
        host_idle = (idle_after[0] - idle_before[0]) / (idle_after[1] - idle_before[1])
    return _AggregateRun(
        len(records),
        reports / elapsed,
        len(records) / elapsed,
        worker_cpu,
        host_idle,
        fed,
        elapsed,
        tuple(handled),
        tuple(last_change),
        tuple(bool(f.get("planning")) for f in full),
    )


def _handled(worker: WorkerProcess) -> int:
    usage = worker.get("/writer/stats")["usage"]
    return int(usage["usage_reports"])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _host_cpu() -> tuple[float, float] | None:
    """(idle, total) CPU ticks of the whole machine so far (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return float(ticks[3] + ticks[4]), float(sum(ticks))
    except (OSError, ValueError, IndexError):
        return None
