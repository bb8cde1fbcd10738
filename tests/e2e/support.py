"""Helpers for end-to-end tests: real worker processes, the CLI, consuming what landed where."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from routing_app.app.launcher import WorkerProcess, launch_worker, settings_env
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import Kafka, client_settings
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.topics import ensure_topics, routing_topics

BIN = Path(sys.executable).parent
Worker = WorkerProcess

# Workers that plan every 3 s window and notice a lost peer within seconds: the live tests'
# settings (with WINDOW_S = 3.0), so that a move happens within a test's patience.
QUICK_PLANNING: dict[str, Any] = {
    "usage_partitions": 4,
    "min_compaction_lag_ms": 0,
    "window_s": 3.0,
    "window_grace_ms": 800,
    "window_idle_ms": 1000,
    "planner_max_wait_ms": 2000,
    "worker_session_timeout_s": 6.0,
}


def fresh_routing_settings(stack: Settings, prefix: str, **changes: Any) -> Settings:
    """``stack`` with routing topics (created here) and an app id of its own, named
    ``<prefix>.<kind>.<suffix>``: tests that share a cluster never see each other's routes."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack.replace(
        routes_topic=f"{prefix}.routes.{suffix}",
        events_topic=f"{prefix}.events.{suffix}",
        usage_topic=f"{prefix}.usage.{suffix}",
        control_topic=f"{prefix}.control.{suffix}",
        answers_topic=f"{prefix}.answers.{suffix}",
        app_id=f"{prefix.replace('.', '-')}-{suffix}",
        **changes,
    )
    ensure_topics(settings.kafka, routing_topics(settings))
    return settings


def start_worker(settings: Settings, workdir: Path, wait_s: float = 90.0, **env: str) -> Worker:
    """A running, ready worker; or an exited one (for tests of refusals) — never a hung one."""
    worker = launch_worker(settings, workdir, None, **env)
    if worker.wait_ready(wait_s) or not worker.alive:
        return worker
    worker.stop()
    raise AssertionError(f"worker not ready in {wait_s}s:\n{worker.log()[-3000:]}")


@contextlib.contextmanager
def running_workers(settings: Settings, workdir: Path, count: int) -> Iterator[list[Worker]]:
    """``count`` ready workers of one app, stopped on exit."""
    workers = [start_worker(settings, workdir / f"w{i}") for i in range(count)]
    try:
        for w in workers:
            assert w.alive, w.log()[-3000:]
        yield workers
    finally:
        for w in workers:
            w.stop()


def start_writer(settings: Settings, workdir: Path, **env: str) -> Worker:
    """A lone worker that already owns the control partition, so it answers commands at once.

    On a cold cluster the first group join (and the idempotent producers' PID) can take longer
    than a command's default wait; tests should not race it."""
    worker = start_worker(settings, workdir, 90.0, **env)
    if worker.alive:
        wait_for(
            lambda: worker.get("/writer/stats").get("planning"),
            timeout=90,
            what="the worker to own the control partition",
        )
    return worker


def cli(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "routing-app"), *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def consume_all(
    bootstrap: Kafka, topic: str, expected: int, timeout: float = 30.0
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of the first ``expected`` records of every partition of topic."""
    consumer = Consumer(
        client_settings(
            bootstrap,
            **{
                "group.id": f"e2e-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    found: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    found.append((m.partition() or 0, m.key(), m.value()))
    finally:
        consumer.close()
    return found


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def leader(workers: list[Worker]) -> Worker | None:
    for w in workers:
        if w.alive and w.get("/writer/stats")["planning"]:
            return w
    return None


def events(settings: Settings) -> list[ReassignmentEvent]:
    codec = AvroCodec(registry_client(settings.registry_url), EVENT_SCHEMA, settings.events_topic)
    consumer = Consumer(
        client_settings(settings.kafka, **{"group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(settings.events_topic, 0, 0)])
    found = []
    try:
        while batch := consumer.consume(500, 1.0):
            found += [
                ReassignmentEvent.from_record(codec.decode(m.value())) for m in batch if m.error() is None
            ]
    finally:
        consumer.close()
    return found
