"""The producer's view of the routing table: the routes topic read from the beginning, then tailed.

RouteCache is the cache thread's lifecycle and the table it keeps. What it consults on the way
lives next to it: its consumer's settings (consumer_config), the poison it skips (poison),
routes deferred for partitions their topic lacks (deferred_routes), the collector paused while
it rebuilds (gc_pause).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from routing_app.client.consumer_config import cache_consumer_config
from routing_app.client.deferred_routes import DeferredRoutes
from routing_app.client.gc_pause import GcPause
from routing_app.client.poison import PoisonBook, PoisonListener
from routing_app.codec import DecodeError, RegistryUnavailable
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import RouteStatus, route_key

log = logging.getLogger(__name__)

RouteListener = Callable[[str, str, Route | None], None]

# Partition counts are asked of the broker when a route names a partition beyond what the cache
# knows, at most this often; a route deferred meanwhile is checked again on the next refresh.
METADATA_MIN_INTERVAL_S = 1.0
METADATA_TIMEOUT_S = 5.0
_ABSENT = -1  # partition count of a topic the broker did not list


@dataclass(frozen=True)
class CacheStats:
    routes: int
    position: int
    end_offset_at_start: int
    ready: bool
    undecodable: int  # records skipped: undecodable, or routes Route.validate refuses
    stale_ignored: int
    applied: int
    # Routes held back because they name a partition the data topic does not have (yet).
    out_of_range: int = 0
    # Older routes found after newer ones (skipped, and the worker writes the route again).
    out_of_order: int = 0


class RouteCache:
    """Routes by (data topic, tenant), rebuilt from the compacted routes topic by a background thread.

    Readers never block: ``get`` is a dictionary lookup, and every update replaces a whole
    immutable Route, so a reader sees either the old or the new one.
    """

    def __init__(
        self,
        consumer_conf: dict[str, Any],
        codec: RouteCodec,
        routes_topic: str,
        name: str = "route-cache",
    ) -> None:
        self._conf = cache_consumer_config(consumer_conf)
        self._codec = codec
        self._topic = routes_topic
        self._name = name
        self._routes: dict[str, dict[str, Route]] = {}
        self._listeners: list[RouteListener] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._position = 0
        self._end_at_start = -1
        self._stale = 0
        self._applied = 0
        self._gc = GcPause()
        self._on_stop: list[Callable[[], None]] = []
        self._consumer: Consumer | None = None  # the cache thread's, for metadata requests
        # Data topic -> partition count (_ABSENT: not on the broker), as last asked.
        self._counts: dict[str, int] = {}
        self._counts_at = -float("inf")
        self._poison = PoisonBook(routes_topic, self.get, self._ready)
        self._deferred = DeferredRoutes(self.get, self._poison, first_retry_s=METADATA_MIN_INTERVAL_S)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> RouteCache:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("route cache: a stop callback failed")

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` when the cache stops (at once if it has): for resources that
        serve the cache's owner and must not outlive it, such as a metrics client."""
        if self._stop.is_set():
            callback()
        else:
            self._on_stop.append(callback)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once every route that existed at start has been read (the end offsets seen then)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set():
            if self._failure is not None:
                raise RuntimeError(f"route cache stopped: {self._failure}") from self._failure
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._ready.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    # -- reading -------------------------------------------------------------------------------
    def get(self, topic: str, tenant: str) -> Route | None:
        routes = self._routes.get(topic)
        return None if routes is None else routes.get(tenant)

    def routes_for_topic(self, topic: str) -> dict[str, Route] | None:
        """The live per-tenant dict of one topic, for hot paths that look up many tenants."""
        return self._routes.get(topic)

    @property
    def routes_by_topic(self) -> dict[str, dict[str, Route]]:
        """The live dict of those dicts (topic -> tenant -> Route), for the producer's hot path,
        which saves a call per record by holding it. Read only: the cache thread owns it."""
        return self._routes

    def __iter__(self) -> Iterator[Route]:
        for routes in list(self._routes.values()):
            yield from list(routes.values())

    def __len__(self) -> int:
        return sum(len(r) for r in list(self._routes.values()))

    def add_listener(self, listener: RouteListener) -> None:
        """Called from the cache thread after each applied change (route None = tombstone)."""
        self._listeners.append(listener)

    def add_poison_listener(self, listener: PoisonListener) -> None:
        """Called from the cache thread with (topic, tenant, route kept, reason) when the newest
        record under a live route's key is poison (undecodable, or a route Route.validate
        refuses): at once while tailing, and after the first catch-up for the keys still in
        that state. The cache keeps serving the route; the single writer should write it
        again, so that compaction keeps a good record under the key."""
        self._poison.add_listener(listener)

    def poisoned(self) -> dict[str, str]:
        """Route key -> reason, for live routes whose newest record is poison."""
        return dict(self._poison.reasons)

    def stats(self) -> CacheStats:
        return CacheStats(
            routes=len(self),
            position=self._position,
            end_offset_at_start=self._end_at_start,
            ready=self.ready,
            undecodable=self._poison.undecodable,
            stale_ignored=self._stale,
            applied=self._applied,
            out_of_range=self._deferred.count,
            out_of_order=self._poison.out_of_order,
        )

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            consumer = Consumer(self._conf)
        except KafkaException as exc:
            self._failure = exc
            log.error("route cache: cannot create consumer: %s", exc)
            return
        self._consumer = consumer
        try:
            self._consume(consumer)
        except BaseException as exc:  # the producer must learn why its routes stopped updating
            self._failure = exc
            log.exception("route cache on %s stopped", self._topic)
        finally:
            self._consumer = None
            consumer.close()

    def _consume(self, consumer: Consumer) -> None:
        tp = TopicPartition(self._topic, 0)
        while not self._stop.is_set():
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=5.0)
                break
            except KafkaException as exc:
                log.warning("route cache: waiting for %s: %s", self._topic, exc)
                self._stop.wait(1.0)
        else:
            return
        self._end_at_start = high
        if high <= 0:
            self._ready.set()
        consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        if not self._ready.is_set():
            self._gc.hold()
            try:
                self._catch_up(consumer)
            finally:
                self._gc.release()
        self._tail(consumer)

    def _catch_up(self, consumer: Consumer) -> None:
        """Reads up to the end offset seen at start in big batches, then sets ready."""
        consume, stop, end = consumer.consume, self._stop, self._end_at_start
        while not stop.is_set():
            self._handle(consume(num_messages=10_000, timeout=0.1))
            if self._position >= end:
                self._ready.set()
            if self._ready.is_set():
                self._poison.tell_all()
                return

    def _tail(self, consumer: Consumer) -> None:
        # Waiting for a whole batch would hold every change for the full timeout (propagation
        # p99 ~100 ms): wake on the first record, then take whatever else is already queued.
        consume, stop = consumer.consume, self._stop
        while not stop.is_set():
            messages = consume(num_messages=1, timeout=0.1)
            if messages:
                self._handle(messages)
                self._handle(consume(num_messages=10_000, timeout=0))
            if self._deferred.pending:
                self._retry_deferred()

    def _handle(self, messages: list[Message]) -> None:  # noqa: C901 (hot loop, inlined)
        # _apply inlined for the common record (a route for a topic already held): a rebuild
        # runs this a million times. Everything else (poison, registry trouble, tombstones, a
        # first topic) goes through _apply, which decodes again: rare, and it has the rules.
        decode = self._codec.decode
        by_topic = self._routes
        counts = self._counts
        monotonic = time.monotonic
        # These dicts and the list are only ever changed in place: held for the batch.
        poisoned, pending, listeners = self._poison.reasons, self._deferred.pending, self._listeners
        position = self._position
        applied = stale = 0
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        position = message.offset() or position
                        self._position = position
                        self._ready.set()
                    else:
                        log.warning("route cache: %s", error)
                    continue
                offset = message.offset() or 0
                position = offset + 1
                key, value = message.key(), message.value()
                try:
                    topic, tenant, route = decode(key, value)
                    routes = by_topic[topic]
                except (DecodeError, RegistryUnavailable, KeyError):
                    self._apply(key, value, offset)
                    continue
                if poisoned or pending:  # rare: skip two lookups otherwise
                    self._superseded(topic, tenant)
                if route is None:
                    self._store(topic, tenant, None)
                    continue
                current = routes.get(tenant)
                if current is not None and route.epoch <= current.epoch and not _ends_drain(current, route):
                    stale += 1
                    if route != current:
                        self._poison.skip_older(key, route, current, offset)
                    continue
                # _fits' first tests inline; the rest (asking the broker) stays there
                count = counts.get(topic)
                if count == _ABSENT:  # a topic the broker did not list: ask again once due
                    if monotonic() - self._counts_at >= METADATA_MIN_INTERVAL_S and not (self._fits(route)):
                        continue
                elif (
                    count is None
                    or max(route.partitions) >= count
                    or (route.previous_partitions and max(route.previous_partitions) >= count)
                ) and not self._fits(route):
                    continue
                routes[tenant] = route
                applied += 1
                if listeners:
                    self._notify(topic, tenant, route)
        finally:
            self._position = position
            self._applied += applied
            self._stale += stale

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        while True:
            try:
                topic, tenant, route = self._codec.decode(key, value)
                break
            except DecodeError as exc:
                self._poison.skip_undecodable(key, offset, exc)
                return
            except RegistryUnavailable as exc:
                # Skipping would lose a route: wait for the registry instead, however long that
                # takes, so give the collector back to the rest of the process meanwhile.
                self._gc.release()
                log.warning("route cache: %s; retrying", exc)
                if self._stop.wait(1.0):
                    return
        self._superseded(topic, tenant)
        self._store(topic, tenant, route, offset)

    def _store(self, topic: str, tenant: str, route: Route | None, offset: int = -1) -> None:
        routes = self._routes.get(topic)
        if route is None:
            if routes is not None and routes.pop(tenant, None) is not None:
                self._applied += 1
                self._notify(topic, tenant, None)
            return
        if routes is None:
            routes = self._routes.setdefault(topic, {})
        current = routes.get(tenant)
        if current is not None and route.epoch <= current.epoch and not _ends_drain(current, route):
            self._stale += 1
            if route != current:
                self._poison.skip_older(route.key.encode("utf-8", "surrogateescape"), route, current, offset)
            return
        if not self._fits(route):
            return
        routes[tenant] = route
        self._applied += 1
        if self._listeners:
            self._notify(topic, tenant, route)

    def _superseded(self, topic: str, tenant: str) -> None:
        """A decodable record under the key: older poison and deferred routes are behind it."""
        poisoned, pending = self._poison.reasons, self._deferred.pending
        if poisoned:
            poisoned.pop(route_key(topic, tenant), None)
        if pending:
            pending.pop((topic, tenant), None)

    # -- partitions the data topic does not have (yet) -------------------------------------------
    def _fits(self, route: Route) -> bool:
        """Whether the route's partitions exist; if not, defers it and the tenant keeps the route
        it had (a move to partitions nobody can write would skip its drain, or hash it).

        The broker is asked only when a route names a partition beyond the count known here,
        at most every METADATA_MIN_INTERVAL_S: one request per such change, not per record.
        _handle repeats the first tests inline: a change here is a change there."""
        highest = max(route.partitions)
        if route.previous_partitions:
            highest = max(highest, max(route.previous_partitions))
        count = self._counts.get(route.topic)
        if count is not None and highest < count:
            return True
        if count == _ABSENT and time.monotonic() - self._counts_at < METADATA_MIN_INTERVAL_S:
            return True  # asked less than a second ago: still nothing to check against
        count = self._refresh_counts(route.topic)
        # A topic the broker does not list (or no answer): nothing to check against; producing
        # to it fails on its own (UnknownTopicError).
        if count is None or count == _ABSENT or highest < count:
            return True
        self._deferred.defer(route, count)
        return False

    def _refresh_counts(self, topic: str) -> int | None:
        consumer = self._consumer
        if consumer is not None and time.monotonic() - self._counts_at >= METADATA_MIN_INTERVAL_S:
            self._counts_at = time.monotonic()
            try:
                # All topics: asking for one by name may create it on some brokers.
                metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("route cache: cannot read partition counts: %s", exc)
            else:
                counts = {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
                for known in self._counts:
                    counts.setdefault(known, _ABSENT)
                counts.setdefault(topic, _ABSENT)
                # In place: _handle holds this dict for a whole batch.
                self._counts.clear()
                self._counts.update(counts)
        return self._counts.get(topic)

    def _retry_deferred(self) -> None:
        """Deferred routes stored again once due: applied if their partitions exist now."""
        for route in self._deferred.due(self._counts_at):
            applied, stale = self._applied, self._stale
            self._store(route.topic, route.tenant, route)  # stays deferred if still beyond
            if self._applied != applied or self._stale != stale:
                self._deferred.settled(route, applied=self._applied != applied)

    def _notify(self, topic: str, tenant: str, route: Route | None) -> None:
        for listener in self._listeners:
            try:
                listener(topic, tenant, route)
            except Exception:
                log.exception("route listener failed")


def _ends_drain(current: Route, route: Route) -> bool:
    """A move's second write reuses the draining route's epoch (see control.drain)."""
    return (
        route.epoch == current.epoch
        and current.status is RouteStatus.DRAINING
        and route.status is RouteStatus.ACTIVE
    )
