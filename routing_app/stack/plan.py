"""What one ``stack up`` is to start, decided and checked before anything is downloaded or
started: the Kafka nodes and their ports, secure or not, the registry, and what already runs.

Apart from the launch because every refusal here (a running stack of another shape or kind,
a port clash, lost credentials) needs no JVM and leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from routing_app.stack import kafka, registry, security
from routing_app.stack.errors import StackError
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.layout import StackLayout
from routing_app.stack.ports import check_ports, check_same_ports
from routing_app.stack.security import Credentials


@dataclass(frozen=True)
class StartPlan:
    """What one ``up`` is to start, and what already runs."""

    nodes: list[KafkaNode]
    brokers: int
    secure: bool
    # False: ROUTING_SCHEMA_REGISTRY_URL names someone else's registry.
    local_registry: bool
    running: dict[str, int]  # Kafka node name -> pid
    registry_pid: int | None
    credentials: Credentials | None  # the secure stack's


def plan_start(layout: StackLayout, brokers: int | None, secure: bool | None) -> StartPlan:
    """What ``up`` starts, checked against what runs and the ports, before any download.

    ``brokers`` and ``secure`` as asked (None: as this state folder ran last)."""
    s = layout.settings
    # ROUTING_SCHEMA_REGISTRY_URL alone: local Kafka, but that registry instead of ours.
    local_registry = s.schema_registry_url is None
    running = {proc.name: pid for proc in layout.kafka_processes() if (pid := proc.running_pid()) is not None}
    brokers = brokers or layout.saved_layout()[0]
    registry_pid = registry.process(s).running_pid() if local_registry else None
    if running or registry_pid is not None:
        check_same_ports(s, layout.recorded())
    secure = _mode(layout, secure, running)
    nodes = kafka.cluster_nodes(s, brokers, layout.node_ports(brokers, running), secure)
    others = sorted(set(running) - {node.name for node in nodes})
    if others:
        shape = "one broker" if others == [kafka.NAME] else f"{len(others)} brokers"
        raise StackError(
            f"Kafka runs in {s.state_dir} with {shape}; run `routing-app stack down` first "
            f"to start it with {brokers} broker(s)."
        )
    # Before any download: a port clash is the cheapest failure to report.
    check_ports(s, nodes, running, registry_running=registry_pid is not None, local_registry=local_registry)
    # Also before any download: made (or refused) without a JVM.
    credentials = _credentials(layout, nodes) if secure else None
    return StartPlan(nodes, brokers, secure, local_registry, running, registry_pid, credentials)


def _mode(layout: StackLayout, asked: bool | None, running: dict[str, int]) -> bool:
    """Secure or not: as asked; else as running; else as this folder ran last. A running
    Kafka of the other kind must be stopped first (its listeners are another kind)."""
    current = layout.is_secure() if running else None
    secure = asked if asked is not None else (current if current is not None else layout.saved_secure())
    if current is not None and current != secure:
        raise StackError(
            f"Kafka runs in {layout.settings.state_dir} "
            f"{'as the secure stack (SASL/SCRAM, ACLs)' if current else 'without security'}"
            f"; run `routing-app stack down` first, then `routing-app stack up "
            f"{'--secure' if secure else '--no-secure'}`. Each kind keeps its own data "
            f"(topics made in one are not in the other)."
        )
    return secure


def _credentials(layout: StackLayout, nodes: list[KafkaNode]) -> Credentials:
    """The secure stack's credentials, made on first use; a secure Kafka formatted with
    credentials that are gone can never be logged in to again."""
    state = layout.settings.state_dir
    if security.load(state) is None:
        formatted = [n.data_dir for n in nodes if kafka.formatted_cluster_id(n)]
        if formatted:
            raise StackError(
                f"The secure Kafka in {', '.join(map(str, formatted))} was made with the "
                f"passwords of {security.credentials_file(state)}, which is gone: nobody can "
                f"log in to it. Run `routing-app stack down`, remove "
                f"{', '.join(map(str, _folders(nodes)))} (its data), and start again."
            )
    return security.load_or_create(state)


def _folders(nodes: list[KafkaNode]) -> list[Path]:
    """Every folder the nodes keep files in (a cluster node's data is inside its folder)."""
    found: list[Path] = []
    for node in nodes:
        for folder in (node.config_dir, node.data_dir):
            if not any(folder == f or folder.is_relative_to(f) for f in found):
                found.append(folder)
    return found
