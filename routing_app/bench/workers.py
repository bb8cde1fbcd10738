"""Real ``faust -A routing_app.app worker`` processes for the benchmarks, on scratch topics.

Apart from the benchmarks because three of them (reaction, aggregation, drain) start workers
the same way: settings whose routing topics are scratch ones (so they neither see nor disturb a
demo on the same cluster), started and waited for, their consumer group settled, and the
topics they created for themselves deleted afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from routing_app.app.launcher import WorkerProcess, launch_worker
from routing_app.bench.common import Reporter, Scratch
from routing_app.config import Settings
from routing_app.connection import admin_client


def scratch_settings(settings: Settings, scratch: Scratch, kind: str, **changes: Any) -> Settings:
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


def start_workers(settings: Settings, count: int, workdir: Path, reporter: Reporter) -> list[WorkerProcess]:
    """``count`` workers, each ready (its log under ``workdir``); none left running on failure."""
    workers = [launch_worker(settings, workdir / f"worker-{i}") for i in range(count)]
    for w in workers:
        if not w.wait_ready(120):
            for other in workers:
                other.stop()
            raise RuntimeError(f"benchmark worker did not start; log {w.log_path}:\n{w.log()[-2000:]}")
    reporter.note(f"{count} worker(s) ready")
    return workers


def wait_group_settled(
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


def delete_worker_topics(s: Settings, reporter: Reporter) -> None:
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
