"""Shared fixtures. The stack logic lives in routing_app.stack.testing; this only wires it in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing_app.config import Settings
from routing_app.stack.testing import session_stack


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a running Kafka + schema registry.

    ROUTING_BOOTSTRAP_SERVERS set: that cluster (and ROUTING_SCHEMA_REGISTRY_URL). Otherwise a
    private local stack on free ports, in a temporary state folder, stopped after the session.
    """
    with session_stack(tmp_path_factory.mktemp("stack")) as settings:
        yield settings
