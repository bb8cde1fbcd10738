"""Whether the ports a start needs are the stack's to take: distinct, free unless the stack
itself holds them, and unchanged while it runs.

Apart from the layout because these checks run before any download (a port clash is the
cheapest failure to report) and speak in terms of the settings that move each port.
"""

from __future__ import annotations

from typing import Any

from routing_app.config import Settings
from routing_app.stack.errors import StackError
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.process import port_in_use

# Which setting (and so which ROUTING_* variable) moves each port.
PORTS = (
    ("kafka_port", "Kafka"),
    ("controller_port", "the Kafka controller"),
    ("registry_port", "the schema registry"),
)


def port_conflict_message(setting: str, what: str, port: int) -> str:
    env = f"ROUTING_{setting.upper()}"
    return (
        f"Port {port} (for {what}) is already in use by a program that is not this stack. "
        f"Stop that program, or choose another port with the setting '{setting}' "
        f"(environment variable {env}=<port>, or `{setting} = <port>` in routing-app.toml)."
    )


def check_ports(
    settings: Settings,
    nodes: list[KafkaNode],
    running: dict[str, int],
    registry_running: bool,
    local_registry: bool = True,
) -> None:
    ports = [getattr(settings, name) for name, _ in PORTS]
    if len(set(ports)) != len(ports):
        listing = ", ".join(f"{name}={getattr(settings, name)}" for name, _ in PORTS)
        raise StackError(f"The stack's ports must differ: {listing}.")
    first_running = nodes[0].name in running
    for name, what in PORTS:
        if name == "registry_port" and not local_registry:
            continue
        ours = registry_running if name == "registry_port" else first_running
        port = getattr(settings, name)
        if not ours and port_in_use(port):
            raise StackError(port_conflict_message(name, what, port))
    # Nodes 2..n took free ports when the cluster last started with none of them running;
    # a clash now means another program took one while part of the cluster ran.
    for node in nodes[1:]:
        if node.name in running:
            continue
        for port in (node.port, node.controller_port):
            if port_in_use(port):
                raise StackError(
                    f"Port {port} (for Kafka node {node.node_id}) is already in use by a "
                    f"program that is not this stack, and the rest of the cluster runs with "
                    f"that node's ports. Stop that program, or run `routing-app stack down` "
                    f"and `routing-app stack up` to give every node free ports."
                )


def check_same_ports(settings: Settings, recorded: dict[str, Any]) -> None:
    """A running stack keeps its ports; silently reporting the new ones would lie."""
    changed = [
        f"{name} {recorded[name]} -> {getattr(settings, name)}"
        for name, _ in PORTS
        if name in recorded and recorded[name] != getattr(settings, name)
    ]
    if changed:
        raise StackError(
            f"The stack in {settings.state_dir} is already running on other ports "
            f"({'; '.join(changed)}). Run `routing-app stack down` first to change ports."
        )
