"""Helpers for end-to-end tests: real worker processes, the CLI, consuming what landed where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.stack.testing import free_ports

BIN = Path(sys.executable).parent


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTING_")}
    env.update(
        ROUTING_BOOTSTRAP_SERVERS=settings.bootstrap,
        ROUTING_SCHEMA_REGISTRY_URL=settings.registry_url,
        ROUTING_ROUTES_TOPIC=settings.routes_topic,
        ROUTING_EVENTS_TOPIC=settings.events_topic,
        ROUTING_USAGE_TOPIC=settings.usage_topic,
        ROUTING_CONTROL_TOPIC=settings.control_topic,
        ROUTING_APP_ID=settings.app_id,
        ROUTING_MIN_COMPACTION_LAG_MS=str(settings.min_compaction_lag_ms),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_worker(settings: Settings, workdir: Path, wait_s: float = 90.0, **env: str) -> Worker:
    (web_port,) = free_ports(1)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "faust"), "-A", "routing_app.app", "worker", "-l", "info",
             "--web-port", str(web_port), "--web-host", "127.0.0.1"],
            cwd=workdir, env=settings_env(settings, ROUTING_WEB_PORT=str(web_port), **env),
            stdout=log, stderr=subprocess.STDOUT)
    worker = Worker(process, web_port, log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return worker
        if "[^Worker]: Ready" in worker.log():
            try:
                worker.get("/writer/stats")
                return worker
            except OSError:
                pass
        time.sleep(0.3)
    worker.stop()
    raise AssertionError(f"worker not ready in {wait_s}s:\n{worker.log()[-3000:]}")


def cli(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "routing-app"), *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=timeout)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0
                ) -> list[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of the first ``expected`` records of every partition of topic."""
    consumer = Consumer(client_settings(bootstrap, **{
        "group.id": f"e2e-{uuid.uuid4()}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False}))
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    found: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    found.append((m.partition(), m.key(), m.value()))
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
