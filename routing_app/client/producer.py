"""RoutingProducer: a confluent-kafka producer that places each record by the routing table.

The front door: what an application calls, and the memoized path of plain records. Its parts
(built and wired in client.assembly), in the order a record meets them:
- options: the configuration, split into librdkafka's settings and the ``routing.*`` options;
- memo: the per-key cells that send a plain record with one lookup (the hot path, ``produce``);
- sending: the general path, for every record the memo does not send;
- router: partition choice by the route table, over metadata's partition counts;
- ledger: what was sent and reported per partition, under the send lock every send takes;
- drains: holds, acks and releases while a strict tenant's route drains;
- reporting and schemas: usage reports, and the schemas they and the acks are encoded with.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any, Unpack

from routing_app.client.assembly import ProducerParts
from routing_app.client.cache import RouteCache
from routing_app.client.errors import RoutingProducerError
from routing_app.client.partitioner import RoutingPath
from routing_app.client.records import ProduceOptions, RecordMetadata, Serializer
from routing_app.client.sending import resolves, send_after_close
from routing_app.routes import Route

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
        self._parts = parts = ProducerParts(conf, key_serializer, value_serializer)
        self.producer_id = parts.producer_id
        self._producer = parts.producer
        self._cache = parts.cache
        self._routes = parts.routes
        self._memo = parts.memo
        self._metadata = parts.metadata
        self._router = parts.router
        self._ledger = parts.ledger
        self._drains = parts.drains
        self._poller = parts.poller
        # The hot path's references, held here to save an attribute lookup per record.
        self._produce = parts.producer.produce
        self._cells = parts.memo.cells
        self._lock_acquire, self._lock_release = parts.ledger.lock.acquire, parts.ledger.lock.release
        self._plain = parts.plain  # plain records are memoized only while this holds
        self._send_general = parts.sender.produce
        self._closed = False
        parts.start()

    # -- lifecycle -----------------------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> None:
        """Blocks until the route cache has read every route that existed when it started."""
        self._routes.wait_ready(timeout)

    def flush(self, timeout: float | None = None) -> int:
        """Waits for every record sent so far to be acknowledged; returns how many are left."""
        if self._closed and not hasattr(self, "_producer"):
            return 0
        self._parts.report_usage()
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
        self._parts.stop()
        # Every part let go of librdkafka (see ProducerParts.stop), and so must we: ``_produce``
        # is its bound method too. A send racing this close gets a clear error instead.
        del self._producer
        self._produce = send_after_close
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
        return self._parts.counters()

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
        if self._closed:
            raise RoutingProducerError("producer is closed")
        self._send_general(topic, value, key, **options)

    def _produce_plain(self, topic: str, value: Any, key: Any) -> bool:
        """A plain record without a live cell: chooses as partition_for does, memoizes the
        choice and sends. False, having done nothing, for what only the general path does (see
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
        self.produce(
            topic,
            value,
            key,
            tenant=tenant,
            partition=partition,
            headers=headers,
            timestamp=timestamp,
            on_delivery=resolves(future),
        )
        return future
