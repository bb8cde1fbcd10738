"""``stack status``: whether the stack's Kafka nodes and registry run and answer, as a dict the
CLI prints (as a table or JSON).

Apart from starting and stopping because it only looks: it reads the layout the running stack
recorded and asks each service, and it changes nothing.
"""

from __future__ import annotations

from typing import Any

from routing_app.config import Settings
from routing_app.stack import kafka, registry, security
from routing_app.stack.layout import StackLayout


def stack_status(layout: StackLayout) -> dict[str, Any]:
    s = layout.settings
    if s.uses_external_cluster:
        return _external_status(s)
    recorded = layout.recorded()
    # The addresses `up` used win over the current settings (the ports may have changed).
    nodes = layout.nodes()
    secure = layout.is_secure()
    # The secure stack answers only a login: the stack's own, admin (status needs no
    # credentials in the environment).
    credentials = security.load(s.state_dir) if secure else None
    bootstrap = str(recorded.get("bootstrap", kafka.bootstrap_of(nodes)))
    url = str(recorded.get("registry_url", s.registry_url))
    node_parts = []
    for node in nodes:
        proc = kafka.process(s, node)
        pid = proc.running_pid()
        node_parts.append(
            {
                "id": node.node_id,
                "address": node.address,
                "pid": pid,
                "answering": pid is not None
                and (not secure or credentials is not None)
                and kafka.answers(kafka.node_access(node, credentials)),
                "log": str(proc.log_file),
            }
        )
    kafka_ok = all(part["answering"] for part in node_parts)
    registry_ok, registry_part = _registry_status(s, url)
    kafka_part: dict[str, Any] = {"address": bootstrap, "answering": kafka_ok, "secure": secure}
    if secure:
        kafka_part["credentials"] = str(security.credentials_file(s.state_dir))
    if len(nodes) > 1:
        kafka_part["nodes"] = node_parts
    else:
        kafka_part.update(pid=node_parts[0]["pid"], log=node_parts[0]["log"])
    return {
        "mode": "local",
        "running": kafka_ok and registry_ok,
        "state_dir": str(s.state_dir.resolve()),
        "kafka": kafka_part,
        "registry": registry_part,
    }


def _external_status(s: Settings) -> dict[str, Any]:
    kafka_ok = kafka.answers(s.kafka)
    registry_ok = registry.answers(s.registry_url)
    return {
        "mode": "external",
        "running": kafka_ok and registry_ok,
        "kafka": {"address": s.bootstrap, "answering": kafka_ok},
        "registry": {"address": s.registry_url, "answering": registry_ok},
    }


def _registry_status(s: Settings, url: str) -> tuple[bool, dict[str, Any]]:
    """Whether the registry answers, and its part of the report; ``url`` is the one `up` used."""
    if s.schema_registry_url is not None:
        registry_ok = registry.answers(s.registry_url)
        return registry_ok, {"address": s.registry_url, "answering": registry_ok, "external": True}
    process = registry.process(s)
    registry_pid = process.running_pid()
    registry_ok = registry_pid is not None and registry.answers(url)
    return registry_ok, {
        "address": url,
        "pid": registry_pid,
        "answering": registry_ok,
        "log": str(process.log_file),
        "storage": registry.storage_description(s),
        "compatibility": registry.global_compatibility(url) if registry_ok else None,
    }
