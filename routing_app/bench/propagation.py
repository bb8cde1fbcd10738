"""``bench propagation``: how soon a route change reaches every RoutingProducer's cache.

Several RoutingProducers (each with its own RouteCache) tail one routes topic. A writer changes
one route at a time (a new epoch); the clock starts right before its produce() and stops, for
each cache, in that cache's listener; a change has propagated when the last cache has it. All
in one process, so one perf_counter serves as the clock. A plain confluent-kafka Consumer
tailing the same topic with poll() is the baseline: the broker's and librdkafka's share of the
latency. Changes are spaced by a random gap so they do not fall in step with the caches'
fetch loops.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from routing_app.bench.common import (
    Reporter,
    Scratch,
    SilentReporter,
    percentile,
    rounded,
    tenant_id,
    write_routes,
)
from routing_app.client import RoutingProducer
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec


class _Arrivals:
    """Collects, for the change in flight, when each observer saw it."""

    def __init__(self, observers: int) -> None:
        self._observers = observers
        self._lock = threading.Lock()
        self._expected: tuple[str, int] | None = None
        self._seen: dict[str, float] = {}
        self._all = threading.Event()

    def expect(self, tenant: str, epoch: int) -> None:
        with self._lock:
            self._expected = (tenant, epoch)
            self._seen = {}
            self._all.clear()

    def saw(self, observer: str, tenant: str, epoch: int) -> None:
        now = time.perf_counter()
        with self._lock:
            if self._expected != (tenant, epoch) or observer in self._seen:
                return
            self._seen[observer] = now
            if len(self._seen) == self._observers:
                self._all.set()

    def wait(self, timeout: float) -> dict[str, float]:
        self._all.wait(timeout)
        with self._lock:
            self._expected = None
            return dict(self._seen)


class _TailingConsumer(threading.Thread):
    """The baseline observer: an idiomatic poll() loop, decoding only the key."""

    def __init__(self, settings: Settings, topic: str, arrivals: _Arrivals, codec: RouteCodec) -> None:
        super().__init__(name="bench-baseline-consumer", daemon=True)
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": f"routing-app-bench-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,  # as the route cache
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        self._arrivals = arrivals
        self._codec = codec
        self._stop_event = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                message = self._consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                _, tenant, route = self._codec.decode(message.key(), message.value())
                if route is not None:
                    self._arrivals.saw("baseline", tenant, route.epoch)
        except BaseException as exc:
            self.failure = exc
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10.0)


@dataclass
class _Latencies:
    """Seconds from a change's produce() to its arrival, per observer kind."""

    producers: int
    last_cache: list[float] = field(default_factory=list)  # the last cache, per change
    per_cache: list[float] = field(default_factory=list)  # every cache, every change
    baseline: list[float] = field(default_factory=list)

    def add(self, route: Route, written: float, seen: dict[str, float], change_timeout_s: float) -> None:
        """``seen``: when each observer saw the change; every cache must have."""
        producers = self.producers
        caches = [seen[f"cache-{i}"] - written for i in range(producers) if f"cache-{i}" in seen]
        if len(caches) < producers:
            raise RuntimeError(
                f"change {route.tenant} epoch {route.epoch}: {producers - len(caches)} of "
                f"{producers} caches did not see it within {change_timeout_s} s"
            )
        self.last_cache.append(max(caches))
        self.per_cache.extend(caches)
        if "baseline" in seen:
            self.baseline.append(seen["baseline"] - written)

    def figures(self, changes: int) -> dict[str, Any]:
        def ms(values: list[float], pct: float) -> float:
            return rounded(percentile(values, pct) * 1000.0)

        result: dict[str, Any] = {
            "p50_ms": ms(self.last_cache, 50),
            "p99_ms": ms(self.last_cache, 99),
            "max_ms": rounded(max(self.last_cache) * 1000.0),
            "changes": changes,
            "producers": self.producers,
            "per_cache_p50_ms": ms(self.per_cache, 50),
            "per_cache_p99_ms": ms(self.per_cache, 99),
        }
        if self.baseline:
            result.update(
                baseline_p50_ms=ms(self.baseline, 50),
                baseline_p99_ms=ms(self.baseline, 99),
                baseline_max_ms=rounded(max(self.baseline) * 1000.0),
                baseline_changes=len(self.baseline),
            )
        return result


def _route_producer(settings: Settings, routes_topic: str, index: int) -> RoutingProducer:
    return RoutingProducer(
        {
            "bootstrap.servers": settings.bootstrap,
            "schema.registry.url": settings.registry_url,
            "routing.routes.topic": routes_topic,
            "routing.usage.enabled": False,  # nothing is produced: nothing to report
            "routing.producer.id": f"bench-propagation-{index}",
        }
    )


def _report_arrivals(client: RoutingProducer, observer: str, arrivals: _Arrivals) -> None:
    """Each route the client's cache receives counts as seen by ``observer``."""
    assert client.cache is not None

    def listener(_topic: str, tenant: str, route: Route | None) -> None:
        if route is not None:
            arrivals.saw(observer, tenant, route.epoch)

    client.cache.add_listener(listener)


def _time_change(
    writer: Producer,
    codec: RouteCodec,
    routes_topic: str,
    route: Route,
    arrivals: _Arrivals,
    change_timeout_s: float,
) -> tuple[float, dict[str, float]]:
    """Writes one route change: (when its produce() was called, when each observer saw it)."""
    key, value = RouteCodec.encode_key(route.topic, route.tenant), codec.encode(route)
    arrivals.expect(route.tenant, route.epoch)
    written = time.perf_counter()
    writer.produce(routes_topic, value, key, partition=0)
    writer.flush(30)
    return written, arrivals.wait(change_timeout_s)


def run_propagation(
    settings: Settings,
    *,
    producers: int = 4,
    changes: int = 200,
    tenants: int = 1_000,
    max_gap_ms: float = 200.0,
    change_timeout_s: float = 10.0,
    seed: int | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    if producers < 1 or changes < 1 or tenants < 1:
        raise ValueError("producers, changes and tenants must be positive")
    say = reporter or SilentReporter()
    rng = random.Random(seed)
    latencies = _Latencies(producers)
    with Scratch(settings, say) as scratch:
        routes_topic = scratch.routes_topic()
        # Named by the routes, never written; it exists, as a routed topic does: a route for a
        # topic the broker does not list makes a cache ask for metadata (at most once a
        # second), which would be measured too.
        data_topic = scratch.topic("data", 12)
        now_ms = int(time.time() * 1000)
        names = [tenant_id(i) for i in range(tenants)]
        write_routes(
            settings,
            routes_topic,
            (
                Route(data_topic, name, (i % 12,), 1, updated_at_ms=now_ms, decided_by="bench")
                for i, name in enumerate(names)
            ),
            tenants,
            say,
            f"writing {tenants:,} routes",
        )

        codec = RouteCodec(registry_client(settings.registry_config()), routes_topic)
        arrivals = _Arrivals(producers + 1)
        clients: list[RoutingProducer] = []
        tail: _TailingConsumer | None = None
        writer = Producer(client_settings(settings.kafka, acks="all", **{"linger.ms": 0}))
        try:
            for index in range(producers):
                clients.append(_route_producer(settings, routes_topic, index))
                _report_arrivals(clients[-1], f"cache-{index}", arrivals)
            for client in clients:
                client.wait_ready(120)
            tail = _TailingConsumer(settings, routes_topic, arrivals, codec)
            tail.start()
            codec.encode(Route(data_topic, names[0], (0,), 1))  # register outside the clock
            time.sleep(1.0)  # let the tailing consumer's assignment settle at the end offset
            say.note(f"{producers} routing producers ready; {changes} changes to {routes_topic}")
            epochs = dict.fromkeys(names, 1)
            with say.progress("route changes", changes) as advance:
                for _ in range(changes):
                    tenant = rng.choice(names)
                    epochs[tenant] += 1
                    route = Route(
                        data_topic,
                        tenant,
                        (rng.randrange(12),),
                        epochs[tenant],
                        updated_at_ms=int(time.time() * 1000),
                        decided_by="bench",
                    )
                    written, seen = _time_change(
                        writer, codec, routes_topic, route, arrivals, change_timeout_s
                    )
                    latencies.add(route, written, seen, change_timeout_s)
                    advance(1)
                    time.sleep(rng.uniform(0, max_gap_ms / 1000.0))
            if tail.failure is not None:
                raise RuntimeError(f"baseline consumer failed: {tail.failure}")
        finally:
            if tail is not None:
                tail.stop()
            for client in clients:
                client.close()
            writer.flush(10)
    return latencies.figures(changes)
