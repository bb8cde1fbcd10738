"""A RoutingProducer's parts: built from its configuration, wired to one another, started and
stopped together.

Apart from the front door (client.producer) because the wiring is long and its order matters
(the hello goes out before any send; at close, every part lets go of librdkafka or its threads
outlive the producer), yet says nothing about what the producer does with a record. The glue
between parts lives here too: a route change reaches the memo and the drains, a usage interval
harvests the memo before the reporter sends.
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import KafkaException, Producer

from routing_app.client.background import Poller
from routing_app.client.cache import RouteCache
from routing_app.client.consumer_config import consumer_settings_from
from routing_app.client.drains import DrainCoordinator
from routing_app.client.errors import ConfigurationError
from routing_app.client.ledger import SendLedger
from routing_app.client.memo import Memo
from routing_app.client.metadata import PartitionCounts
from routing_app.client.options import split_config
from routing_app.client.partitioner import RoutingPath
from routing_app.client.readiness import RoutesGate
from routing_app.client.records import Serializer
from routing_app.client.reporting import UsageReporter
from routing_app.client.router import Router
from routing_app.client.schemas import resolve_schemas
from routing_app.client.sending import GeneralSender
from routing_app.codec import AvroCodec, registry_client
from routing_app.connection import with_client_log
from routing_app.routes import Route, RouteCodec
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, drain_ack_subject
from routing_app.routes.model import HASH_BASE_TENANT
from routing_app.usage import USAGE_SCHEMA, UsageAccumulator


class ProducerParts:
    """Every part of one producer, in the order they are built (each needs those before it)."""

    def __init__(
        self, conf: dict[str, Any], key_serializer: Serializer | None, value_serializer: Serializer | None
    ) -> None:
        rdkafka, options, registry_conf, conf_key_ser, conf_value_ser = split_config(conf)
        self.options = options
        self.producer_id = producer_id = options.producer_id
        key_serializer = key_serializer or conf_key_ser
        value_serializer = value_serializer or conf_value_ser
        # Plain records are memoized only while this holds (see RoutingProducer.produce).
        self.plain = key_serializer is None and value_serializer is None
        self._registry_url = registry_url = registry_conf["url"] if registry_conf else None
        if registry_url is None and (options.cache_enabled or options.usage_enabled):
            raise ConfigurationError(
                "'schema.registry.url' is required to read routes and write usage reports "
                "(or set routing.cache.enabled=false and routing.usage.enabled=false)"
            )
        usage = UsageAccumulator(producer_id) if options.usage_enabled and registry_conf else None
        self.ledger = ledger = SendLedger(usage)
        try:
            # Failures are counted by a producer-wide delivery callback: passing one with every
            # record takes a keyword argument, which doubles the cost of librdkafka's produce().
            # Connection trouble goes to logging, once per broker (routing_app.connection).
            self.producer = producer = Producer(
                with_client_log({**rdkafka, "on_delivery": ledger.on_delivery_report})
            )
        except KafkaException as exc:
            raise ConfigurationError(f"librdkafka refused the configuration: {exc}") from exc
        bootstrap: str = rdkafka["bootstrap.servers"]
        registry = registry_client(registry_conf) if registry_conf else None
        route_codec = (
            RouteCodec(registry, options.routes_topic)
            if options.cache_enabled and registry is not None
            else None
        )
        self.cache = cache = _route_cache(rdkafka, route_codec, options.routes_topic, producer_id)
        self.routes = RoutesGate(
            cache, route_codec, options.routes_topic, options.max_block_ms, bootstrap, registry_url
        )
        self.memo = memo = Memo(ledger, cache)
        self.metadata = metadata = PartitionCounts(
            producer,
            bootstrap,
            options.max_block_ms / 1000.0,
            options.metadata_refresh_ms / 1000.0,
            memo.forget_topics,
        )
        acks_codec = (
            None
            if registry is None
            else AvroCodec(
                registry,
                DRAIN_ACK_SCHEMA,
                options.answers_topic,
                subject=drain_ack_subject(options.answers_topic),
            )
        )
        self.drains = drains = DrainCoordinator(
            producer_id,
            producer,
            options.answers_topic,
            options.hold_max_records,
            ledger,
            memo,
            cache,
            acks_codec,
            registry_url,
            self._send_released,
        )
        # Before any send: the writer learns of this producer before it reads the routes, so a
        # drain never needs a grace period for producers it does not know (client/hello.py).
        self.routes.greet_first(drains.say_hello, rdkafka, producer_id, options.answers_topic)
        self.router = Router(metadata, cache, drains.holds)
        usage_codec = (
            None
            if usage is None or registry is None
            else AvroCodec(registry, USAGE_SCHEMA, options.usage_topic)
        )
        self.usage = (
            None
            if usage is None or usage_codec is None
            else UsageReporter(
                producer, usage, usage_codec, options.usage_topic, options.usage_top_k, metadata, registry_url
            )
        )
        self._stop = threading.Event()
        self.poller = Poller(
            f"{producer_id}-poll",
            producer,
            drains,
            metadata,
            self.report_usage,
            options.usage_interval_ms / 1000.0,
            self._stop,
        )
        self.sender = GeneralSender(
            producer,
            ledger,
            memo,
            drains.holds,
            self.router,
            self.routes,
            self.poller,
            options,
            bootstrap,
            key_serializer,
            value_serializer,
        )
        # Registered (True) or looked up (False) off the poll thread, by start.
        self._schemas = [
            (codec, register)
            for codec, register in (
                (acks_codec, True),
                (usage_codec, True),
                (route_codec.values if route_codec else None, False),
            )
            if codec is not None
        ]

    def start(self) -> None:
        """The route cache, the poll thread and the schema thread."""
        if self.cache is not None:
            self.cache.add_listener(self._route_changed)
            self.cache.start()
        self.poller.start()
        threading.Thread(
            target=resolve_schemas,
            name=f"{self.producer_id}-schemas",
            daemon=True,
            args=(self._schemas, self._stop, self.producer_id, self._registry_url),
        ).start()

    def stop(self) -> None:
        """After the last flush: says goodbye, stops the threads and lets go of librdkafka.

        librdkafka holds our callbacks and we hold it (the route cache's listener closes the
        cycle): without letting go of it everywhere its threads would live on until a full
        garbage collection."""
        self.drains.say_goodbye()
        self.poller.stop()
        if self.cache is not None:
            self.cache.stop()
        self.drains.detach()
        self.metadata.detach()
        if self.usage is not None:
            self.usage.detach()
        self.sender.detach()
        del self.producer

    def report_usage(self) -> None:
        """Every usage interval (poll thread), and at each flush."""
        self.memo.harvest()
        if self.usage is not None:
            self.usage.send()

    def counters(self) -> dict[str, int]:
        """A snapshot: records by routing path, delivery failures, usage reports sent/deferred,
        and the drains' holds and acks."""
        paths = self.memo.path_totals()
        counters = {path.value: paths[path.value] for path in RoutingPath}
        counters["delivery_failed"] = self.ledger.delivery_failed
        counters["route_out_of_range"] = self.router.out_of_range
        counters["usage_reports"] = 0 if self.usage is None else self.usage.reports
        counters["usage_deferred"] = 0 if self.usage is None else self.usage.deferred
        return {**counters, **self.drains.counters()}

    def _route_changed(self, topic: str, tenant: str, route: Route | None) -> None:
        """Cache listener (the cache's thread): holds or releases the tenant, forgets its cell."""
        self.memo.changed()
        self.drains.route_changed(topic, tenant, route)
        if tenant == HASH_BASE_TENANT:
            # The topic's hash base (topics expand): every hashed key's choice may change.
            self.memo.forget_topics([topic])
        else:
            self.memo.forget(topic, tenant)

    def _send_released(self, topic: str, value: Any, key: Any, options: dict[str, Any]) -> None:
        # The drains are built before the sender, which needs their holds.
        self.sender.released(topic, value, key, options)


def _route_cache(
    rdkafka: dict[str, Any], codec: RouteCodec | None, routes_topic: str, producer_id: str
) -> RouteCache | None:
    if codec is None:
        return None
    cache_conf = consumer_settings_from(rdkafka)
    if "logger" in rdkafka:
        cache_conf["logger"] = rdkafka["logger"]
    return RouteCache(with_client_log(cache_conf), codec, routes_topic, name=f"{producer_id}-routes")
