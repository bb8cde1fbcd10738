"""The KRaft Kafka of the local stack: one node, or a cluster of 3 (or 5), each node a broker
and a controller in one JVM, all on 127.0.0.1.

The single node keeps the layout it always had (``kafka/server.properties``, ``kafka-data/``,
process ``kafka``). Node ``i`` of a cluster has a folder of its own, ``kafka-<i>/`` (its
server.properties and ``data/``), and runs as process ``kafka-<i>``.

The secure stack (``stack up --secure``: SASL/SCRAM logins, ACLs) keeps its data apart, in
``kafka-secure/`` + ``kafka-secure-data/`` and ``kafka-secure-<i>/``: its metadata holds the
users and ACLs, and a plain stack must not start on it (nor the other way round). Its
processes keep the plain names, so ``stack down`` stops either.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from routing_app.config import KafkaAccess, Settings
from routing_app.stack import security
from routing_app.stack.errors import StackError
from routing_app.stack.process import ManagedProcess, wait_answering
from routing_app.stack.security import Credentials

NAME = "kafka"
# The secure stack's folders start with this instead of NAME.
SECURE_DIR = "kafka-secure"
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


def single_node(settings: Settings, secure: bool = False) -> KafkaNode:
    folder = SECURE_DIR if secure else NAME
    return KafkaNode(
        1,
        NAME,
        settings.kafka_port,
        settings.controller_port,
        settings.state_dir / folder,
        settings.state_dir / f"{folder}-data",
    )


def cluster_nodes(
    settings: Settings, brokers: int, ports: Sequence[tuple[int, int]] = (), secure: bool = False
) -> list[KafkaNode]:
    """The nodes of a ``brokers``-node stack. Node 1 listens on the settings' ports (so
    ``settings.bootstrap`` reaches the cluster); ``ports`` gives (broker, controller) ports of
    nodes 2..n. ``secure``: the secure stack's folders."""
    if brokers == 1:
        return [single_node(settings, secure)]
    if len(ports) != brokers - 1:
        raise ValueError(f"{brokers} brokers need ports for {brokers - 1} more nodes, got {len(ports)}")
    pairs = [(settings.kafka_port, settings.controller_port), *ports]
    folder = SECURE_DIR if secure else NAME
    return [
        KafkaNode(
            i,
            f"{NAME}-{i}",
            port,
            controller,
            settings.state_dir / f"{folder}-{i}",
            settings.state_dir / f"{folder}-{i}" / "data",
        )
        for i, (port, controller) in enumerate(pairs, start=1)
    ]


def bootstrap_of(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(node.address for node in nodes)


def data_dir(settings: Settings) -> Path:
    return single_node(settings).data_dir


def properties_file(settings: Settings) -> Path:
    return single_node(settings).properties_file


def process(settings: Settings, node: KafkaNode | None = None) -> ManagedProcess:
    return ManagedProcess((node or single_node(settings)).name, settings.state_dir)


def server_properties(
    settings: Settings,
    node: KafkaNode | None = None,
    nodes: Sequence[KafkaNode] = (),
    credentials: Credentials | None = None,
) -> str:
    """The node's server.properties; with ``credentials``, the secure stack's (see
    :func:`security_properties`)."""
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
        "controller.quorum.voters": ",".join(f"{v.node_id}@{host}:{v.controller_port}" for v in voters),
        "listeners": f"PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
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
    if credentials is not None:
        lines.update(security_properties(node, credentials))
    body = "\n".join(f"{key}={value}" for key, value in lines.items())
    return f"# Written by `routing-app stack up`; rewritten on every start.\n{body}\n"


# The secure stack's client listener (clients and inter-broker traffic).
CLIENT_LISTENER = "CLIENT"


def security_properties(node: KafkaNode, credentials: Credentials) -> dict[str, str]:
    """What makes a node of the secure stack: SCRAM logins, ACLs enforced, nothing open.

    - Client listener (the node's port): SASL_PLAINTEXT with SCRAM-SHA-512 only. Brokers talk
      to each other there too, as ``admin``.
    - Controller listener: SASL_PLAINTEXT with PLAIN and one static user (JAAS, in this file).
      Controllers cannot use SCRAM: its credentials live in the metadata log they serve.
      Kafka 4.4 accepts this (``sasl.mechanism.controller.protocol=PLAIN``): a client without
      the controller's password is refused there too.
    - StandardAuthorizer, deny when no ACL matches; ``admin`` and the controller's principal
      are super users (brokers register and heartbeat to the controllers as that principal).
    """
    admin = security.ADMIN
    admin_password = credentials.password(admin)
    controller_user, controller_password = (credentials.controller_user, credentials.controller_password)
    client = CLIENT_LISTENER.lower()
    scram = security.SCRAM_MECHANISM.lower()
    return {
        "listeners": f"{CLIENT_LISTENER}://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"{CLIENT_LISTENER}://{HOST}:{node.port}",
        "inter.broker.listener.name": CLIENT_LISTENER,
        "listener.security.protocol.map": f"{CLIENT_LISTENER}:{security.SECURITY_PROTOCOL},"
        f"CONTROLLER:{security.SECURITY_PROTOCOL}",
        f"listener.name.{client}.sasl.enabled.mechanisms": security.SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": security.SCRAM_MECHANISM,
        f"listener.name.{client}.{scram}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{admin}" password="{admin_password}";'
        ),
        "sasl.mechanism.controller.protocol": security.CONTROLLER_MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": security.CONTROLLER_MECHANISM,
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{controller_user}" password="{controller_password}" '
            f'user_{controller_user}="{controller_password}";'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"{security.principal(admin)};{security.principal(controller_user)}",
    }


def new_cluster_id() -> str:
    """A Kafka Uuid string (what `kafka-storage random-uuid` prints), made without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka never hands out ids that start with '-' (they read like command-line flags).
        if not text.startswith("-"):
            return text


def argv(settings: Settings, java: str, classpath: str, node: KafkaNode | None = None) -> list[str]:
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


def prepare(
    settings: Settings,
    java: str,
    classpath: str,
    node: KafkaNode | None = None,
    nodes: Sequence[KafkaNode] = (),
    cluster_id: str | None = None,
    credentials: Credentials | None = None,
) -> None:
    """Writes server.properties and formats the KRaft storage once (meta.properties = done).

    The nodes of one cluster must be formatted with the same ``cluster_id``. With
    ``credentials`` (the secure stack) the metadata log starts with every user's SCRAM
    credential, so ``admin`` can log in (and brokers reach each other) on the first start."""
    node = node or single_node(settings)
    props = node.properties_file
    props.parent.mkdir(parents=True, exist_ok=True)
    text = server_properties(settings, node, nodes, credentials)
    if credentials is not None:
        security.write_private(props, text)  # holds the admin's and the controller's passwords
    else:
        props.write_text(text)
    if (node.data_dir / "meta.properties").is_file():
        return
    node.data_dir.mkdir(parents=True, exist_ok=True)
    # StorageTool takes SCRAM credentials only as arguments: for the second or two it runs
    # they are in its command line (visible to `ps` of other users of this machine).
    scram = (
        []
        if credentials is None
        else [
            arg
            for user, password in sorted(credentials.users.items())
            for arg in ("--add-scram", f"{security.SCRAM_MECHANISM}=[name={user},password={password}]")
        ]
    )
    done = subprocess.run(
        [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id or new_cluster_id(),
            "-c",
            str(props.resolve()),
            *scram,
        ],
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


def answers(kafka: KafkaAccess | str, timeout_s: float = 3.0, brokers: int = 1) -> bool:
    """True when a broker at ``kafka`` (an address, or a KafkaAccess with credentials) returns
    cluster metadata listing ``brokers`` brokers."""
    from confluent_kafka.admin import AdminClient

    access = kafka if isinstance(kafka, KafkaAccess) else KafkaAccess(kafka)
    # log_level 0: librdkafka would print every refused connection while the broker boots.
    admin = AdminClient(access.client_config(**{"socket.timeout.ms": 3000, "log_level": 0}))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException and friends: "not yet"
        return False
    return len(metadata.brokers) >= brokers


def node_access(node: KafkaNode, credentials: Credentials | None) -> KafkaAccess:
    """How the stack itself reaches ``node``: as admin on the secure stack."""
    if credentials is None:
        return KafkaAccess(node.address)
    return credentials.access(node.address, security.ADMIN)


def wait_ready(
    settings: Settings,
    pid: int | None,
    timeout_s: float = READY_TIMEOUT_S,
    node: KafkaNode | None = None,
    brokers: int = 1,
    credentials: Credentials | None = None,
) -> float:
    """Blocks until the node answers and sees ``brokers`` brokers; returns the seconds waited."""
    node = node or single_node(settings)
    what = "Kafka" if node.name == NAME else f"Kafka node {node.node_id}"
    access = node_access(node, credentials)
    return wait_answering(
        process(settings, node),
        pid,
        what,
        node.address,
        lambda: answers(access, timeout_s=2.0, brokers=brokers),
        timeout_s,
    )
