"""The single-node KRaft Kafka (broker + controller in one JVM) of the local stack."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from routing_app.config import Settings
from routing_app.stack.errors import StackError
from routing_app.stack.process import ManagedProcess, wait_answering

NAME = "kafka"
READY_TIMEOUT_S = 60.0


def data_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka-data"


def properties_file(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "server.properties"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(NAME, settings.state_dir)


def server_properties(settings: Settings) -> str:
    host = "127.0.0.1"
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{settings.kafka_port},"
        f"CONTROLLER://{host}:{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir(settings).resolve()),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly (`routing-app topics ensure`) with their real config;
        # an implicitly created one would silently have the wrong partitions/cleanup policy.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # Tests wait for compaction; the default backoff (15 s) makes them slow.
        "log.cleaner.backoff.ms": "1000",
    }
    body = "\n".join(f"{key}={value}" for key, value in lines.items())
    return f"# Written by `routing-app stack up`; rewritten on every start.\n{body}\n"


def new_cluster_id() -> str:
    """A Kafka Uuid string (what `kafka-storage random-uuid` prints), made without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka never hands out ids that start with '-' (they read like command-line flags).
        if not text.startswith("-"):
            return text


def argv(settings: Settings, java: str, classpath: str) -> list[str]:
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-Xss1m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(properties_file(settings).resolve()),
    ]


def prepare(settings: Settings, java: str, classpath: str) -> None:
    """Writes server.properties and formats the KRaft storage once (meta.properties = done)."""
    props = properties_file(settings)
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text(server_properties(settings))
    if (data_dir(settings) / "meta.properties").is_file():
        return
    data_dir(settings).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
         "-t", new_cluster_id(), "-c", str(props.resolve())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise StackError(
            f"Formatting the Kafka storage in {data_dir(settings)} failed "
            f"(exit {done.returncode}):\n" + "\n".join(output[-20:])
        )


def answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a broker at ``bootstrap`` returns cluster metadata."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print every refused connection while the broker boots.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000,
                         "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException and friends: "not yet"
        return False
    return True


def wait_ready(settings: Settings, pid: int | None, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Blocks until the Kafka answers; returns the seconds waited."""
    return wait_answering(process(settings), pid, "Kafka", settings.bootstrap,
                          lambda: answers(settings.bootstrap, timeout_s=2.0), timeout_s)
