"""The planner's partition write rates over a window, from the broker's offsets by timestamp."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.load import PartitionLoadSampler

pytestmark = pytest.mark.integration

WINDOW_MS = 10_000


def test_window_rates_count_the_records_stamped_in_the_window(
    routing_settings: Settings,
    data_topic: Callable[[int], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = data_topic(2)
    # In the past, within what the broker accepts as CreateTime; whole seconds keep it readable.
    t = (int(time.time()) - 120) * 1000
    stamped = {
        0: [t - 5_000 + i * 20 for i in range(50)]  # before the window
        + [t + i * 100 for i in range(100)]  # 100 in [t, t + 10 s)
        + [t + WINDOW_MS + i * 100 for i in range(30)],  # after it
        1: [t - 3_000 + i * 100 for i in range(20)] + [t + WINDOW_MS + 1_000 + i * 100 for i in range(5)],
    }
    producer = Producer(client_settings(routing_settings.bootstrap, **{"acks": "all"}))
    for partition, timestamps in stamped.items():
        for ts in timestamps:
            producer.produce(topic, b"v", b"k", partition=partition, timestamp=ts)
    assert producer.flush(30) == 0

    sampler = PartitionLoadSampler(routing_settings.bootstrap, topic)
    window = sampler.window_rates(t, t + WINDOW_MS)
    assert window.unknown == ()
    assert window.rates == {0: 10.0, 1: 0.0}

    # The next window has no record stamped at or after its end: it runs to the end offsets.
    window = sampler.window_rates(t + WINDOW_MS, t + 2 * WINDOW_MS)
    assert window.rates == {0: 3.0, 1: 0.5}

    # A window nothing is stamped in yet, and the planner's entry point, which falls back to
    # end-offset samples only when the broker cannot answer.
    later = (int(time.time()) + 60) * 1000
    with caplog.at_level(logging.WARNING, logger="routing_app.load.offsets"):
        assert sampler.rates_for_window(later, later + WINDOW_MS) == {0: 0.0, 1: 0.0}
        assert sampler.rates_for_window(t, t + WINDOW_MS) == {0: 10.0, 1: 0.0}
    assert not caplog.records
    assert sampler.last_end_offsets() == {0: 180, 1: 25}

    # Unusable edges (here an empty window): end-offset samples, said once at WARNING.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="routing_app.load.offsets"):
        fallback = sampler.rates_for_window(t, t)
        assert sampler.rates_for_window(t, t) == fallback == {0: 0.0, 1: 0.0}
    assert len(caplog.records) == 1, caplog.records
    assert "end-offset samples" in caplog.records[0].getMessage()
