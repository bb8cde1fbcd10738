"""A stack for a test session: on free ports, in its own state folder, torn down at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from routing_app.config import Settings, load_settings
from routing_app.stack import LocalStack, StackInfo, security
from routing_app.stack.process import free_ports


@contextlib.contextmanager
def session_stack(state_dir: Path, base: Settings | None = None) -> Iterator[Settings]:
    """Yields Settings pointing at a running Kafka + registry.

    With ROUTING_BOOTSTRAP_SERVERS set the external cluster is used as is (only checked).
    Otherwise a private LocalStack runs in ``state_dir`` on fresh ports, so it never collides
    with a demo stack; downloads still come from the shared ``cache_dir``.
    """
    settings = base if base is not None else load_settings()
    if settings.uses_external_cluster:
        LocalStack(settings).up()
        yield settings
        return
    kafka_port, controller_port, registry_port = free_ports(3)
    settings = settings.replace(
        state_dir=state_dir,
        kafka_port=kafka_port,
        controller_port=controller_port,
        registry_port=registry_port,
    )
    stack = LocalStack(settings)
    try:
        stack.up()
        yield settings
    finally:
        stack.down()


@dataclass(frozen=True)
class SecureStack:
    """A running secure stack: ``settings`` log in as admin; ``info`` has every user's
    credentials."""

    settings: Settings
    info: StackInfo

    def as_user(self, user: str) -> Settings:
        """These settings logged in as ``user`` ("routing-producer" or "User:routing-producer")."""
        return self.info.settings_for(self.settings, user)


@contextlib.contextmanager
def secure_stack(
    state_dir: Path, base: Settings | None = None, *, brokers: int = 1, registry_url: str | None = None
) -> Iterator[SecureStack]:
    """A private secure Kafka (SASL/SCRAM logins, the project's ACLs) in ``state_dir`` on
    fresh ports, stopped at the end.

    Always started here, even with ROUTING_BOOTSTRAP_SERVERS set: an external cluster's
    security is not ours to set up. ``registry_url``: use that registry (the session's) and
    start only Kafka; None starts a private registry too.
    """
    settings = base if base is not None else load_settings()
    ports = free_ports(3)
    settings = settings.replace(
        bootstrap_servers=None,
        schema_registry_url=registry_url,
        state_dir=state_dir,
        kafka_port=ports[0],
        controller_port=ports[1],
        registry_port=ports[2],
        security_protocol="",
        sasl_mechanism="",
        sasl_username="",
        sasl_password="",
    )
    stack = LocalStack(settings, brokers=brokers, secure=True)
    try:
        info = stack.up()
        yield SecureStack(info.settings_for(settings, security.ADMIN), info)
    finally:
        stack.down()
