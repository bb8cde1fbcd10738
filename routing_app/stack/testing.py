"""A stack for a test session: on free ports, in its own state folder, torn down at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from routing_app.config import Settings, load_settings
from routing_app.stack import LocalStack
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
