"""RoutingProducer: a confluent-kafka producer that places each record by the routing table."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from confluent_kafka import KafkaError, KafkaException, Message, Producer, murmur2
from confluent_kafka.serialization import MessageField, SerializationContext

from routing_app.client.cache import RouteCache, consumer_settings_from
from routing_app.client.holds import TenantHold
from routing_app.client.partitioner import RoutingPath, choose_partition, java_partition
from routing_app.codec import AvroCodec, RegistryUnavailable, probe_registry, registry_client
from routing_app.connection import with_client_log
from routing_app.routes import Route, RouteCodec
from routing_app.routes.drain_ack import DRAIN_ACK_SCHEMA, DrainAck, drain_ack_subject
from routing_app.routes.model import RouteMode, RouteStatus, route_key
from routing_app.usage import USAGE_SCHEMA, UsageAccumulator, batch_reports

log = logging.getLogger(__name__)

_DRAINING = RouteStatus.DRAINING
_DRAIN_ACK_HEADER = ("routing.type", b"drain-ack")
_RELEASED_HEADER = ("routing.type", b"drain-released")
_GOODBYE_HEADER = ("routing.type", b"producer-closed")

Serializer = Callable[[Any, SerializationContext], bytes | None]
DeliveryCallback = Callable[[KafkaError | None, "RecordMetadata | None"], None]


class RoutingProducerError(Exception):
    """Base of the errors this client raises itself (librdkafka's stay KafkaException)."""


class ConfigurationError(RoutingProducerError, ValueError):
    pass


class UnknownTopicError(RoutingProducerError):
    pass


class PartitionOutOfRange(RoutingProducerError, ValueError):
    pass


class ProduceTimeout(RoutingProducerError, TimeoutError):
    pass


class HoldTimeout(ProduceTimeout):
    """A draining tenant's held records reached routing.hold.max.records for max.block.ms."""


class RoutesNotReady(ProduceTimeout):
    """The route cache had not read the routes topic within routing.max.block.ms: a keyed
    record would have been placed without knowing its tenant's route."""


class ProduceOptions(TypedDict, total=False):
    """The keyword options of ``RoutingProducer.produce``."""

    tenant: str | bytes | None  # whose route places the record; defaults to the key
    partition: int | None  # explicit partition: overrides the route
    headers: Any
    timestamp: int | None  # CreateTime in ms since the epoch; default now
    on_delivery: DeliveryCallback | None  # called with (err, RecordMetadata | None)


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int
    timestamp: int

    @classmethod
    def of(cls, message: Message) -> RecordMetadata:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        return cls(topic, partition, offset, message.timestamp()[1])


@dataclass(frozen=True)
class _Options:
    """The ``routing.*`` settings; everything else in the config goes to librdkafka untouched."""

    routes_topic: str = "routing.routes"
    usage_topic: str = "routing.usage"
    usage_interval_ms: int = 1000
    usage_top_k: int = 1000
    usage_enabled: bool = True
    metadata_refresh_ms: int = 30_000
    max_block_ms: int = 60_000
    producer_id: str = ""
    cache_enabled: bool = True
    answers_topic: str = "routing.answers"
    hold_max_records: int = 100_000


_OPTION_KEYS = {
    "routing.routes.topic": ("routes_topic", str),
    "routing.usage.topic": ("usage_topic", str),
    "routing.usage.interval.ms": ("usage_interval_ms", int),
    "routing.usage.top.k": ("usage_top_k", int),
    "routing.usage.enabled": ("usage_enabled", bool),
    "routing.metadata.refresh.ms": ("metadata_refresh_ms", int),
    "routing.max.block.ms": ("max_block_ms", int),
    "routing.producer.id": ("producer_id", str),
    "routing.cache.enabled": ("cache_enabled", bool),
    "routing.answers.topic": ("answers_topic", str),
    "routing.hold.max.records": ("hold_max_records", int),
}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{name}: {value!r} is not a boolean (true/false)")


# The registry client's settings, given with this prefix (confluent-kafka's names after it).
_REGISTRY_PREFIX = "schema.registry."


def _split_config(conf: dict[str, Any]
                  ) -> tuple[dict[str, Any], _Options, dict[str, str] | None, Any, Any]:
    rdkafka: dict[str, Any] = {}
    options: dict[str, Any] = {}
    registry: dict[str, str] = {}
    key_serializer = value_serializer = None
    for name, value in conf.items():
        if name.startswith(_REGISTRY_PREFIX):
            registry[name.removeprefix(_REGISTRY_PREFIX)] = str(value)
        elif name == "key.serializer":
            key_serializer = value
        elif name == "value.serializer":
            value_serializer = value
        elif name.startswith("routing."):
            if name not in _OPTION_KEYS:
                raise ConfigurationError(
                    f"unknown setting {name!r}; routing settings are: {', '.join(sorted(_OPTION_KEYS))}"
                )
            field, kind = _OPTION_KEYS[name]
            try:
                options[field] = _as_bool(name, value) if kind is bool else kind(value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name}: {value!r} is not a {kind.__name__}") from exc
        else:
            rdkafka[name] = value
    if "bootstrap.servers" not in rdkafka:
        raise ConfigurationError("'bootstrap.servers' is required")
    _default_idempotence(rdkafka)
    opts = _Options(**options)
    if not opts.producer_id:
        opts = _Options(**{**options, "producer_id": f"producer-{uuid.uuid4().hex[:12]}"})
    if registry and "url" not in registry:
        raise ConfigurationError(f"{', '.join(_REGISTRY_PREFIX + k for k in sorted(registry))} "
                                 "given without 'schema.registry.url'")
    return rdkafka, opts, registry or None, key_serializer, value_serializer


def _default_idempotence(rdkafka: dict[str, Any]) -> None:
    """Idempotence on unless the configuration says otherwise, as the Java client does since
    3.0: a strict move's stop-and-wait keeps a tenant's order only if a retry cannot put a
    record behind a later one. With it off, say so once, at the start."""
    acks = str(rdkafka.get("acks", rdkafka.get("request.required.acks", "all"))).lower()
    if "enable.idempotence" not in rdkafka and acks in ("all", "-1"):
        rdkafka["enable.idempotence"] = True
    elif not _as_bool("enable.idempotence", rdkafka.get("enable.idempotence", False)):
        log.warning("enable.idempotence is off (acks=%s): a retried send can land behind a later "
                    "one, so tenants in strict mode may see records out of order around a move",
                    acks)


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
        rdkafka, self._options, registry_conf, conf_key_ser, conf_value_ser = _split_config(conf)
        registry_url = registry_conf["url"] if registry_conf else None
        self._key_serializer = key_serializer or conf_key_ser
        self._value_serializer = value_serializer or conf_value_ser
        self.producer_id = self._options.producer_id
        if registry_url is None and (self._options.cache_enabled or self._options.usage_enabled):
            raise ConfigurationError(
                "'schema.registry.url' is required to read routes and write usage reports "
                "(or set routing.cache.enabled=false and routing.usage.enabled=false)"
            )
        try:
            # Failures are counted by a producer-wide delivery callback: passing one with every
            # record takes a keyword argument, which doubles the cost of librdkafka's produce().
            # Connection trouble goes to logging, once per broker (routing_app.connection).
            self._producer = Producer(with_client_log(
                {**rdkafka, "on_delivery": self._on_delivery_report}))
        except KafkaException as exc:
            raise ConfigurationError(f"librdkafka refused the configuration: {exc}") from exc
        self._produce = self._producer.produce
        self._bootstrap = rdkafka["bootstrap.servers"]
        self._registry_url = registry_url
        self._max_block_s = self._options.max_block_ms / 1000.0
        self._partition_counts: dict[str, int] = {}
        self._counts_loaded_at = 0.0
        self._metadata_lock = threading.Lock()
        self._round_robin = itertools.count().__next__
        self._closed = False
        self._serving_lock = threading.Lock()
        self._serving = 0  # callers' threads serving delivery callbacks (_serving_callbacks)
        # Records by path outside the memo cells (see _produce_plain); ``counters`` adds both.
        self._explicit = self._routed = self._sharded = self._hashed = self._unkeyed = 0
        self._delivery_failed = self._route_out_of_range = 0
        self._usage_reports = self._usage_deferred = 0
        # The memo of plain records, by topic then key (bytes or None): a cell
        # [records, bytes, partition, live, path] holds where the key's records go and what
        # was sent since the last harvest. A cell in these dicts is live; one taken out (its
        # route or partition count changed, or it sat idle for an interval) is marked dead
        # under the lock and its counts moved on, so a thread holding it falls back.
        self._cells: dict[str, dict[bytes | None, list[Any]]] = {}
        self._cell_lock = threading.Lock()
        self._cell_acquire = self._cell_lock.acquire
        self._cell_release = self._cell_lock.release
        self._cell_paths = {RoutingPath.ROUTED.value: 0, RoutingPath.HASHED.value: 0,
                            RoutingPath.UNKEYED.value: 0}
        # A new value (never an old one again) after every change a cell could depend on:
        # a decision made before it is not memoized.
        self._epochs = itertools.count(1).__next__
        self._cell_epoch = 0
        self._memoize = False
        # Drains: records sent and reported per (topic, partition), the last offset reported,
        # and the tenants whose records are held while their routes drain.
        self._sent: dict[tuple[str, int], int] = {}
        self._done: dict[tuple[str, int], int] = {}
        self._last_offsets: dict[tuple[str, int], int] = {}
        self._holds: dict[tuple[str, str], TenantHold] = {}
        self._drain_acks = self._holds_released = self._held_total = 0

        registry = registry_client(registry_conf) if registry_conf else None
        self._cache: RouteCache | None = None
        self._route_codec: RouteCodec | None = None
        self._routes_by_topic: dict[str, dict[str, Route]] = {}
        # Keyed records wait for the routes (up to routing.max.block.ms) until this holds.
        self._routes_ready = True
        if self._options.cache_enabled and registry is not None:
            self._route_codec = RouteCodec(registry, self._options.routes_topic)
            cache_conf = consumer_settings_from(rdkafka)
            if "logger" in rdkafka:
                cache_conf["logger"] = rdkafka["logger"]
            self._cache = RouteCache(
                with_client_log(cache_conf),
                self._route_codec,
                self._options.routes_topic,
                name=f"{self.producer_id}-routes",
            )
            self._routes_ready = False
            self._routes_by_topic = self._cache.routes_by_topic
            self._cache.add_listener(self._route_changed)
            self._cache.start()
        self._acks_codec = (AvroCodec(registry, DRAIN_ACK_SCHEMA, self._options.answers_topic,
                                      subject=drain_ack_subject(self._options.answers_topic))
                            if registry is not None else None)
        self._usage: UsageAccumulator | None = None
        self._usage_codec: AvroCodec | None = None
        if self._options.usage_enabled and registry is not None:
            self._usage = UsageAccumulator(self.producer_id)
            self._usage_codec = AvroCodec(registry, USAGE_SCHEMA, self._options.usage_topic)
        # produce() takes its inlined path only while this holds (and the record is plain).
        self._plain = self._key_serializer is None and self._value_serializer is None
        self._usage_error_logged = False
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name=f"{self.producer_id}-poll",
                                        daemon=True)
        self._poller.start()
        # The schemas the poll thread encodes with, resolved here and not there: a registry
        # call blocks for seconds when it is down (~7 s with the client's retries), and the
        # poll thread serves delivery reports and drain acks. Until they are resolved, drain
        # acks and usage reports wait; nothing else does.
        self._schemas = threading.Thread(target=self._resolve_schemas,
                                         name=f"{self.producer_id}-schemas", daemon=True)
        self._schemas.start()

    # -- lifecycle -----------------------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> None:
        """Blocks until the route cache has read every route that existed when it started."""
        if self._cache is None:
            return
        if not self._cache.wait_ready(timeout):
            raise TimeoutError(f"route cache not ready after {timeout}s: {self._routes_problem()}")
        self._routes_ready = True

    def _routes_problem(self) -> str:
        """Why the route cache is not ready: where it stands, on which topic and broker, and the
        registry when that is what it waits for."""
        assert self._cache is not None
        stats = self._cache.stats()
        topic = self._options.routes_topic
        if stats.end_offset_at_start < 0:
            where = (f"it could not read the end of {topic!r} from Kafka at {self._bootstrap} "
                     f"(is the broker reachable, does the topic exist?)")
        else:
            where = (f"it read {stats.position} of {stats.end_offset_at_start} records of "
                     f"{topic!r} from Kafka at {self._bootstrap}")
        failure = self._route_codec.values.last_failure if self._route_codec else None
        problem = str(failure) if failure is not None else (
            probe_registry(self._registry_url) if self._registry_url else None)
        if problem is not None:
            where += (f"; the schema registry at {self._registry_url}, which it needs to read "
                      f"routes, does not answer ({problem})")
        return where

    def flush(self, timeout: float | None = None) -> int:
        """Waits for every record sent so far to be acknowledged; returns how many are left."""
        if self._closed and not hasattr(self, "_producer"):
            return 0
        self._report_usage()
        # Held records are sent only when their tenant's move ends: wait for that too.
        deadline = None if timeout is None else time.monotonic() + timeout
        for hold in list(self._holds.values()):
            hold.released.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
        held = sum(len(h.records) for h in list(self._holds.values()))
        left = -1 if deadline is None else max(deadline - time.monotonic(), 0)
        with self._serving_callbacks():
            return int(self._producer.flush(left)) + held

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._plain = False
        remaining = self.flush(timeout)
        self._say_goodbye()
        self._stop.set()
        self._poller.join(5.0)
        if self._cache is not None:
            self._cache.stop()
        # librdkafka holds our bound-method callbacks and we hold it: without breaking the cycle
        # its threads would live on until a full garbage collection. ``_produce`` is its bound
        # method, so it must go too; a send racing this close gets a clear error instead.
        del self._producer

        def closed(*_args: Any, **_kwargs: Any) -> None:
            raise RoutingProducerError("producer is closed")

        self._produce = closed
        if remaining:
            log.error("%s closed with %d records not acknowledged (held records of tenants still "
                      "moving are among them)", self.producer_id, remaining)

    def __enter__(self) -> RoutingProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: records by routing path, delivery failures, usage reports sent/deferred."""
        with self._cell_lock:
            memo = dict(self._cell_paths)
            for cells in self._cells.values():
                for cell in cells.values():
                    memo[cell[4]] += cell[0]
        return {
            RoutingPath.EXPLICIT.value: self._explicit,
            RoutingPath.ROUTED.value: self._routed + memo[RoutingPath.ROUTED.value],
            RoutingPath.SHARDED.value: self._sharded,
            RoutingPath.HASHED.value: self._hashed + memo[RoutingPath.HASHED.value],
            RoutingPath.UNKEYED.value: self._unkeyed + memo[RoutingPath.UNKEYED.value],
            "delivery_failed": self._delivery_failed,
            "route_out_of_range": self._route_out_of_range,
            "usage_reports": self._usage_reports,
            "usage_deferred": self._usage_deferred,
            "held": sum(len(h.records) for h in list(self._holds.values())),
            "held_total": self._held_total,
            "draining_tenants": len(self._holds),
            "drain_acks": self._drain_acks,
            "holds_released": self._holds_released,
        }

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
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._load_partition_count(topic)
        return count

    def partition_for(
        self,
        topic: str,
        key: bytes | None,
        tenant: str | bytes | None = None,
        partition: int | None = None,
    ) -> tuple[int | None, RoutingPath]:
        """Where a record would go, without sending it."""
        count = self.partition_count(topic)
        if partition is not None:
            if not 0 <= partition < count:
                raise PartitionOutOfRange(
                    f"partition {partition} does not exist on topic {topic!r} "
                    f"(it has {count}: 0..{count - 1})"
                )
            return partition, RoutingPath.EXPLICIT
        if tenant is None:
            tenant_bytes, secondary = key, None
        else:
            tenant_bytes = tenant.encode("utf-8") if isinstance(tenant, str) else tenant
            secondary = key
        route_partitions = None
        relaxed = False
        if tenant_bytes is not None and self._cache is not None:
            routes = self._cache.routes_for_topic(topic)
            if routes:
                tenant_name = (tenant if isinstance(tenant, str)
                               else tenant_bytes.decode("utf-8", "surrogateescape"))
                route = routes.get(tenant_name)
                if route is not None:
                    route_partitions = self._usable(route, count)
                    relaxed = route.mode is RouteMode.RELAXED
        return choose_partition(count, route_partitions, tenant_bytes, secondary, self._round_robin,
                                spread_keyless=relaxed)

    def _usable(self, route: Route, count: int) -> tuple[int, ...] | None:
        if max(route.partitions) < count:
            return route.partitions
        # The route was written for partitions our metadata does not know yet: refresh once.
        count = self._load_partition_count(route.topic)
        if max(route.partitions) < count:
            return route.partitions
        self._route_out_of_range += 1
        log.warning("route %s names partitions %s but %r has %d; hashing instead",
                    route.key, list(route.partitions), route.topic, count)
        return None

    # -- sending -------------------------------------------------------------------------------
    def produce(
        self, topic: str, value: Any = None, key: Any = None, **options: Unpack[ProduceOptions]
    ) -> None:
        """Fire-and-forget (or with ``on_delivery(err, RecordMetadata | None)``).

        ``options``: ``tenant``, ``partition``, ``headers``, ``timestamp``, ``on_delivery``
        (see ProduceOptions). They are keywords only, gathered rather than declared one by one
        because filling five declared defaults costs more per call than checking one dict.
        """
        if not options and self._plain:
            # A plain record (bytes or no key, nothing else): one memo lookup gives both where
            # it goes and where to count it. Decoding the key, finding its route and counting
            # usage under a tuple key each time cost as much as librdkafka's produce() itself.
            cells = self._cells.get(topic)
            if cells is not None:
                try:
                    cell = cells.get(key)  # only bytes and None keys are ever memoized
                except TypeError:  # unhashable: the general path says what is wrong with it
                    cell = None
                if cell is not None:
                    self._cell_acquire()
                    try:
                        # Sent under the lock: a drain's barrier (see _begin_hold) then counts
                        # exactly the records librdkafka has before the hold, in its order.
                        if cell[3]:
                            # Positional: keyword arguments double the cost of this call.
                            self._produce(topic, value, key, cell[2])
                            cell[0] += 1
                            cell[1] += 0 if value is None else len(value)
                            return
                    except BufferError:
                        pass  # the general path waits for room
                    finally:
                        self._cell_release()
                    self._produce_general(topic, value, key)
                    return
            if self._produce_plain(topic, value, key):
                return
        self._produce_general(topic, value, key, **options)

    def _produce_plain(self, topic: str, value: Any, key: Any) -> bool:
        """A plain record without a live cell: chooses as partition_for does, memoizes the
        choice and sends. False, having done nothing, for what only _produce_general does: no
        partition count yet, a sharded route, a route ahead of our metadata, a str key."""
        epoch = self._cell_epoch  # before reading anything the choice depends on
        count = self._partition_counts.get(topic)
        if count is None or (key is not None and not self._routes_ready):
            return False
        if key is None:
            chosen, path = -1, RoutingPath.UNKEYED.value  # -1: librdkafka's sticky partitioner
        elif key.__class__ is bytes:
            routes = self._routes_by_topic.get(topic)
            name = key.decode("utf-8", "surrogateescape")
            route = routes.get(name) if routes else None
            if self._holds and (topic, name) in self._holds:
                return False
            if route is None:
                chosen, path = murmur2(key, count), RoutingPath.HASHED.value
            else:
                shards = route.partitions
                if len(shards) != 1 or shards[0] >= count or route.status is _DRAINING:
                    return False
                chosen, path = shards[0], RoutingPath.ROUTED.value
        else:
            return False
        nbytes = 0 if value is None else len(value)
        if not self._memoize:
            # Before the cache is ready, route changes are not followed (see _route_changed).
            self._memoize = self._cache is None or self._cache.ready
        with self._cell_lock:
            if self._cell_epoch != epoch:
                return False  # a route changed meanwhile: decide again on the general path
            try:
                self._produce(topic, value, key, chosen)
            except BufferError:
                return False  # the general path waits for room
            if self._memoize:
                cells = self._cells.get(topic)
                if cells is None:
                    cells = self._cells[topic] = {}
                cell = cells.get(key)
                if cell is None:
                    cells[key] = [1, nbytes, chosen, True, path]
                else:  # another thread got here first, from the same state
                    cell[0] += 1
                    cell[1] += nbytes
            else:
                self._cell_paths[path] += 1
                if chosen >= 0:
                    self._count_sent(topic, chosen, 1)
                if self._usage is not None:
                    self._usage.add_counts([(topic, key or b"", chosen, 1, nbytes)])
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
            value = self._value_serializer(value, SerializationContext(topic, MessageField.VALUE,
                                                                       headers))
        name = _tenant_name(tenant, key)
        # None: the producer-wide callback, which counts failures.
        callback = None if on_delivery is None else _adapt(on_delivery, self._on_delivery_report)
        kwargs: dict[str, Any] = {}
        if headers is not None:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        deadline = time.monotonic() + self._max_block_s
        if not self._routes_ready and name is not None and partition is None:
            self._wait_for_routes(deadline)
        while True:
            epoch = self._cell_epoch
            chosen, path = self.partition_for(topic, key, tenant, partition)
            args = (topic, value, key, -1 if chosen is None else chosen, callback)
            with self._cell_lock:
                if self._cell_epoch != epoch:
                    continue  # a route changed while we chose: choose again
                hold = (self._holds.get((topic, name))
                        if self._holds and name is not None and partition is None else None)
                if hold is not None:
                    if hold.offer(value, key, {"tenant": tenant, "headers": headers,
                                               "timestamp": timestamp,
                                               "on_delivery": on_delivery}):
                        return
                else:
                    try:
                        self._produce(*args, **kwargs)
                    except BufferError:
                        pass
                    else:
                        self._count_path(path, topic, name, chosen, value,
                                         None if tenant is None else key)
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

        self.produce(topic, value, key, tenant=tenant, partition=partition, headers=headers,
                     timestamp=timestamp, on_delivery=resolve)
        return future

    def _count_path(self, path: RoutingPath, topic: str, name: str | None, chosen: int | None,
                    value: Any, stream: Any) -> None:
        # Under the cell lock, right after the record went to librdkafka. ``stream``: the
        # secondary key (None: the record is its tenant's keyless stream).
        if path is RoutingPath.ROUTED:
            self._routed += 1
        elif path is RoutingPath.SHARDED:
            self._sharded += 1
        elif path is RoutingPath.HASHED:
            self._hashed += 1
        elif path is RoutingPath.EXPLICIT:
            self._explicit += 1
        else:
            self._unkeyed += 1
        if chosen is not None:
            self._count_sent(topic, chosen, 1)
        if self._usage is not None:
            self._usage.add(topic, name or "", len(value) if value is not None else 0,
                            -1 if chosen is None else chosen, stream)

    def _wait_for_routes(self, deadline: float) -> None:
        """A keyed record before the route cache is ready: placed by hash, it would go where
        its tenant's route (a pin, a move in progress) says it must not. Waits up to
        routing.max.block.ms for the routes, then says what the cache is stuck on."""
        cache = self._cache
        if cache is not None and not cache.ready:
            try:
                ready = cache.wait_ready(max(deadline - time.monotonic(), 0.0))
            except RuntimeError as exc:
                raise RoutingProducerError(str(exc)) from exc
            if not ready:
                raise RoutesNotReady(
                    f"routes not read within {self._options.max_block_ms} ms "
                    f"(routing.max.block.ms), so the record was not sent: "
                    f"{self._routes_problem()}")
        self._routes_ready = True

    def _wait_for_room(self, hold: TenantHold | None, deadline: float, topic: str,
                       name: str | None) -> None:
        """Waits up to routing.max.block.ms in all for the queue or the hold to have room."""
        if time.monotonic() >= deadline:
            if hold is not None:
                raise HoldTimeout(
                    f"tenant {name!r} on {topic!r} is moving (route draining, epoch "
                    f"{hold.epoch}) and {len(hold.records)} of its records are held "
                    f"(routing.hold.max.records={self._options.hold_max_records}) for "
                    f"{self._options.max_block_ms} ms (routing.max.block.ms): is a worker "
                    f"running the route writer?")
            raise ProduceTimeout(
                f"local queue full for {self._options.max_block_ms} ms "
                f"(routing.max.block.ms); {len(self._producer)} records wait for "
                f"{self._bootstrap}: is the broker reachable?")
        if hold is not None:
            hold.wait_for_room(min(0.05, max(deadline - time.monotonic(), 0.001)))
            return
        with self._serving_callbacks():
            self._producer.poll(0.05)

    @contextlib.contextmanager
    def _serving_callbacks(self) -> Iterator[None]:
        """Marks a caller's thread as serving delivery callbacks (flush, or a wait for room),
        which the poll thread leaves to it meanwhile: two threads serving them at once take
        the GIL from each other once per record."""
        with self._serving_lock:
            self._serving += 1
        try:
            yield
        finally:
            with self._serving_lock:
                self._serving -= 1

    def _on_delivery_report(self, err: KafkaError | None, message: Message) -> None:
        # Every record's report, in librdkafka's order per partition: what drains wait for.
        tp: tuple[str, int] = (message.topic(), message.partition())  # type: ignore[assignment]
        done = self._done
        done[tp] = done.get(tp, 0) + 1
        if err is not None:
            self._delivery_failed += 1
            log.error("delivery to %s [%s] failed: %s", tp[0], tp[1], err)
        else:
            self._last_offsets[tp] = message.offset()  # type: ignore[assignment]

    def _count_sent(self, topic: str, partition: int, records: int) -> None:
        # Under the cell lock.
        tp = (topic, partition)
        self._sent[tp] = self._sent.get(tp, 0) + records

    # -- the memo of plain records ------------------------------------------------------------
    def _route_changed(self, topic: str, tenant: str, route: Route | None) -> None:
        """Cache listener (the cache's thread): the cell of that tenant's key is stale."""
        self._cell_epoch = self._epochs()
        if route is not None and route.status is _DRAINING and route.mode is RouteMode.STRICT:
            self._begin_hold(route)
        elif (topic, tenant) in self._holds:
            self._release(topic, tenant)
        if self._cache is None or not self._cache.ready:
            # Nothing is memoized before the cache is ready: skip the lock for each of the
            # routes a rebuild reads. The new epoch still stops a choice made from an older
            # route from being memoized after the cache becomes ready.
            return
        key = tenant.encode("utf-8", "surrogateescape")
        with self._cell_lock:
            cells = self._cells.get(topic)
            cell = None if cells is None else cells.pop(key, None)
            if cell is not None:
                self._retire(topic, key, cell)

    def _counts_changed(self, topics: list[str]) -> None:
        """Partition counts of these topics changed: every choice made for them is stale."""
        self._cell_epoch = self._epochs()
        with self._cell_lock:
            for topic in topics:
                for key, cell in (self._cells.pop(topic, None) or {}).items():
                    self._retire(topic, key, cell)

    def _harvest(self) -> None:
        """Moves the counts of every cell on (usage, path totals); drops cells left idle."""
        moved: list[tuple[str, bytes, int, int, int]] = []
        paths = self._cell_paths
        with self._cell_lock:
            for topic, cells in self._cells.items():
                idle = []
                for key, cell in cells.items():
                    records = cell[0]
                    if records:
                        moved.append((topic, key or b"", cell[2], records, cell[1]))
                        paths[cell[4]] += records
                        if cell[2] >= 0:
                            self._count_sent(topic, cell[2], records)
                        cell[0] = cell[1] = 0
                    else:
                        idle.append(key)
                for key in idle:
                    cells.pop(key)[3] = False
            # Inside the lock: once any harvest returns, every count taken so far is in the
            # accumulator, so a flush() that harvests while the poll thread does reports it all.
            if moved and self._usage is not None:
                self._usage.add_counts(moved)

    def _retire(self, topic: str, key: bytes | None, cell: list[Any]) -> None:
        # Under the cell lock, with the cell already out of its dict.
        cell[3] = False
        if cell[0]:
            self._cell_paths[cell[4]] += cell[0]
            if cell[2] >= 0:
                self._count_sent(topic, cell[2], cell[0])
            if self._usage is not None:
                self._usage.add_counts([(topic, key or b"", cell[2], cell[0], cell[1])])
            cell[0] = cell[1] = 0

    # -- drains: hold, acknowledge, release -----------------------------------------------------
    def _begin_hold(self, route: Route) -> None:
        """From now on the tenant's records wait; the barrier is what went out before."""
        key = (route.topic, route.tenant)
        with self._cell_lock:
            current = self._holds.get(key)
            if current is not None and current.epoch >= route.epoch:
                return
            cells = self._cells.get(route.topic)
            cell = None if cells is None else cells.pop(
                route.tenant.encode("utf-8", "surrogateescape"), None)
            if cell is not None:
                self._retire(route.topic, route.tenant.encode("utf-8", "surrogateescape"), cell)
            old = set(route.previous_partitions)
            barrier = {p: self._sent.get((route.topic, p), 0) for p in old}
            for cell in (cells or {}).values():
                if cell[2] in old:
                    barrier[cell[2]] += cell[0]
            if current is not None:  # a newer drain of the same tenant: keep what is held
                current.epoch, current.barrier, current.acked = route.epoch, barrier, False
            else:
                self._holds[key] = TenantHold(route.topic, route.tenant, route.epoch, barrier,
                                              self._options.hold_max_records)
        log.info("%s: holding %s while it moves %s -> %s (epoch %d)", self.producer_id,
                 route.key, list(route.previous_partitions), list(route.partitions), route.epoch)

    def _acknowledge_drains(self) -> None:
        """Poll thread: answers each hold whose barrier records are all reported."""
        if self._cache is not None and not self._cache.ready:
            return  # a rebuild replays drains long over; answer only what is current
        for hold in list(self._holds.values()):
            if hold.acked:
                continue
            done = self._done
            if any(done.get((hold.topic, p), 0) < n for p, n in hold.barrier.items()):
                continue
            ack = DrainAck(self.producer_id, hold.topic, hold.tenant, hold.epoch,
                           {p: self._last_offsets.get((hold.topic, p), -1) for p in hold.barrier},
                           int(time.time() * 1000), held=len(hold.records))
            if self._acks_codec is None:
                return
            if not self._acks_codec.registered:
                # The schema thread is still at it (the registry is down): never ask the
                # registry from here, it would stop delivery reports for seconds per try.
                if not hold.ack_error_logged:
                    hold.ack_error_logged = True
                    log.warning("%s: drain ack for %s/%s waits for the schema registry at %s "
                                "(the drain-ack schema is not resolved yet)", self.producer_id,
                                hold.topic, hold.tenant, self._registry_url)
                continue
            try:
                self._producer.produce(self._options.answers_topic,
                                       self._acks_codec.encode(ack.to_record()),
                                       route_key(hold.topic, hold.tenant).encode("utf-8"),
                                       headers=[_DRAIN_ACK_HEADER])
            except (BufferError, RegistryUnavailable, KafkaException) as exc:
                if not hold.ack_error_logged:
                    hold.ack_error_logged = True
                    log.warning("%s: drain ack for %s/%s not sent yet (retrying): %s",
                                self.producer_id, hold.topic, hold.tenant, exc)
                continue
            hold.acked = True
            self._drain_acks += 1

    def _say_goodbye(self) -> None:
        """Tells the route writer this producer is gone, so no drain waits for its answer
        until its heartbeats (usage reports) expire."""
        if self._acks_codec is None:
            return
        try:
            self._producer.produce(self._options.answers_topic, self.producer_id.encode("utf-8"),
                                   self.producer_id.encode("utf-8"), headers=[_GOODBYE_HEADER])
            self._producer.flush(2.0)
        except (BufferError, KafkaException) as exc:
            log.warning("%s: could not announce its close: %s", self.producer_id, exc)

    def _release(self, topic: str, tenant: str) -> None:
        """The route is settled: sends the held records by it, in order, before newer ones.

        The hold stays in place until it is empty, so records produced meanwhile queue behind.
        """
        key = (topic, tenant)
        hold = self._holds[key]
        released = 0
        while True:
            with self._cell_lock:
                batch = hold.take_all()
                if not batch:
                    del self._holds[key]
                    hold.end()
                    break
            for value, record_key, options in batch:
                self._send_released(topic, value, record_key, options)
                released += 1
        self._holds_released += 1
        self._held_total += released
        log.info("%s: released %d held records of %s/%s", self.producer_id, released, topic,
                 tenant)
        self._report_release(hold, released)

    def _report_release(self, hold: TenantHold, released: int) -> None:
        """Tells the writer how many records this move really held here: the ack said only how
        many were held when it went out, early in the hold. A rebuild replaying drains long
        over (cache not ready yet) reports nothing."""
        codec = self._acks_codec
        if (codec is None or not codec.registered or self._cache is None
                or not self._cache.ready or not hasattr(self, "_producer")):
            return
        report = DrainAck(self.producer_id, hold.topic, hold.tenant, hold.epoch, {},
                          int(time.time() * 1000), held=released)
        try:
            self._producer.produce(self._options.answers_topic, codec.encode(report.to_record()),
                                   route_key(hold.topic, hold.tenant).encode("utf-8"),
                                   headers=[_RELEASED_HEADER])
        except (BufferError, RegistryUnavailable, KafkaException) as exc:
            log.warning("%s: release report for %s/%s not sent (the drain event will lack "
                        "its held count): %s", self.producer_id, hold.topic, hold.tenant, exc)

    def _send_released(self, topic: str, value: Any, key: Any, options: dict[str, Any]) -> None:
        on_delivery = options["on_delivery"]
        callback = None if on_delivery is None else _adapt(on_delivery, self._on_delivery_report)
        kwargs = {k: options[k] for k in ("headers", "timestamp") if options[k] is not None}
        deadline = time.monotonic() + self._max_block_s
        while True:
            tenant = options["tenant"]
            chosen, path = self.partition_for(topic, key, tenant)
            name = _tenant_name(tenant, key)
            with self._cell_lock:
                try:
                    self._produce(topic, value, key, -1 if chosen is None else chosen, callback,
                                  **kwargs)
                except BufferError:
                    pass
                else:
                    self._count_path(path, topic, name, chosen, value,
                                     None if tenant is None else key)
                    return
            self._wait_for_room(None, deadline, topic, None)

    # -- metadata ------------------------------------------------------------------------------
    def _load_partition_count(self, topic: str) -> int:
        with self._metadata_lock:
            try:
                # All topics, not list_topics(topic): asking for one topic may auto-create it.
                metadata = self._producer.list_topics(timeout=max(self._max_block_s, 1.0))
            except KafkaException as exc:
                raise UnknownTopicError(
                    f"cannot read metadata for {topic!r} from {self._bootstrap}: {exc}"
                ) from exc
            counts = {
                name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None
            }
            previous, self._partition_counts = self._partition_counts, counts
            self._counts_loaded_at = time.monotonic()
            changed = [name for name, n in previous.items() if counts.get(name) != n]
            if changed:
                self._counts_changed(changed)
        if topic not in counts:
            raise UnknownTopicError(
                f"topic {topic!r} does not exist on {self._bootstrap}; data topics are never "
                f"created implicitly: create it first (e.g. kafka-topics.sh --create)"
            )
        return counts[topic]

    # -- background ----------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        interval_s = self._options.usage_interval_ms / 1000.0
        next_report = time.monotonic() + interval_s
        refresh_s = self._options.metadata_refresh_ms / 1000.0
        while not self._stop.is_set():
            if self._serving:
                self._stop.wait(0.05)
            else:
                self._producer.poll(0.05)
            if self._holds:
                self._acknowledge_drains()
            now = time.monotonic()
            if now >= next_report:
                next_report = now + interval_s
                self._report_usage()
            if self._partition_counts and now - self._counts_loaded_at >= refresh_s:
                try:
                    self._load_partition_count(next(iter(self._partition_counts)))
                except RoutingProducerError as exc:
                    log.warning("metadata refresh: %s", exc)
                    self._counts_loaded_at = now

    def _report_usage(self) -> None:
        self._harvest()
        if self._usage is None or self._usage_codec is None:
            return
        reports = self._usage.drain(top_k=self._options.usage_top_k)
        if not reports:
            return

        topic = self._options.usage_topic
        batches = []
        sent = 0  # batches sent
        try:
            if not self._usage_codec.registered:
                # Resolved by the schema thread; asking the registry here would block.
                raise RegistryUnavailable(
                    f"the usage schema is not resolved yet (schema registry at "
                    f"{self._registry_url})")
            count = self.partition_count(topic)
            # One record per usage partition (split if large): every report in it has a key
            # that hashes there, and so does the record's key (its first report's).
            batches = batch_reports(reports, count)
            for batch in batches:
                # Timestamped inside the interval (its last ms): workers window by it.
                self._producer.produce(topic, self._usage_codec.encode(batch.to_record()),
                                       batch.key, partition=java_partition(batch.key, count),
                                       timestamp=batch.interval_end - 1)
                sent += 1
        except (UnknownTopicError, RegistryUnavailable, BufferError) as exc:
            # Usage is telemetry: keep producing data, keep the counts for the next interval.
            self._usage.restore([r for b in batches[sent:] for r in b.reports] if batches
                                else reports)
            self._usage_deferred += 1
            if not self._usage_error_logged and not isinstance(exc, BufferError):
                log.error("usage reports not sent (kept for the next interval): %s", exc)
                self._usage_error_logged = True
        # Counted in tenant reports, however many records carried them.
        self._usage_reports += sum(len(b.reports) for b in batches[:sent])

    def _resolve_schemas(self) -> None:
        """Schema thread: registers the drain-ack and usage schemas and looks the route schema
        up, retrying while the registry is down; logs the outage once and its end."""
        pending: list[tuple[AvroCodec, bool]] = [
            (codec, register) for codec, register in (
                (self._acks_codec, True), (self._usage_codec, True),
                (self._route_codec.values if self._route_codec else None, False))
            if codec is not None]
        delay, failed_at = 0.5, None
        while pending and not self._stop.is_set():
            codec, register = pending[0]
            try:
                if register:
                    codec.schema_id  # noqa: B018 (registers it)
                else:
                    codec.prefetch()
            except RegistryUnavailable as exc:
                if failed_at is None:
                    failed_at = time.monotonic()
                    log.warning("%s: schema registry at %s unreachable (%s); drain acks and "
                                "usage reports wait for it, records do not", self.producer_id,
                                self._registry_url, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            pending.pop(0)
        if failed_at is not None and not pending:
            log.warning("%s: schema registry at %s reachable again after %.1f s",
                        self.producer_id, self._registry_url, time.monotonic() - failed_at)


def _tenant_name(tenant: str | bytes | None, key: Any) -> str | None:
    """Whose record it is, as a name: the tenant, or else the key (undecodable bytes kept)."""
    who = tenant if tenant is not None else key
    if who is None:
        return None
    return who.decode("utf-8", "surrogateescape") if isinstance(who, bytes) else str(who)


def _adapt(
    callback: DeliveryCallback, count_failure: Callable[[KafkaError | None, Message], None]
) -> Callable[[KafkaError | None, Message], None]:
    def on_delivery(err: KafkaError | None, message: Message) -> None:
        count_failure(err, message)
        callback(err, None if err is not None else RecordMetadata.of(message))

    return on_delivery
