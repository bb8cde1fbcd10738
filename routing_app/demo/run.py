"""Runs the demo: stack, topics, two workers, traffic, and a live view of partition load."""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from routing_app.app.launcher import WorkerProcess, launch_worker
from routing_app.client import RoutingProducer, java_partition
from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.demo.traffic import TrafficGenerator, TrafficPlan
from routing_app.load import PartitionLoadSampler
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.stack import LocalStack, security
from routing_app.topics import create_topic, ensure_topics, routing_topics

DATA_PARTITIONS = 12
# Drawn red in the live view (the planner has its own, configurable, notion of hot).
HOT_RATIO = 2.0
# The demo's traffic is small (2,000 records/s, a mean of 167/s per partition); a capacity to
# match makes the planner act on it, and short windows, dwell and cool-down make the whole loop
# visible within two minutes. shard_fill=5: a tenant is sharded only beyond what one partition
# should carry (0.7 x capacity), so tenant-hot (336/s, 2x the mean) is isolated. tolerance=0.75:
# hashing alone leaves these 200 tenants at up to 1.45x the mean, which the demo leaves alone.
# merge_back_threshold=0.15: tenant-hot's own 20/s (12% of the mean) counts as cooled down.
DEMO_POLICY = (
    "partition_capacity=1000,shard_fill=5,tolerance=0.75,min_dwell_s=30,"
    "cooldown_s=20,merge_back_threshold=0.15"
)
DEMO_WINDOW_S = 5.0


@dataclass
class DemoState:
    loads: dict[int, float] = field(default_factory=dict)
    events: deque[ReassignmentEvent] = field(default_factory=lambda: deque(maxlen=8))
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=6))


class EventTail:
    """Reads the events topic from where it ends now."""

    def __init__(self, settings: Settings) -> None:
        self._codec = AvroCodec(
            registry_client(settings.registry_config()), EVENT_SCHEMA, settings.events_topic
        )
        self._consumer = Consumer(
            client_settings(settings.kafka, **{"group.id": "routing-app-demo", "enable.auto.commit": False})
        )
        tp = TopicPartition(settings.events_topic, 0)
        _, high = self._consumer.get_watermark_offsets(tp, timeout=10)
        self._consumer.assign([TopicPartition(settings.events_topic, 0, high)])

    def poll(self) -> list[ReassignmentEvent]:
        found = []
        for message in self._consumer.consume(100, 0.0):
            if message.error() is None:
                try:
                    found.append(ReassignmentEvent.from_record(self._codec.decode(message.value())))
                except (DecodeError, KeyError, ValueError):
                    continue
        return found

    def close(self) -> None:
        self._consumer.close()


def _render(state: DemoState, traffic: TrafficGenerator, hot_partition: int) -> Group:
    peak = max(state.loads.values(), default=1.0) or 1.0
    mean = statistics.fmean(state.loads.values()) if state.loads else 0.0
    table = Table(
        title=f"partition load of {traffic.plan.topic} (records/s, from broker offsets)", expand=True
    )
    table.add_column("p", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("", ratio=1)
    for p, rate in sorted(state.loads.items()):
        bar = "█" * int(40 * rate / peak)
        style = "red" if mean and rate > HOT_RATIO * mean else "green"
        marker = "  ← tenant-hot hashes here" if p == hot_partition else ""
        table.add_row(str(p), f"{rate:,.0f}", f"[{style}]{bar}[/]{marker}")
    phase = "HOT" if traffic.hot() else "normal"
    header = (
        f"t={traffic.elapsed():5.1f}s  sent={traffic.sent:,}  tenant-hot: {phase}  "
        f"max/mean={peak / mean if mean else 0:.2f}"
    )
    events = Table("decided", "action", "tenant", "from → to", "epoch", "reason", expand=True)
    for e in state.events:
        events.add_row(
            time.strftime("%H:%M:%S", time.localtime(e.decided_at_ms / 1000)),
            e.action,
            e.tenant,
            f"{list(e.from_partitions) or 'hash'} → {list(e.to_partitions) or 'hash'}",
            str(e.to_epoch),
            e.reason,
        )
    return Group(
        Panel(header),
        table,
        Panel(events, title="reassignment events"),
        Panel("\n".join(state.notes) or "…", title="planner"),
    )


def run_demo(settings: Settings, duration_s: float, plan: TrafficPlan, console: Console) -> int:
    if not settings.planner_policy:
        settings = settings.replace(planner_policy=DEMO_POLICY, window_s=DEMO_WINDOW_S)
    console.print("[bold]1/4[/] local stack")
    info = LocalStack(settings, progress=lambda m: console.print(f"    {m}")).up()
    console.print(f"    Kafka {info.bootstrap}, registry {info.registry_url}")
    # A secure stack (`stack up --secure`): each part runs as its own principal.
    worker_settings = producer_settings = settings
    if info.secure:
        worker_settings = info.settings_for(settings, security.WORKER)
        producer_settings = info.settings_for(settings, security.PRODUCER)
        settings = info.settings_for(settings, security.ADMIN)
        console.print(
            "    secure: workers, producer and this console log in as "
            f"{security.WORKER}, {security.PRODUCER} and {security.ADMIN}"
        )
    console.print("[bold]2/4[/] topics")
    ensure_topics(settings.kafka, routing_topics(settings), settings.replication_factor)
    create_topic(settings.kafka, plan.topic, DATA_PARTITIONS)
    console.print("[bold]3/4[/] two workers (faust -A routing_app.app worker)")
    logs = settings.state_dir / "logs"
    workers: list[WorkerProcess] = [
        launch_worker(worker_settings, Path(logs / f"worker-{i}").absolute(), web_port=settings.web_port + i)
        for i in range(2)
    ]
    try:
        for w in workers:
            if not w.wait_ready(120):
                console.print(f"[red]worker failed to start[/]; log: {w.log_path}\n{w.log()[-2000:]}")
                return 1
        for w in workers:
            base = f"http://127.0.0.1:{w.web_port}"
            console.print(f"    ready; live page {base}/ui/?topic={plan.topic}  routes {base}/routes/")
        console.print("[bold]4/4[/] traffic")
        return _run_traffic(settings, producer_settings, duration_s, plan, console)
    finally:
        for w in workers:
            w.stop()


def _run_traffic(
    settings: Settings, producer_settings: Settings, duration_s: float, plan: TrafficPlan, console: Console
) -> int:
    state = DemoState()
    hot_partition = java_partition(plan.hot_tenant.encode(), DATA_PARTITIONS)
    sampler = PartitionLoadSampler(settings.kafka, plan.topic)
    events = EventTail(settings)
    conf = producer_settings.producer_config(**{"linger.ms": 5})
    all_events: list[ReassignmentEvent] = []
    with RoutingProducer(conf) as producer:
        producer.wait_ready(30)
        traffic = TrafficGenerator(producer, plan)
        traffic.start()
        try:
            with Live(
                _render(state, traffic, hot_partition), console=console, refresh_per_second=2, transient=False
            ) as live:
                while traffic.elapsed() < duration_s:
                    time.sleep(1.0)
                    state.loads = sampler.sample()
                    for e in events.poll():
                        state.events.appendleft(e)
                        all_events.append(e)
                        state.notes.append(f"{e.action} {e.tenant}: {e.reason}")
                    live.update(_render(state, traffic, hot_partition))
        finally:
            traffic.stop()
            traffic.join(5)
        time.sleep(1.0)
        all_events.extend(events.poll())
    events.close()
    console.print("[bold]events written during the demo[/] (from the events topic):")
    for e in all_events:
        console.print(
            f"  {e.action:<8} {e.topic}/{e.tenant}: {list(e.from_partitions) or 'hash'}"
            f" → {list(e.to_partitions) or 'hash'} epoch {e.to_epoch} — {e.reason}"
        )
    counts = Counter(e.action for e in all_events)
    console.print(
        "decisions by action: "
        + (", ".join(f"{action} {count}" for action, count in sorted(counts.items())) or "none")
    )
    console.print(f"sent {traffic.sent:,} records; producer paths: {producer.counters}")
    console.print("The stack keeps running; stop it with `routing-app stack down`.")
    return 0
