"""The KRaft Kafka of the local stack: one node, or a cluster of 3 (or 5), each node a broker
and a controller in one JVM, all on 127.0.0.1.

The single node keeps the layout it always had (``kafka/server.properties``, ``kafka-data/``,
process ``kafka``). Node ``i`` of a cluster has a folder of its own, ``kafka-<i>/`` (its
server.properties and ``data/``), and runs as process ``kafka-<i>``.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from routing_app.config import Settings
from routing_app.stack.errors import StackError
from routing_app.stack.process import ManagedProcess, wait_answering

NAME = "kafka"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
# A quorum of n controllers goes on while a majority runs; an even n survives no more losses
# than n - 1 and needs one more node to agree.
BROKER_COUNTS = (1, 3, 5)
# The routing topics want 3 copies; more brokers add capacity, not copies.
MAX_DEFAULT_REPLICAS = 3


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    name: str  # the process: run/<name>.pid, logs/<name>.log
    port: int
    controller_port: int
    config_dir: Path
    data_dir: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.config_dir / "server.properties"


def single_node(settings: Settings) -> KafkaNode:
    return KafkaNode(1, NAME, settings.kafka_port, settings.controller_port,
                     settings.state_dir / "kafka", settings.state_dir / "kafka-data")


def cluster_nodes(settings: Settings, brokers: int,
                  ports: Sequence[tuple[int, int]] = ()) -> list[KafkaNode]:
    """The nodes of a ``brokers``-node stack. Node 1 listens on the settings' ports (so
    ``settings.bootstrap`` reaches the cluster); ``ports`` gives (broker, controller) ports of
    nodes 2..n."""
    if brokers == 1:
        return [single_node(settings)]
    if len(ports) != brokers - 1:
        raise ValueError(f"{brokers} brokers need ports for {brokers - 1} more nodes, got {len(ports)}")
    pairs = [(settings.kafka_port, settings.controller_port), *ports]
    return [KafkaNode(i, f"{NAME}-{i}", port, controller, settings.state_dir / f"{NAME}-{i}",
                      settings.state_dir / f"{NAME}-{i}" / "data")
            for i, (port, controller) in enumerate(pairs, start=1)]


def bootstrap_of(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(node.address for node in nodes)


def data_dir(settings: Settings) -> Path:
    return single_node(settings).data_dir


def properties_file(settings: Settings) -> Path:
    return single_node(settings).properties_file


def process(settings: Settings, node: KafkaNode | None = None) -> ManagedProcess:
    return ManagedProcess((node or single_node(settings)).name, settings.state_dir)


def server_properties(settings: Settings, node: KafkaNode | None = None,
                      nodes: Sequence[KafkaNode] = ()) -> str:
    node = node or single_node(settings)
    voters = list(nodes) or [node]
    host = HOST
    replicas = min(len(voters), MAX_DEFAULT_REPLICAS)
    # Two copies must acknowledge once there are three: one broker may die without losing an
    # acknowledged write of the internal topics (group offsets, transactions).
    min_isr = "2" if replicas >= 3 else "1"
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(
            f"{v.node_id}@{host}:{v.controller_port}" for v in voters),
        "listeners": f"PLAINTEXT://{host}:{node.port},"
        f"CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.data_dir.resolve()),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly (`routing-app topics ensure`) with their real config;
        # an implicitly created one would silently have the wrong partitions/cleanup policy.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # Tests wait for compaction; the default backoff (15 s) makes them slow.
        "log.cleaner.backoff.ms": "1000",
    }
    if len(voters) > 1:
        # What a topic created without a replication factor gets (the routing topics, with
        # replication_factor 0); the project adds min.insync.replicas=2 to its own.
        lines["default.replication.factor"] = str(replicas)
    body = "\n".join(f"{key}={value}" for key, value in lines.items())
    return f"# Written by `routing-app stack up`; rewritten on every start.\n{body}\n"


def new_cluster_id() -> str:
    """A Kafka Uuid string (what `kafka-storage random-uuid` prints), made without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka never hands out ids that start with '-' (they read like command-line flags).
        if not text.startswith("-"):
            return text


def argv(settings: Settings, java: str, classpath: str, node: KafkaNode | None = None
         ) -> list[str]:
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-Xss1m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-cp",
        classpath,
        "kafka.Kafka",
        str((node or single_node(settings)).properties_file.resolve()),
    ]


def formatted_cluster_id(node: KafkaNode) -> str | None:
    """The cluster id in the node's meta.properties; None while its storage is unformatted."""
    try:
        text = (node.data_dir / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def prepare(settings: Settings, java: str, classpath: str, node: KafkaNode | None = None,
            nodes: Sequence[KafkaNode] = (), cluster_id: str | None = None) -> None:
    """Writes server.properties and formats the KRaft storage once (meta.properties = done).

    The nodes of one cluster must be formatted with the same ``cluster_id``."""
    node = node or single_node(settings)
    props = node.properties_file
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text(server_properties(settings, node, nodes))
    if (node.data_dir / "meta.properties").is_file():
        return
    node.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
         "-t", cluster_id or new_cluster_id(), "-c", str(props.resolve())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise StackError(
            f"Formatting the Kafka storage in {node.data_dir} failed "
            f"(exit {done.returncode}):\n" + "\n".join(output[-20:])
        )


def answers(bootstrap: str, timeout_s: float = 3.0, brokers: int = 1) -> bool:
    """True when a broker at ``bootstrap`` returns cluster metadata listing ``brokers`` brokers."""
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print every refused connection while the broker boots.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000,
                         "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException and friends: "not yet"
        return False
    return len(metadata.brokers) >= brokers


def wait_ready(settings: Settings, pid: int | None, timeout_s: float = READY_TIMEOUT_S,
               node: KafkaNode | None = None, brokers: int = 1) -> float:
    """Blocks until the node answers and sees ``brokers`` brokers; returns the seconds waited."""
    node = node or single_node(settings)
    what = "Kafka" if node.name == NAME else f"Kafka node {node.node_id}"
    return wait_answering(process(settings, node), pid, what, node.address,
                          lambda: answers(node.address, timeout_s=2.0, brokers=brokers),
                          timeout_s)
