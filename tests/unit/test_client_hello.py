"""The producer's hello (client.hello) and the routes gate that waits for it: a producer's
routes count as read only once its hello is acknowledged and its cache has passed the routes
topic's end offset fetched after that. No Kafka: the cache and the broker are stand-ins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError

from routing_app.client.cache import CacheStats
from routing_app.client.errors import RoutesNotReady
from routing_app.client.hello import Greeting
from routing_app.client.readiness import RoutesGate


class Cache:
    """A route cache that read ``position`` records (ready: it passed its end at start)."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.ready = True
        self.stopped: list[Callable[[], None]] = []

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready

    def stats(self) -> CacheStats:
        return CacheStats(
            routes=0,
            position=self.position,
            end_offset_at_start=self.position,
            ready=self.ready,
            undecodable=0,
            stale_ignored=0,
            applied=0,
        )

    def on_stop(self, callback: Callable[[], None]) -> None:
        self.stopped.append(callback)


class Broker:
    """Acknowledges hellos (or fails the first ``failures``), and says where the routes end."""

    def __init__(self, routes_end: int, failures: int = 0) -> None:
        self.routes_end = routes_end
        self.failures = failures
        self.hellos = 0
        self.answers_listed = True
        self.release = threading.Event()
        self.release.set()

    def say_hello(self, delivered: Callable[[KafkaError | None], None]) -> bool:
        self.hellos += 1
        failed = self.hellos <= self.failures

        def answer() -> None:
            self.release.wait(10)
            delivered(KafkaError(KafkaError._MSG_TIMED_OUT) if failed else None)

        threading.Thread(target=answer, daemon=True).start()
        return True


@pytest.fixture(autouse=True)
def _broker_offsets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Broker]]:
    brokers: list[Broker] = []
    monkeypatch.setattr(Greeting, "_routes_end", lambda self: brokers[-1].routes_end)
    monkeypatch.setattr(Greeting, "_answers_topic_listed", lambda self: brokers[-1].answers_listed)
    monkeypatch.setattr("routing_app.client.hello._RETRY_S", (0.01,))
    yield brokers


def _gate(cache: Cache, broker: Broker, brokers: list[Broker]) -> RoutesGate:
    brokers.append(broker)
    gate = RoutesGate(cache, None, "routes", 300, "localhost:9", None)  # type: ignore[arg-type]
    gate.greet_first(broker.say_hello, {"bootstrap.servers": "localhost:9"}, "p1", "answers")
    return gate


def test_routes_written_before_the_hello_was_acknowledged_are_read_first(
    _broker_offsets: list[Broker],
) -> None:
    # The cache has read all 5 routes there were when it started; a draining route (the 6th)
    # was committed before the hello's acknowledgement: the producer must read it first.
    cache = Cache(position=5)
    gate = _gate(cache, Broker(routes_end=6), _broker_offsets)
    with pytest.raises(TimeoutError, match="of the 6 records 'routes' had after its hello"):
        gate.wait_ready(0.3)
    with pytest.raises(RoutesNotReady):
        gate.wait(deadline=0.0)
    assert not gate.ready
    cache.position = 6
    gate.wait_ready(5)
    assert gate.ready


def test_nothing_is_ready_before_the_hello_is_acknowledged(_broker_offsets: list[Broker]) -> None:
    broker = Broker(routes_end=0)
    broker.release.clear()  # the broker has not answered yet
    gate = _gate(Cache(position=0), broker, _broker_offsets)
    with pytest.raises(TimeoutError, match="hello to the route writer"):
        gate.wait_ready(0.3)
    broker.release.set()
    gate.wait_ready(5)
    assert gate.ready


def test_a_hello_the_broker_refused_is_said_again(_broker_offsets: list[Broker]) -> None:
    broker = Broker(routes_end=0, failures=2)
    gate = _gate(Cache(position=0), broker, _broker_offsets)
    gate.wait_ready(5)
    assert broker.hellos == 3


def test_without_a_route_cache_there_is_nobody_to_greet(_broker_offsets: list[Broker]) -> None:
    broker = Broker(routes_end=0)
    _broker_offsets.append(broker)
    gate = RoutesGate(None, None, "routes", 300, "localhost:9", None)
    gate.greet_first(broker.say_hello, {"bootstrap.servers": "localhost:9"}, "p1", "answers")
    assert gate.ready and broker.hellos == 0


def test_the_hello_stops_with_the_cache(_broker_offsets: list[Broker]) -> None:
    broker = Broker(routes_end=0)
    broker.release.clear()
    cache = Cache(position=0)
    gate = _gate(cache, broker, _broker_offsets)
    assert len(cache.stopped) == 1
    cache.stopped[0]()  # the producer closes before the broker answered
    broker.release.set()
    with pytest.raises(TimeoutError):
        gate.wait_ready(0.3)


def test_without_an_answers_topic_the_routes_count_as_read_at_once(_broker_offsets: list[Broker]) -> None:
    # No route writer has run yet: no move can be under way. Before, the hello itself found
    # out, after librdkafka's topic.metadata.propagation.max.ms (30 s).
    broker = Broker(routes_end=0)
    broker.answers_listed = False
    gate = _gate(Cache(position=0), broker, _broker_offsets)
    started = time.monotonic()
    gate.wait_ready(5)
    assert gate.ready and broker.hellos == 0 and time.monotonic() - started < 1.0
