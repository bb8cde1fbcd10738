"""End-to-end fixtures: real workers (`faust -A routing_app.app worker`) on the session stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from routing_app.config import Settings
from routing_app.topics import create_topic, ensure_topics, routing_topics
from tests.e2e.support import Worker, start_worker


@pytest.fixture(scope="session")
def routing_settings(stack_settings: Settings) -> Settings:
    """The session stack with this session's own routing topics (a re-used cluster stays clean)."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.replace(
        routes_topic=f"e2e.routes.{suffix}", events_topic=f"e2e.events.{suffix}",
        usage_topic=f"e2e.usage.{suffix}", control_topic=f"e2e.control.{suffix}",
        app_id=f"e2e-{suffix}", min_compaction_lag_ms=0)
    ensure_topics(settings.bootstrap, routing_topics(settings))
    return settings


@pytest.fixture(scope="session")
def worker(routing_settings: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Worker]:
    w = start_worker(routing_settings, tmp_path_factory.mktemp("worker"))
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
