"""Prometheus metrics of RoutingProducers: records by path, the other counters, the route cache.

Usage (see the README's "Metrics" section)::

    producer = RoutingProducer(conf)
    serve_producer_metrics(producer, conf, port=9108)     # http://127.0.0.1:9108/metrics

or, in an application that already exposes prometheus_client's registry::

    producer_metrics().add(producer, conf)                 # registered on REGISTRY once

Everything is read at scrape time from ``producer.counters`` and ``producer.cache.stats()``;
the produce path pays nothing. Every counters key is exported, so keys the producer adds later
appear without a change here: the routing paths as ``routing_producer_records_total{path=...}``,
every other key ``k`` as the counter ``routing_producer_<k>_total`` (``k`` less any ``_total``),
except the levels listed in ``GAUGES``, which are gauges. The cache's lag behind the routes
topic needs the topic's high watermark; given the producer's ``conf``, the collector asks the
broker for it at most every ``watermark_max_age_s`` (one small request, from the scraping
thread).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import Metric

from routing_app.client.consumer_config import consumer_settings_from
from routing_app.client.partitioner import RoutingPath
from routing_app.connection import METRICS_GROUP_PREFIX, reader_group
from routing_app.metrics.families import Families, metric_name

log = logging.getLogger(__name__)

PATHS = frozenset(p.value for p in RoutingPath)
# Counters keys that are levels, not counts: key -> (gauge name after "routing_producer_", help).
GAUGES: dict[str, tuple[str, str]] = {
    "held": (
        "held_records",
        "Records held now: their tenant is moving (its route is draining) and they wait for the move to end",
    ),
    "draining_tenants": ("draining_tenants", "Tenants whose move this producer is waiting on now"),
}
# CacheStats fields that are levels; the others are counts.
_CACHE_GAUGES = {
    "routes": "Routes held by the producer's route cache",
    "position": "Next offset of the routes topic the producer's cache will read",
    "end_offset_at_start": "End of the routes topic when the cache started",
    "ready": "1 once the cache has read the routes topic up to its end at start",
    "undecoded": "Routes the cache keeps as bytes until a lookup needs them",
}
DEFAULT_ROUTES_TOPIC = "routing.routes"


class _Producer(Protocol):
    producer_id: str

    @property
    def counters(self) -> Mapping[str, int]: ...

    @property
    def cache(self) -> Any: ...  # RouteCache | None


class Watermark(Protocol):
    """Where the routes topic ends (its high watermark), or None when unknown."""

    def get(self) -> int | None: ...

    def close(self) -> None: ...


class RoutesWatermark:
    """The routes topic's high watermark (its one partition), fetched at most every
    ``max_age_s``; ``None`` while the broker does not answer."""

    def __init__(
        self, conf: Mapping[str, Any], routes_topic: str, *, max_age_s: float = 5.0, timeout_s: float = 2.0
    ) -> None:
        self._conf = {
            **consumer_settings_from(dict(conf)),
            "group.id": reader_group(METRICS_GROUP_PREFIX),
            "enable.auto.commit": False,
        }
        self.topic = routes_topic
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._closed = False
        self._value: int | None = None
        self._fetched_at = -float("inf")

    def get(self) -> int | None:
        with self._lock:
            if self._closed:
                return None  # its producer is gone: no client of ours outlives it
            if time.monotonic() - self._fetched_at < self._max_age_s:
                return self._value
            self._fetched_at = time.monotonic()
            try:
                if self._consumer is None:
                    self._consumer = Consumer(self._conf)
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, 0), timeout=self._timeout_s
                )
                self._value = int(high)
            except (KafkaException, RuntimeError) as exc:
                log.debug("routes topic %s: no high watermark: %s", self.topic, exc)
                self._value = None
            return self._value

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


@dataclasses.dataclass
class _Entry:
    producer: weakref.ref[Any]
    name: str
    watermark: Watermark | None


class ProducerMetrics:
    """A collector for any number of producers of this process, labelled ``producer``."""

    def __init__(
        self,
        *,
        watermark_max_age_s: float = 5.0,
        watermark_timeout_s: float = 2.0,
        gauges: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self._max_age_s = watermark_max_age_s
        self._timeout_s = watermark_timeout_s
        self._gauges = dict(GAUGES if gauges is None else gauges)

    def add(
        self,
        producer: _Producer,
        conf: Mapping[str, Any] | None = None,
        name: str | None = None,
        *,
        watermark: Watermark | None = None,
    ) -> None:
        """Export ``producer`` (held weakly: a dropped producer leaves the metrics).

        ``conf``: the configuration the producer was made with; without it (or ``watermark``)
        there is no lag, the broker's end of the routes topic being unknown. ``name``: the
        ``producer`` label, by default the producer's ``routing.producer.id``.
        """
        cache = producer.cache
        if (
            watermark is None and cache is not None and conf is not None and "bootstrap.servers" in conf
        ):  # without a cache there is no lag to show
            topic = str(conf.get("routing.routes.topic", DEFAULT_ROUTES_TOPIC))
            watermark = RoutesWatermark(conf, topic, max_age_s=self._max_age_s, timeout_s=self._timeout_s)
        if watermark is not None:
            # Its client lives as long as the producer: closed with the producer's route cache
            # (RoutingProducer.close stops it), or when the producer is collected unclosed.
            # Scrapes alone would close it only if one came after the producer was gone.
            on_stop = getattr(cache, "on_stop", None)
            if on_stop is not None:
                on_stop(watermark.close)
            weakref.finalize(producer, watermark.close)
        entry = _Entry(weakref.ref(producer), name or producer.producer_id, watermark)
        with self._lock:
            self._entries.append(entry)

    def remove(self, producer: _Producer) -> None:
        with self._lock:
            gone = [e for e in self._entries if e.producer() is producer]
            self._entries = [e for e in self._entries if e not in gone]
        for entry in gone:
            if entry.watermark is not None:
                entry.watermark.close()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, []
        for entry in entries:
            if entry.watermark is not None:
                entry.watermark.close()

    def _live(self) -> list[tuple[Any, _Entry]]:
        with self._lock:
            pairs = [(e.producer(), e) for e in self._entries]
            dead = [e for p, e in pairs if p is None]
            self._entries = [e for p, e in pairs if p is not None]
        for entry in dead:
            if entry.watermark is not None:
                entry.watermark.close()
        return [(p, e) for p, e in pairs if p is not None]

    def collect(self) -> Iterator[Metric]:
        families = Families()
        for producer, entry in self._live():
            self._collect_one(families, producer, entry)
        yield from families

    def _collect_one(self, families: Families, producer: _Producer, entry: _Entry) -> None:
        who = {"producer": entry.name}
        counters = producer.counters
        for key in sorted(counters):
            value = float(counters[key])
            if key in PATHS:
                families.add(
                    "counter",
                    "routing_producer_records",
                    "Records sent, by how their partition was chosen (explicit, routed, "
                    "sharded, hashed, unkeyed)",
                    {**who, "path": key},
                    value,
                )
            elif key in self._gauges:
                suffix, doc = self._gauges[key]
                families.add("gauge", metric_name("routing_producer", suffix), doc, who, value)
            else:
                base = key.removesuffix("_total")
                families.add(
                    "counter",
                    metric_name("routing_producer", base),
                    f"Producer: {base.replace('_', ' ')}",
                    who,
                    value,
                )
        cache = producer.cache
        if cache is None:
            return
        stats = dataclasses.asdict(cache.stats())
        for field, raw in stats.items():
            value = float(raw)
            if field in _CACHE_GAUGES:
                families.add(
                    "gauge",
                    metric_name("routing_producer_route_cache", field),
                    _CACHE_GAUGES[field],
                    who,
                    value,
                )
            else:
                families.add(
                    "counter",
                    metric_name("routing_producer_route_cache", field),
                    f"Route cache: {field.replace('_', ' ')} records",
                    who,
                    value,
                )
        high = entry.watermark.get() if entry.watermark is not None else None
        if high is not None:
            families.add(
                "gauge",
                "routing_producer_routes_end_offset",
                "High watermark of the routes topic (its one partition)",
                who,
                float(high),
            )
            families.add(
                "gauge",
                "routing_producer_route_cache_lag_records",
                "Records of the routes topic the producer's cache has not read yet "
                "(high watermark minus cache position)",
                who,
                float(max(0, high - int(stats["position"]))),
            )


# Weakly: a registry dropped by its application takes its ProducerMetrics (and their clients)
# with it, and a new registry never inherits a dead one's by reusing its id().
_defaults: weakref.WeakKeyDictionary[CollectorRegistry, ProducerMetrics] = weakref.WeakKeyDictionary()
_defaults_lock = threading.Lock()


def producer_metrics(registry: CollectorRegistry = REGISTRY) -> ProducerMetrics:
    """The process's ProducerMetrics for ``registry``, registered on it the first time."""
    with _defaults_lock:
        metrics = _defaults.get(registry)
        if metrics is None:
            metrics = _defaults[registry] = ProducerMetrics()
            registry.register(metrics)
        return metrics


def serve_producer_metrics(
    producer: _Producer,
    conf: Mapping[str, Any] | None = None,
    *,
    port: int = 9108,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
) -> tuple[Any, threading.Thread]:
    """Exports ``producer`` on ``registry`` and serves it at ``http://addr:port/metrics``.

    Returns prometheus_client's (server, thread); ``server.shutdown()`` stops it. To export more
    producers on the same server, call ``producer_metrics(registry).add(other, conf)``.
    """
    producer_metrics(registry).add(producer, conf)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread
