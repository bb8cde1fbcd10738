"""RoutingProducer: a confluent-kafka producer that places each record by the routing table.

The front door. Its parts, in the order a record meets them:
- options: the configuration, split into librdkafka's settings and the ``routing.*`` options;
- memo: the per-key cells that send a plain record with one lookup (the hot path, ``produce``);
- router: partition choice by the route table, over metadata's partition counts;
- ledger: what was sent and reported per partition, under the send lock every send takes;
- drains: holds, acks and releases while a strict tenant's route drains;
- reporting and schemas: usage reports, and the schemas they and the acks are encoded with.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Unpack

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from routing_app.client.background import Poller
from routing_app.client.cache import RouteCache, consumer_settings_from
from routing_app.client.drains import DrainCoordinator
from routing_app.client.errors import (
    ConfigurationError,
    HoldTimeout,
    PartitionOutOfRange,
    ProduceTimeout,
    RoutesNotReady,
    RoutingProducerError,
    UnknownTopicError,
)
from routing_app.client.holds import TenantHold
from routing_app.client.ledger import SendLedger
from routing_app.client.memo import Memo
from routing_app.client.metadata import PartitionCounts
from routing_app.client.options import split_config
from routing_app.client.partitioner import RoutingPath
from routing_app.client.readiness import RoutesGate
from routing_app.client.records import (
    DeliveryCallback,
    ProduceOptions,
    RecordMetadata,
    Serializer,
    adapt,
    tenant_name,
)
from routing_app.client.reporting import UsageReporter
from routing_app.client.router import Router
from routing_app.client.schemas import resolve_schemas
from routing_app.codec import AvroCodec, registry_client
from routing_app.connection import with_client_log
from routing_app.routes import Route, RouteCodec
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, drain_ack_subject
from routing_app.usage import USAGE_SCHEMA, UsageAccumulator

# Importable from here as before; routing_app.client is their public home.
__all__ = [
    "ConfigurationError",
    "HoldTimeout",
    "PartitionOutOfRange",
    "ProduceOptions",
    "ProduceTimeout",
    "RecordMetadata",
    "RoutesNotReady",
    "RoutingProducer",
    "RoutingProducerError",
    "UnknownTopicError",
]

log = logging.getLogger(__name__)


class RoutingProducer:
    """Routes every record by the routing table; see the README for the three ways to send.

    Partition choice, in order: an explicit ``partition=``; the tenant's route (one partition,
    or a shard list split by the record key); ``murmur2(tenant) % n`` like the Java client; and
    with neither key nor tenant, librdkafka's sticky partitioner.
    """

    def __init__(
        self,
        conf: dict[str, Any],
        *,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
    ) -> None:
        rdkafka, options, registry_conf, conf_key_ser, conf_value_ser = split_config(conf)
        self._options = options
        self.producer_id = options.producer_id
        self._key_serializer = key_serializer or conf_key_ser
        self._value_serializer = value_serializer or conf_value_ser
        registry_url = registry_conf["url"] if registry_conf else None
        if registry_url is None and (options.cache_enabled or options.usage_enabled):
            raise ConfigurationError(
                "'schema.registry.url' is required to read routes and write usage reports "
                "(or set routing.cache.enabled=false and routing.usage.enabled=false)"
            )
        usage = UsageAccumulator(self.producer_id) if options.usage_enabled and registry_conf else None
        self._ledger = ledger = SendLedger(usage)
        try:
            # Failures are counted by a producer-wide delivery callback: passing one with every
            # record takes a keyword argument, which doubles the cost of librdkafka's produce().
            # Connection trouble goes to logging, once per broker (routing_app.connection).
            self._producer = producer = Producer(
                with_client_log({**rdkafka, "on_delivery": ledger.on_delivery_report})
            )
        except KafkaException as exc:
            raise ConfigurationError(f"librdkafka refused the configuration: {exc}") from exc
        self._bootstrap: str = rdkafka["bootstrap.servers"]
        self._max_block_s = options.max_block_ms / 1000.0
        registry = registry_client(registry_conf) if registry_conf else None
        route_codec = (
            RouteCodec(registry, options.routes_topic)
            if options.cache_enabled and registry is not None
            else None
        )
        self._cache = cache = _route_cache(rdkafka, route_codec, options.routes_topic, self.producer_id)
        self._routes = RoutesGate(
            cache, route_codec, options.routes_topic, options.max_block_ms, self._bootstrap, registry_url
        )
        self._memo = Memo(ledger, cache)
        self._metadata = PartitionCounts(
            producer,
            self._bootstrap,
            self._max_block_s,
            options.metadata_refresh_ms / 1000.0,
            self._memo.forget_topics,
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
        self._drains = DrainCoordinator(
            self.producer_id,
            producer,
            options.answers_topic,
            options.hold_max_records,
            ledger,
            self._memo,
            cache,
            acks_codec,
            registry_url,
            self._send_released,
        )
        # Before any send: the writer learns of this producer before it reads the routes, so a
        # drain never needs a grace period for producers it does not know (client/hello.py).
        self._routes.greet_first(self._drains.say_hello, rdkafka, self.producer_id)
        self._router = Router(self._metadata, cache, self._drains.holds)
        usage_codec = (
            None
            if usage is None or registry is None
            else AvroCodec(registry, USAGE_SCHEMA, options.usage_topic)
        )
        self._usage = (
            None
            if usage is None or usage_codec is None
            else UsageReporter(
                producer,
                usage,
                usage_codec,
                options.usage_topic,
                options.usage_top_k,
                self._metadata,
                registry_url,
            )
        )
        # The hot path's references, held here to save an attribute lookup per record.
        self._produce = producer.produce
        self._cells = self._memo.cells
        self._holds = self._drains.holds
        self._lock_acquire, self._lock_release = ledger.lock.acquire, ledger.lock.release
        # Plain records are memoized only while this holds (see produce).
        self._plain = self._key_serializer is None and self._value_serializer is None
        self._closed = False
        stop = threading.Event()
        self._poller = Poller(
            f"{self.producer_id}-poll",
            producer,
            self._drains,
            self._metadata,
            self._report_usage,
            options.usage_interval_ms / 1000.0,
            stop,
        )
        if cache is not None:
            cache.add_listener(self._route_changed)
            cache.start()
        self._poller.start()
        codecs = [
            (acks_codec, True),
            (usage_codec, True),
            (route_codec.values if route_codec else None, False),
        ]
        threading.Thread(
            target=resolve_schemas,
            name=f"{self.producer_id}-schemas",
            daemon=True,
            args=(
                [(c, register) for c, register in codecs if c is not None],
                stop,
                self.producer_id,
                registry_url,
            ),
        ).start()

    # -- lifecycle -----------------------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> None:
        """Blocks until the route cache has read every route that existed when it started."""
        self._routes.wait_ready(timeout)

    def flush(self, timeout: float | None = None) -> int:
        """Waits for every record sent so far to be acknowledged; returns how many are left."""
        if self._closed and not hasattr(self, "_producer"):
            return 0
        self._report_usage()
        # Held records are sent only when their tenant's move ends: wait for that too.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drains.wait_released(deadline)
        held = self._drains.held_records()
        left = -1 if deadline is None else max(deadline - time.monotonic(), 0)
        with self._poller.serving():
            return int(self._producer.flush(left)) + held

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        # No more fast path: with no cells and not plain, sends take the general path,
        # which raises.
        self._plain = False
        self._cells = {}
        remaining = self.flush(timeout)
        self._drains.say_goodbye()
        self._poller.stop()
        if self._cache is not None:
            self._cache.stop()
        # librdkafka holds our callbacks and we hold it (the route cache's listener closes the
        # cycle): without letting go of it everywhere its threads would live on until a full
        # garbage collection. ``_produce`` is its bound method, so it must go too; a send racing
        # this close gets a clear error instead.
        self._drains.detach()
        self._metadata.detach()
        if self._usage is not None:
            self._usage.detach()
        del self._producer

        def closed(*_args: Any, **_kwargs: Any) -> None:
            raise RoutingProducerError("producer is closed")

        self._produce = closed
        if remaining:
            log.error(
                "%s closed with %d records not acknowledged (held records of tenants still "
                "moving are among them)",
                self.producer_id,
                remaining,
            )

    def __enter__(self) -> RoutingProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: records by routing path, delivery failures, usage reports sent/deferred."""
        paths = self._memo.path_totals()
        counters = {path.value: paths[path.value] for path in RoutingPath}
        counters["delivery_failed"] = self._ledger.delivery_failed
        counters["route_out_of_range"] = self._router.out_of_range
        counters["usage_reports"] = 0 if self._usage is None else self._usage.reports
        counters["usage_deferred"] = 0 if self._usage is None else self._usage.deferred
        return {**counters, **self._drains.counters()}

    # -- routing -------------------------------------------------------------------------------
    @property
    def cache(self) -> RouteCache | None:
        return self._cache

    def route_for(self, topic: str, tenant: str | bytes) -> Route | None:
        if self._cache is None:
            return None
        name = tenant.decode("utf-8", "surrogateescape") if isinstance(tenant, bytes) else tenant
        return self._cache.get(topic, name)

    def partition_count(self, topic: str) -> int:
        return self._metadata.get(topic)

    def partition_for(
        self,
        topic: str,
        key: bytes | None,
        tenant: str | bytes | None = None,
        partition: int | None = None,
    ) -> tuple[int | None, RoutingPath]:
        """Where a record would go, without sending it."""
        return self._router.partition_for(topic, key, tenant, partition)

    # -- sending -------------------------------------------------------------------------------
    def produce(
        self, topic: str, value: Any = None, key: Any = None, **options: Unpack[ProduceOptions]
    ) -> None:
        """Fire-and-forget (or with ``on_delivery(err, RecordMetadata | None)``).

        ``options``: ``tenant``, ``partition``, ``headers``, ``timestamp``, ``on_delivery``
        (see ProduceOptions). They are keywords only, gathered rather than declared one by one
        because filling five declared defaults costs more per call than checking one dict.
        """
        if not options:
            try:
                # A plain record (bytes or no key, nothing else) whose key has a memo cell:
                # the cell says where it goes (see client.memo). Only plain records are ever
                # memoized, so no cell means the producer is not plain, or this key is new.
                cell = self._cells[topic][key]
            except (KeyError, TypeError):  # TypeError: unhashable, the general path says so
                if self._plain and self._produce_plain(topic, value, key):
                    return
            else:
                self._lock_acquire()
                try:
                    # Sent under the send lock: a drain's barrier (see client.drains) then
                    # counts exactly the records librdkafka has before the hold, in order.
                    if cell.live:
                        # Positional: keyword arguments double the cost of this call.
                        self._produce(topic, value, key, cell.partition)
                        cell.records += 1
                        cell.nbytes += 0 if value is None else len(value)
                        return
                except BufferError:
                    pass  # the general path waits for room
                finally:
                    self._lock_release()
        self._produce_general(topic, value, key, **options)

    def _produce_plain(self, topic: str, value: Any, key: Any) -> bool:
        """A plain record without a live cell: chooses as partition_for does, memoizes the
        choice and sends. False, having done nothing, for what only _produce_general does (see
        Router.plain_choice), or before the partition count or the routes are known."""
        memo = self._memo
        epoch = memo.epoch  # before reading anything the choice depends on
        count = self._metadata.counts.get(topic)
        if count is None or (key is not None and not self._routes.ready):
            return False
        choice = self._router.plain_choice(topic, key, count)
        if choice is None:
            return False
        chosen, path = choice
        with self._ledger.lock:
            if memo.epoch != epoch:
                return False  # a route changed meanwhile: decide again on the general path
            try:
                self._produce(topic, value, key, chosen)
            except BufferError:
                return False  # the general path waits for room
            memo.record(topic, key, chosen, path, 0 if value is None else len(value))
        return True

    def _produce_general(
        self,
        topic: str,
        value: Any,
        key: Any,
        *,
        tenant: str | bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        if self._closed:
            raise RoutingProducerError("producer is closed")
        if self._key_serializer is not None and key is not None:
            key = self._key_serializer(key, SerializationContext(topic, MessageField.KEY, headers))
        if self._value_serializer is not None:
            value = self._value_serializer(value, SerializationContext(topic, MessageField.VALUE, headers))
        name = tenant_name(tenant, key)
        deadline = time.monotonic() + self._max_block_s
        if not self._routes.ready and name is not None and partition is None:
            self._routes.wait(deadline)
        self._send(
            topic,
            value,
            key,
            tenant,
            partition,
            headers,
            timestamp,
            on_delivery,
            deadline,
            name,
            may_hold=partition is None,
        )

    def _send_released(self, topic: str, value: Any, key: Any, options: dict[str, Any]) -> None:
        """A held record, by its tenant's settled route (cache thread, see client.drains)."""
        tenant = options["tenant"]
        self._send(
            topic,
            value,
            key,
            tenant,
            None,
            options["headers"],
            options["timestamp"],
            options["on_delivery"],
            time.monotonic() + self._max_block_s,
            tenant_name(tenant, key),
            may_hold=False,
        )

    def _send(
        self,
        topic: str,
        value: Any,
        key: Any,
        tenant: str | bytes | None,
        partition: int | None,
        headers: Any,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
        deadline: float,
        name: str | None,
        *,
        may_hold: bool,
    ) -> None:
        """Chooses, then sends under the send lock, or queues in the tenant's hold while its
        route drains (``may_hold``: not a record the hold is releasing)."""
        # None: the producer-wide callback, which counts failures.
        callback = None if on_delivery is None else adapt(on_delivery, self._ledger.on_delivery_report)
        kwargs: dict[str, Any] = {}
        if headers is not None:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        memo, holds = self._memo, self._holds
        while True:
            epoch = memo.epoch
            chosen, path = self._router.partition_for(topic, key, tenant, partition)
            with self._ledger.lock:
                if memo.epoch != epoch:
                    continue  # a route changed while we chose: choose again
                hold = holds.get((topic, name)) if may_hold and holds and name is not None else None
                if hold is not None:
                    if hold.offer(
                        value,
                        key,
                        {
                            "tenant": tenant,
                            "headers": headers,
                            "timestamp": timestamp,
                            "on_delivery": on_delivery,
                        },
                    ):
                        return
                else:
                    try:
                        self._produce(topic, value, key, -1 if chosen is None else chosen, callback, **kwargs)
                    except BufferError:
                        pass
                    else:
                        self._ledger.count(path, topic, name, chosen, value, None if tenant is None else key)
                        return
            # Full: the local queue, or the tenant's hold while its route drains.
            self._wait_for_room(hold, deadline, topic, name)

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        tenant: str | bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        """Sends and returns a Future that resolves to RecordMetadata once acknowledged."""
        future: Future[RecordMetadata] = Future()
        future.set_running_or_notify_cancel()

        def resolve(err: KafkaError | None, metadata: RecordMetadata | None) -> None:
            if err is not None:
                future.set_exception(KafkaException(err))
            else:
                assert metadata is not None
                future.set_result(metadata)

        self.produce(
            topic,
            value,
            key,
            tenant=tenant,
            partition=partition,
            headers=headers,
            timestamp=timestamp,
            on_delivery=resolve,
        )
        return future

    # -- waiting -------------------------------------------------------------------------------
    def _wait_for_room(self, hold: TenantHold | None, deadline: float, topic: str, name: str | None) -> None:
        """Waits up to routing.max.block.ms in all for the queue or the hold to have room."""
        if time.monotonic() >= deadline:
            if hold is not None:
                raise HoldTimeout(
                    f"tenant {name!r} on {topic!r} is moving (route draining, epoch "
                    f"{hold.epoch}) and {len(hold.records)} of its records are held "
                    f"(routing.hold.max.records={self._options.hold_max_records}) for "
                    f"{self._options.max_block_ms} ms (routing.max.block.ms): is a worker "
                    f"running the route writer?"
                )
            raise ProduceTimeout(
                f"local queue full for {self._options.max_block_ms} ms "
                f"(routing.max.block.ms); {len(self._producer)} records wait for "
                f"{self._bootstrap}: is the broker reachable?"
            )
        if hold is not None:
            hold.wait_for_room(min(0.05, max(deadline - time.monotonic(), 0.001)))
            return
        with self._poller.serving():
            self._producer.poll(0.05)

    # -- background ----------------------------------------------------------------------------
    def _route_changed(self, topic: str, tenant: str, route: Route | None) -> None:
        """Cache listener (the cache's thread): holds or releases the tenant, forgets its cell."""
        self._memo.changed()
        self._drains.route_changed(topic, tenant, route)
        self._memo.forget(topic, tenant)

    def _report_usage(self) -> None:
        self._memo.harvest()
        if self._usage is not None:
            self._usage.send()


def _route_cache(
    rdkafka: dict[str, Any], codec: RouteCodec | None, routes_topic: str, producer_id: str
) -> RouteCache | None:
    if codec is None:
        return None
    cache_conf = consumer_settings_from(rdkafka)
    if "logger" in rdkafka:
        cache_conf["logger"] = rdkafka["logger"]
    return RouteCache(with_client_log(cache_conf), codec, routes_topic, name=f"{producer_id}-routes")
