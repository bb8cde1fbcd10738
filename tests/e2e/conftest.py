"""End-to-end fixtures: real workers (`faust -A routing_app.app worker`) on the session stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from routing_app.config import Settings
from routing_app.topics import create_topic
from tests.e2e.support import Worker, fresh_routing_settings, start_writer


@pytest.fixture(scope="session")
def routing_settings(stack_settings: Settings) -> Settings:
    """The session stack with this session's own routing topics (a re-used cluster stays clean)."""
    return fresh_routing_settings(stack_settings, "e2e", min_compaction_lag_ms=0)


@pytest.fixture(scope="session")
def worker(routing_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_writer(routing_settings, tmp_path_factory.mktemp("worker"))
    assert w.process.poll() is None, f"worker exited:\n{w.log()[-3000:]}"
    yield w
    w.stop()


@pytest.fixture
def data_topic(routing_settings: Settings) -> Callable[[int], str]:
    def make(partitions: int = 12) -> str:
        name = f"orders-{uuid.uuid4().hex[:8]}"
        create_topic(routing_settings.bootstrap, name, partitions)
        return name

    return make
