"""The stack's layout in its state folder: the shape and ports of its Kafka, as the running
stack recorded them (``run/stack.json``) and as kept across down/up (``kafka-layout.json``).

Apart from starting and stopping because ``up``, ``down`` and ``status`` all read it, and only
these files say which nodes, ports and kind (secure or not) a state folder's Kafka has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from routing_app.config import Settings
from routing_app.stack import kafka
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.ports import PORTS
from routing_app.stack.process import ManagedProcess, free_ports, port_in_use


class StackLayout:
    """The layout files of ``settings.state_dir``, and the node ports a start chooses from them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def stack_file(self) -> Path:
        return self.settings.state_dir / "run" / "stack.json"

    @property
    def layout_file(self) -> Path:
        # Kept across down/up (unlike run/stack.json): the cluster's shape and its nodes' ports.
        return self.settings.state_dir / "kafka-layout.json"

    # -- run/stack.json: the running stack ---------------------------------------------------

    def recorded(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.stack_file.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def write_stack_file(self, nodes: list[KafkaNode], secure: bool) -> None:
        self.stack_file.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "bootstrap": kafka.bootstrap_of(nodes),
            "registry_url": self.settings.registry_url,
        }
        record.update({name: getattr(self.settings, name) for name, _ in PORTS})
        record["brokers"] = len(nodes)
        record["secure"] = secure
        record["nodes"] = [
            {"id": n.node_id, "name": n.name, "port": n.port, "controller_port": n.controller_port}
            for n in nodes
        ]
        self.stack_file.write_text(json.dumps(record, indent=2) + "\n")

    def remove_stack_file(self) -> None:
        self.stack_file.unlink(missing_ok=True)

    # -- kafka-layout.json: the shape kept across down/up ------------------------------------

    def saved_layout(self) -> tuple[int, list[tuple[int, int]]]:
        """(brokers, (port, controller port) of nodes 2..n) as last started here."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(self.layout_file.read_text())
            brokers = int(data["brokers"])
            ports = [(int(port), int(controller)) for port, controller in data["ports"]]
            if brokers in kafka.BROKER_COUNTS and len(ports) == brokers - 1:
                return brokers, ports
        return 1, []

    def saved_secure(self) -> bool:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            return bool(json.loads(self.layout_file.read_text()).get("secure", False))
        return False

    def save_layout(self, brokers: int, ports: list[tuple[int, int]], secure: bool) -> None:
        self.layout_file.parent.mkdir(parents=True, exist_ok=True)
        self.layout_file.write_text(
            json.dumps({"brokers": brokers, "ports": [list(p) for p in ports], "secure": secure}) + "\n"
        )

    # -- what the files say ------------------------------------------------------------------

    def is_secure(self) -> bool:
        """Whether this state folder's Kafka runs (or last ran) as the secure stack."""
        recorded = self.recorded()
        if "secure" in recorded:
            return bool(recorded["secure"])
        return self.saved_secure()

    def nodes(self) -> list[KafkaNode]:
        """The Kafka nodes of this state folder: as the running stack recorded them, else as
        last laid out."""
        secure = self.is_secure()
        recorded = self.recorded().get("nodes")
        if isinstance(recorded, list) and recorded:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                pairs = [(int(n["port"]), int(n["controller_port"])) for n in recorded]
                layout = kafka.cluster_nodes(self.settings, len(pairs), pairs[1:], secure)
                return [
                    dataclasses.replace(node, port=port, controller_port=controller)
                    for node, (port, controller) in zip(layout, pairs, strict=True)
                ]
        brokers, ports = self.saved_layout()
        settings = self.settings
        with contextlib.suppress(KeyError, TypeError, ValueError):
            # A stack.json from before node lists: its ports still win.
            recorded_ports = self.recorded()
            settings = settings.replace(
                kafka_port=int(recorded_ports["kafka_port"]),
                controller_port=int(recorded_ports["controller_port"]),
            )
        return kafka.cluster_nodes(settings, brokers, ports, secure)

    def kafka_processes(self) -> list[ManagedProcess]:
        """Every Kafka node with a pid file here, whatever shape the cluster had."""
        run = self.settings.state_dir / "run"
        names = sorted(
            path.stem
            for path in run.glob(f"{kafka.NAME}*.pid")
            if re.fullmatch(rf"{kafka.NAME}(-\d+)?", path.stem)
        )
        return [ManagedProcess(name, self.settings.state_dir) for name in names]

    def node_ports(self, brokers: int, running: dict[str, int]) -> list[tuple[int, int]]:
        """(port, controller port) of nodes 2..n: those they had, while any of them runs;
        otherwise those they had if still free, else kafka_port + 2(i-1) and controller_port +
        2(i-1) if free, else free ports."""
        s = self.settings
        if brokers == 1:
            return []
        if running:
            current = self.nodes()
            if len(current) == brokers:
                return [(node.port, node.controller_port) for node in current[1:]]
        saved_brokers, saved = self.saved_layout()
        saved = saved if saved_brokers == brokers else []
        taken = {s.kafka_port, s.controller_port, s.registry_port}
        chosen: list[tuple[int, int]] = []
        for i in range(2, brokers + 1):
            options = [saved[i - 2]] if saved else []
            options.append((s.kafka_port + 2 * (i - 1), s.controller_port + 2 * (i - 1)))
            pair = next(
                (
                    o
                    for o in options
                    if o[0] != o[1]
                    and all(0 < port < 65536 and port not in taken and not port_in_use(port) for port in o)
                ),
                None,
            )
            while pair is None:
                found = free_ports(2)
                if not taken.intersection(found):
                    pair = (found[0], found[1])
            taken.update(pair)
            chosen.append(pair)
        return chosen
