"""What ``stack up`` reports: the addresses, processes and logins of the stack it left running.

Apart from the code that starts the stack because its callers (the CLI, the demo, test
fixtures) read only this, and ``settings_for`` / ``access`` turn it into client settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from routing_app.config import KafkaAccess, Settings
from routing_app.stack import security
from routing_app.stack.errors import StackError


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
