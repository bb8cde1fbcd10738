"""The producer's view of the routing table: the routes topic read from the beginning, then tailed."""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from routing_app.codec import DecodeError, RegistryUnavailable
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import RouteStatus

log = logging.getLogger(__name__)

# Settings a consumer shares with the producer it serves: where the cluster is and how to talk to it.
_SHARED_PREFIXES = (
    "bootstrap.servers", "security.", "sasl.", "ssl.", "client.", "socket.", "broker.",
    "metadata.", "api.version", "reconnect.", "retry.backoff", "connections.", "log_level",
    "debug", "resolve.", "client.dns",
)

RouteListener = Callable[[str, str, Route | None], None]


def consumer_settings_from(producer_conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in producer_conf.items() if k.startswith(_SHARED_PREFIXES)}


@dataclass(frozen=True)
class CacheStats:
    routes: int
    position: int
    end_offset_at_start: int
    ready: bool
    undecodable: int
    stale_ignored: int
    applied: int


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
        self._conf = {
            **consumer_conf,
            # Never committed: every cache starts from the beginning of the routes topic.
            "group.id": f"routing-app-cache-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "fetch.error.backoff.ms": 50,
            # With the default (1000 ms) the fetcher pauses a whole second whenever the local
            # queue passes queued.min.messages, which a rebuild does every 100k routes, and the
            # cache thread then idles with nothing to decode.
            "fetch.queue.backoff.ms": 10,
            # Prefetching 100k records (the default) holds ~40 MB more at the peak of a
            # rebuild; 20k, two fetches' worth, keeps the decoder as busy.
            "queued.min.messages": 20_000,
        }
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
        self._undecodable = 0
        self._stale = 0
        self._applied = 0
        self._holding_gc = False

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

    def stats(self) -> CacheStats:
        return CacheStats(
            routes=len(self),
            position=self._position,
            end_offset_at_start=self._end_at_start,
            ready=self.ready,
            undecodable=self._undecodable,
            stale_ignored=self._stale,
            applied=self._applied,
        )

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            consumer = Consumer(self._conf)
        except KafkaException as exc:
            self._failure = exc
            log.error("route cache: cannot create consumer: %s", exc)
            return
        try:
            self._consume(consumer)
        except BaseException as exc:  # the producer must learn why its routes stopped updating
            self._failure = exc
            log.exception("route cache on %s stopped", self._topic)
        finally:
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
            _gc_pause.hold()
            self._holding_gc = True
            try:
                self._catch_up(consumer)
            finally:
                self._release_gc()
        self._tail(consumer)

    def _release_gc(self) -> None:
        if self._holding_gc:
            self._holding_gc = False
            _gc_pause.release()

    def _catch_up(self, consumer: Consumer) -> None:
        """Reads up to the end offset seen at start in big batches, then sets ready."""
        consume, stop, end = consumer.consume, self._stop, self._end_at_start
        while not stop.is_set():
            self._handle(consume(num_messages=10_000, timeout=0.1))
            if self._position >= end:
                self._ready.set()
            if self._ready.is_set():
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

    def _handle(self, messages: list[Message]) -> None:
        # _apply inlined for the common record (a route for a topic already held): a rebuild
        # runs this a million times. Everything else (poison, registry trouble, tombstones, a
        # first topic) goes through _apply, which decodes again: rare, and it has the rules.
        decode = self._codec.decode
        by_topic = self._routes
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
                if route is None:
                    self._store(topic, tenant, None)
                    continue
                current = routes.get(tenant)
                if current is not None and route.epoch <= current.epoch and not _ends_drain(
                        current, route):
                    stale += 1
                    continue
                routes[tenant] = route
                applied += 1
                if self._listeners:
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
                self._undecodable += 1
                log.warning(
                    "route cache: skipped undecodable record at %s offset %d: %s",
                    self._topic, offset, exc,
                )
                return
            except RegistryUnavailable as exc:
                # Skipping would lose a route: wait for the registry instead, however long that
                # takes, so give the collector back to the rest of the process meanwhile.
                self._release_gc()
                log.warning("route cache: %s; retrying", exc)
                if self._stop.wait(1.0):
                    return
        self._store(topic, tenant, route)

    def _store(self, topic: str, tenant: str, route: Route | None) -> None:
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
            return
        routes[tenant] = route
        self._applied += 1
        if self._listeners:
            self._notify(topic, tenant, route)

    def _notify(self, topic: str, tenant: str, route: Route | None) -> None:
        for listener in self._listeners:
            try:
                listener(topic, tenant, route)
            except Exception:
                log.exception("route listener failed")


def _ends_drain(current: Route, route: Route) -> bool:
    """A move's second write reuses the draining route's epoch (see control.drain)."""
    return (route.epoch == current.epoch and current.status is RouteStatus.DRAINING
            and route.status is RouteStatus.ACTIVE)


class _GcPause:
    """The collector, off while caches rebuild; shared by every cache in the process.

    A rebuild allocates a million long-lived Routes, so the collector runs often, walks ever
    more of them and finds nothing: 1-2 s of a million-route rebuild. It is process-wide: it
    comes back on when the last holder releases it, and only if it was on when the first one
    took it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def hold(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                if gc.get_freeze_count() == 0:
                    # Moves everything allocated meanwhile to the oldest generation without a
                    # collection; re-enabled as is, the next young collections would walk all
                    # of it twice over. Skipped if the application froze objects itself:
                    # unfreeze() would undo that.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


_gc_pause = _GcPause()
