"""One ``stack up`` under way: downloads and Java runtimes, then starting what the plan lacks,
waiting for it, the secure stack's users and ACLs, and the report of what it started.

Apart from the plan because from here on processes run: a failure stops what this launch
started (what ran before it stays), and its timings feed the report.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from routing_app.config import Settings
from routing_app.stack import artifacts, kafka, registry, security
from routing_app.stack.artifacts import Progress
from routing_app.stack.errors import StackError
from routing_app.stack.external import check_external_registry
from routing_app.stack.info import BrokerInfo, StackInfo
from routing_app.stack.java import java_for_kafka, java_for_registry
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.layout import StackLayout
from routing_app.stack.plan import StartPlan
from routing_app.stack.process import free_port, stop_all
from routing_app.stack.security import Credentials


@dataclass(frozen=True)
class Tools:
    """The downloads and Java runtimes the stack runs on."""

    kafka_java: str
    classpath: str
    registry_home: Path | None  # None: no local registry
    registry_java: str


def find_tools(settings: Settings, progress: Progress, plan: StartPlan, registry_java: str | None) -> Tools:
    """Downloads what is missing; ``registry_java`` forces a java for the registry."""
    kafka_home = artifacts.ensure_kafka(settings, progress)
    registry_home = artifacts.ensure_registry(settings, progress) if plan.local_registry else None
    # Resolve both runtimes before starting anything, so a missing Java fails cleanly.
    kafka_java = java_for_kafka()
    registry_java = (registry_java or java_for_registry()) if plan.local_registry else ""
    return Tools(kafka_java, str(kafka_home / "libs" / "*"), registry_home, registry_java)


class Launch:
    """Starts what ``plan`` lacks and waits for it, remembering what it started (to stop on
    failure, and for the report) and how long each took to answer."""

    def __init__(self, layout: StackLayout, progress: Progress, plan: StartPlan, tools: Tools) -> None:
        self.settings = layout.settings
        self.layout = layout
        self.progress = progress
        self.plan = plan
        self.tools = tools
        self.pids: dict[str, int | None] = {node.name: plan.running.get(node.name) for node in plan.nodes}
        self.registry_pid: int | None = plan.registry_pid
        self.started: list[str] = []
        self.launched_at: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self._registry = registry.process(self.settings)

    def run(self) -> StackInfo:
        plan, tools = self.plan, self.tools
        try:
            self._start_kafka()
            if tools.registry_home is not None and self.registry_pid is None:
                self._start_registry(tools.registry_home, tools.registry_java)
            self.layout.write_stack_file(plan.nodes, plan.secure)
            self._wait_for_kafka()
            acls_applied = 0
            if plan.credentials is not None:
                acls_applied = self._secure_setup(plan.nodes, plan.credentials)
            self._wait_for_registry()
        except BaseException:
            # Leave nothing half-up behind; what was already running before stays.
            if "registry" in self.started:
                self._registry.stop()
            stop_all([kafka.process(self.settings, node) for node in plan.nodes if node.name in self.started])
            raise
        return self._info(acls_applied)

    def _launching(self, name: str) -> None:
        self.launched_at[name] = time.monotonic()

    def _answered(self, name: str) -> None:
        if name in self.launched_at:
            self.timings[name] = time.monotonic() - self.launched_at[name]

    def _start_kafka(self) -> None:
        s = self.settings
        to_start = [node for node in self.plan.nodes if self.pids[node.name] is None]
        if to_start:
            self._prepare_storage(to_start)
        for node in to_start:
            self.progress(f"Starting {_label(node)} on {node.address}")
            self._launching(node.name)
            self.pids[node.name] = kafka.process(s, node).start(
                kafka.argv(s, self.tools.kafka_java, self.tools.classpath, node), cwd=s.state_dir
            )
            self.started.append(node.name)

    def _prepare_storage(self, to_start: list[KafkaNode]) -> None:
        plan, tools = self.plan, self.tools
        nodes = plan.nodes
        if plan.brokers > 1 or plan.secure or self.layout.layout_file.exists():
            self.layout.save_layout(
                plan.brokers, [(n.port, n.controller_port) for n in nodes[1:]], plan.secure
            )
        self.progress("Preparing Kafka storage")
        # All nodes of one cluster share its id; a node formatted before keeps it.
        cluster_id = (
            next((cid for n in nodes if (cid := kafka.formatted_cluster_id(n))), None)
            or kafka.new_cluster_id()
        )
        # One formatting JVM per node, in parallel: a few seconds each.
        with ThreadPoolExecutor(len(to_start)) as pool:
            list(
                pool.map(
                    lambda n: kafka.prepare(
                        self.settings,
                        tools.kafka_java,
                        tools.classpath,
                        n,
                        nodes,
                        cluster_id,
                        plan.credentials,
                    ),
                    to_start,
                )
            )

    def _start_registry(self, home: Path, java: str) -> None:
        s = self.settings
        self.progress(f"Starting Apicurio Registry on {registry.local_url(s)}")
        (s.state_dir / "registry").mkdir(parents=True, exist_ok=True)
        self._launching("registry")
        self.registry_pid = self._registry.start(registry.argv(s, java, free_port()), cwd=home)
        self.started.append("registry")

    def _wait_for_kafka(self) -> None:
        # Everything was started before waiting on any of it: they boot in parallel.
        for node in self.plan.nodes:
            self.progress(f"Waiting for {_label(node)} on {node.address}")
            kafka.wait_ready(
                self.settings,
                self.pids[node.name],
                node=node,
                brokers=len(self.plan.nodes),
                credentials=self.plan.credentials,
            )
            self._answered(node.name)

    def _wait_for_registry(self) -> None:
        s = self.settings
        if self.plan.local_registry:
            self.progress(f"Waiting for Apicurio Registry on {s.registry_url}")
            registry.wait_ready(s, self.registry_pid)
            self._answered("registry")
            registry.set_global_compatibility(s.registry_url)
        else:
            # Someone else's registry: checked, never reconfigured.
            check_external_registry(s, self.progress)

    def _secure_setup(self, nodes: list[KafkaNode], credentials: Credentials) -> int:
        """Users that the storage format did not create (added to the state folder's
        credentials since), then the project's ACL set: both safe to repeat."""
        from routing_app.topics.acls import apply_acls, routing_acls

        access = credentials.access(kafka.bootstrap_of(nodes), security.ADMIN)
        self.progress("Checking the SCRAM users")
        security.ensure_users(access, credentials)
        self.progress("Applying the ACLs")
        bindings = routing_acls(
            self.settings,
            worker=security.principal(security.WORKER),
            operator=security.principal(security.OPERATOR),
            producer=security.principal(security.PRODUCER),
        )
        try:
            return apply_acls(access, bindings)
        except Exception as exc:  # KafkaException: what the broker said, as a StackError
            raise StackError(f"Applying the ACLs to the secure stack failed: {exc}") from exc

    def _info(self, acls_applied: int) -> StackInfo:
        s, plan = self.settings, self.plan
        nodes, credentials = plan.nodes, plan.credentials
        return StackInfo(
            bootstrap=kafka.bootstrap_of(nodes),
            registry_url=s.registry_url,
            kafka_pid=self.pids[nodes[0].name],
            registry_pid=self.registry_pid,
            kafka_log=kafka.process(s, nodes[0]).log_file,
            registry_log=self._registry.log_file,
            registry_storage=registry.storage_description(s) if plan.local_registry else None,
            started=tuple(self.started),
            startup_s=self.timings,
            brokers=tuple(
                BrokerInfo(node.node_id, node.address, self.pids[node.name], kafka.process(s, node).log_file)
                for node in nodes
            ),
            secure=plan.secure,
            credentials=credentials.by_principal() if credentials else {},
            env_files={
                user: security.env_file(s.state_dir, user)
                for user in (credentials.users if credentials else ())
            },
            credentials_file=security.credentials_file(s.state_dir) if credentials else None,
            acls_applied=acls_applied,
        )


def _label(node: KafkaNode) -> str:
    return "Kafka" if node.name == kafka.NAME else f"Kafka node {node.node_id}"
