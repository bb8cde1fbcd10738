"""The producer's view of the routing table: the routes topic read from the beginning, then tailed.

RouteCache is the cache thread's lifecycle and the table it keeps. What it consults on the way
lives next to it: its consumer's settings (consumer_config), the poison it skips (poison),
routes deferred for partitions their topic lacks (deferred_routes), the collector paused while
it rebuilds (gc_pause).

A rebuild keeps the records it reads as bytes (key -> value) and is ready as soon as it has
read them all: decoding a route costs ten times what reading it does, and a producer needs the
few routes it sends by, not a million. A lookup decodes the record it needs (``get``). After
ready, the cache thread checks the rest between tailed records (settling): each is decoded
once under every rule of a record read while tailing (validation, poison, epochs, partition
counts); a plain active route that passes stays bytes until a lookup needs it (a million
Routes take more memory than their bytes), anything else (a drain under way, a tombstone,
poison, a route beyond its topic's partitions) is applied as read. The listeners hear of a
settled route only if it is draining: a rebuild replays old changes, and what a listener must
act on at once (a producer's hold, a writer's roll call) is a drain still under way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import countOf
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from routing_app.client.consumer_config import cache_consumer_config
from routing_app.client.deferred_routes import DeferredRoutes
from routing_app.client.gc_pause import GcPause
from routing_app.client.poison import PoisonBook, PoisonListener
from routing_app.codec import DecodeError, RegistryUnavailable
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus, route_key

log = logging.getLogger(__name__)

RouteListener = Callable[[str, str, Route | None], None]

# Partition counts are asked of the broker when a route names a partition beyond what the cache
# knows, at most this often; a route deferred meanwhile is checked again on the next refresh.
METADATA_MIN_INTERVAL_S = 1.0
METADATA_TIMEOUT_S = 5.0
_ABSENT = -1  # partition count of a topic the broker did not list
# Records decoded per turn while settling: a lookup waits at most one turn (a few ms).
SETTLE_BATCH = 1_000
_MISSING = object()
_DRAINING = RouteStatus.DRAINING
# In place of a record read while catching up once its key has a decoded route: a later record
# under the key is applied after it, in order, instead of being kept as bytes. Compared by
# identity; bytes (no route's value starts so) only so that _learn_schemas scans in C.
_DECODED = bytes(bytearray(b"\xff(decoded)"))


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
    # Records read while catching up and kept as bytes: before settled, every one not decoded
    # yet; after, the plain routes no lookup has needed yet.
    undecoded: int = 0


class RouteCache:
    """Routes by (data topic, tenant), rebuilt from the compacted routes topic by a background thread.

    Readers do not wait for the cache thread: ``get`` is a dictionary lookup (until the cache
    has settled, one that may decode the record it needs), and every update replaces a whole
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
        # Records read while catching up, by key, not decoded yet (see the module's text); the
        # lock orders their decoding against the cache thread's later records of the same key.
        self._raw: dict[bytes | None, Any] = {}
        self._raw_lock = threading.RLock()
        # True while _raw may hold routes: a reader that finds no route asks get() then.
        self.keeps_bytes = False
        self._settled = threading.Event()
        self._settling: Iterator[tuple[bytes | None, Any]] | None = None  # over _raw, once ready
        self._marked = 0  # entries of _raw that are _DECODED
        self._at_end = False  # the consumer said so while catching up
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

    @property
    def settled(self) -> bool:
        """Every record kept since the rebuild is checked; hash bases are in the table."""
        return self._settled.is_set()

    def wait_settled(self, timeout: float | None = None) -> bool:
        """True once every record read while catching up is checked (after ready; see the
        module's text)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.wait_ready(timeout):
            return False
        while not self._settled.is_set():
            if self._failure is not None or self._stop.is_set():
                raise RuntimeError(f"route cache stopped before it settled: {self._failure}")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._settled.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    # -- reading -------------------------------------------------------------------------------
    def get(self, topic: str, tenant: str) -> Route | None:
        # The flag first: it turns False only once every kept route is in the table.
        keeps_bytes = self.keeps_bytes
        routes = self._routes.get(topic)
        route = None if routes is None else routes.get(tenant)
        if route is None and keeps_bytes:
            return self._reveal(topic, tenant)
        return route

    def routes_for_topic(self, topic: str) -> dict[str, Route]:
        """The routes of one topic by tenant: a snapshot (routes kept as bytes decoded for it)."""
        prefix = route_key(topic, "").encode("utf-8", "surrogateescape")
        return {r.tenant: r for r in self._snapshot(prefix) if r.topic == topic}

    @property
    def routes_by_topic(self) -> dict[str, dict[str, Route]]:
        """The live dict of those dicts (topic -> tenant -> Route), for the producer's hot path,
        which saves a call per record by holding it. Read only: the cache thread owns it. While
        ``keeps_bytes``, a tenant missing from it may still have a route: ask ``get``."""
        return self._routes

    def settle(self) -> None:
        """Checks every record kept since the rebuild now, on the calling thread (whole views
        need it; the cache thread does it anyway, in turns). Before ready: nothing."""
        # Before ready, a view is partial anyway: what is kept is decoded for it (see _snapshot).
        while self._ready.is_set() and not self._settled.is_set():
            self._settle_some(1_000_000)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._snapshot(b""))

    def __len__(self) -> int:
        """Routes held; before settled, records kept as bytes count as routes (see stats)."""
        return self.stats().routes

    def _snapshot(self, prefix: bytes) -> list[Route]:
        """Every route whose key starts with ``prefix``, those kept as bytes decoded (not kept)."""
        self.settle()
        with self._raw_lock:
            # Copies: the cache thread adds to these without the lock (keys never kept).
            routes = [r for by_tenant in list(self._routes.values()) for r in list(by_tenant.values())]
            decode = self._codec.decode
            for key, value in list(self._raw.items()):  # one step: _keep may add meanwhile
                if value is not None and value is not _DECODED and key is not None and key.startswith(prefix):
                    try:
                        route = decode(key, value)[2]
                    except (DecodeError, RegistryUnavailable):
                        continue  # read after a view before ready: not checked yet
                    if route is not None:
                        routes.append(route)
        return routes

    def add_listener(self, listener: RouteListener) -> None:
        """Called after each applied change (route None = tombstone): from the cache thread, or,
        for a draining route kept as bytes since the rebuild, from the thread whose lookup
        decodes it first (before the lookup returns, so a hold is in place before a send)."""
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
        # Before settled, records kept as bytes count as routes (poison and tombstones too).
        kept = max(len(self._raw) - self._marked, 0)  # read apart from each other, unlocked
        return CacheStats(
            routes=sum(len(r) for r in list(self._routes.values())) + kept,
            position=self._position,
            end_offset_at_start=self._end_at_start,
            ready=self.ready,
            undecodable=self._poison.undecodable,
            stale_ignored=self._stale,
            applied=self._applied,
            out_of_range=self._deferred.count,
            out_of_order=self._poison.out_of_order,
            undecoded=kept,
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
            self._settled.set()
        consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        if not self._ready.is_set():
            self._gc.hold()  # released once settled: settling decodes every route once
            try:
                self._catch_up(consumer)
            except BaseException:
                self._gc.release()
                raise
        try:
            self._tail(consumer)
        finally:
            self._gc.release()

    def _catch_up(self, consumer: Consumer) -> None:
        """Reads up to the end offset seen at start in big batches, then sets ready."""
        consume, stop, end = consumer.consume, self._stop, self._end_at_start
        self.keeps_bytes = True
        while not stop.is_set():
            self._keep(consume(num_messages=10_000, timeout=0.1))
            if self._position >= end or self._at_end:
                if not self._learn_schemas():
                    return  # stopped while the registry was away
                self._ready.set()
            if self._ready.is_set():
                self._poison.tell_all()
                return

    def _tail(self, consumer: Consumer) -> None:
        # Waiting for a whole batch would hold every change for the full timeout (propagation
        # p99 ~100 ms): wake on the first record, then take whatever else is already queued.
        consume, stop = consumer.consume, self._stop
        settled = self._settled.is_set
        while not stop.is_set():
            settling = not settled()
            messages = consume(num_messages=1, timeout=0 if settling else 0.1)
            if messages:
                self._handle(messages)
                self._handle(consume(num_messages=10_000, timeout=0))
            if settling:
                self._settle_some(SETTLE_BATCH)
            if self._deferred.pending:
                self._retry_deferred()

    # -- catching up: records kept as bytes ---------------------------------------------------------
    def _keep(self, messages: list[Message]) -> None:
        """Keeps each record's value under its key, undecoded; a key read twice is decoded
        (both records, in order) so the epoch and poison rules see every record of it."""
        keep = self._raw.setdefault
        last = None
        for message in messages:
            if message.error() is not None:
                self._consumer_error(message)
                continue
            key, value = message.key(), message.value()
            if keep(key, value) is not value:
                self._read_twice(key, value, message.offset() or 0)
            last = message
        if last is not None:
            self._position = max(self._position, (last.offset() or 0) + 1)

    def _read_twice(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        with self._raw_lock:
            earlier = self._mark(key)
            if earlier is not _MISSING and earlier is not _DECODED:
                self._apply(key, earlier, -1)
            self._apply(key, value, offset)

    def _mark(self, key: bytes | None) -> Any:
        """The key's entry in _raw becomes _DECODED (its route, if any, is in the table; a later
        record under it is applied after it); returns what it was (_MISSING: none)."""
        raw = self._raw
        earlier = raw.get(key, _MISSING)
        if earlier is not _DECODED:
            raw[key] = _DECODED
            self._marked += 1
        return earlier

    def _unmark(self, key: bytes | None) -> None:
        """Once settled, a marked entry may go (nothing iterates _raw any more): only after its
        route is applied, since a key missing from _raw is looked up without the lock."""
        if self._settled.is_set() and self._raw.pop(key, None) is _DECODED:
            self._marked -= 1

    def _learn_schemas(self) -> bool:
        """Asks the registry, before ready, for each schema id the kept records name: decoding
        them later (a producer's lookup) then never waits for it. False if stopped meanwhile."""
        raw = self._raw
        first = next((v for v in raw.values() if v is not None and v is not _DECODED), None)
        if first is None:
            return True
        headers = {first[:5]: first}
        # Usually every value has the same header: counted in C, a Python loop only if not.
        same = sum(map(bytes.startswith, filter(None, raw.values()), repeat(first[:5])))
        if same != len(raw) - countOf(raw.values(), None) - self._marked:
            for value in filter(None, raw.values()):
                if value is not _DECODED and value[:5] not in headers:
                    headers[value[:5]] = value
        return all(self._await_schema(value) for value in headers.values())

    def _await_schema(self, value: bytes | None) -> bool:
        """Asks the registry for the schema ``value`` names, if not known yet, until it answers
        (outside _raw_lock: readers must not wait for the registry). False if stopped."""
        values = self._codec.values
        while values.needs_registry(value):
            try:
                values.decode(value)
            except DecodeError:
                break  # poison: judged when its record is applied
            except RegistryUnavailable as exc:
                self._gc.release()
                log.warning("route cache: %s; retrying", exc)
                if self._stop.wait(1.0):
                    return False
        return True

    def _apply_kept(self, key: bytes | None) -> None:
        """Applies the record kept under ``key`` (under _raw_lock), marked first so that a lookup
        of the key from inside _apply reads the table; kept again if applying it failed."""
        value = self._mark(key)
        try:
            self._apply(key, value, -1, settling=True)
        except BaseException:
            self._raw[key] = value
            self._marked -= 1
            raise

    def _reveal(self, topic: str, tenant: str) -> Route | None:
        """A reader's lookup of a route that may still be bytes: decoded now, under the lock."""
        key = route_key(topic, tenant).encode("utf-8", "surrogateescape")
        if key not in self._raw:
            # Never kept, or kept and applied long ago (an entry goes only after it is applied):
            # the table has the answer. The common case of an unrouted tenant, without the lock.
            routes = self._routes.get(topic)
            return None if routes is None else routes.get(tenant)
        with self._raw_lock:
            if self._raw.get(key, _DECODED) is not _DECODED:
                self._apply_kept(key)
                self._unmark(key)
            routes = self._routes.get(topic)
            return None if routes is None else routes.get(tenant)

    def _settle_some(self, budget: int) -> None:
        """Checks up to ``budget`` kept records (see the module's text)."""
        with self._raw_lock:
            raw = self._raw
            if self._settled.is_set():
                return
            if not self._ready.is_set():
                # Still catching up: decoded in place, the next record of each key follows.
                for key, value in list(raw.items()):
                    if value is not _DECODED:
                        self._apply_kept(key)
                return
            if self._settling is None:
                # Safe across turns: from ready on, entries are only marked, never added or
                # removed, until settled.
                self._settling = iter(raw.items())
            for checked, (key, value) in enumerate(self._settling, 1):
                if value is not _DECODED:
                    self._settle_one(key, value)
                if checked >= budget:
                    return
            self._settling = None
            if self._marked * 2 > len(raw):
                # Marked entries only hold their keys: a copy without them frees that.
                compacted = {k: v for k, v in raw.items() if v is not _DECODED}
                self._marked = 0
                self._raw = compacted
            self.keeps_bytes = bool(self._raw)
            self._settled.set()
            self._gc.release()

    def _settle_one(self, key: bytes | None, value: bytes | None) -> None:
        """A plain active route whose partitions exist stays bytes (counted as applied); any
        other record is applied as read (under _raw_lock, after ready)."""
        route: Route | None = None
        if value is not None:
            try:
                route = self._codec.decode(key, value)[2]
            except (DecodeError, RegistryUnavailable):
                route = None  # _apply has the rules for those
        # A topic's hash base goes to the table: once settled, the router need not look for it
        # among the bytes on every record of an unrouted tenant.
        if route is not None and route.status is RouteStatus.ACTIVE and route.tenant != HASH_BASE_TENANT:
            count = self._counts.get(route.topic)
            if count is None:
                count = self._refresh_counts(route.topic)  # at most once a second
            # Unknown, or a topic the broker does not list: nothing to check against (see _fits).
            if count is None or count == _ABSENT or _highest(route) < count:
                self._applied += 1
                return
        self._apply_kept(key)

    def _consumer_error(self, message: Message) -> None:
        error = message.error()
        if error is not None and error.code() == KafkaError._PARTITION_EOF:
            # The end offset may count records no consumer sees (transaction markers).
            self._position = max(self._position, message.offset() or 0)
            self._at_end = True
        else:
            log.warning("route cache: %s", error)

    # -- tailing --------------------------------------------------------------------------------
    def _handle(self, messages: list[Message]) -> None:
        if self.keeps_bytes:
            self._handle_over_kept(messages)
        else:
            self._apply_records(self._records(messages))

    def _records(self, messages: list[Message]) -> Iterator[tuple[bytes | None, bytes | None, int]]:
        for message in messages:
            if message.error() is not None:
                self._consumer_error(message)
                continue
            offset = message.offset() or 0
            self._position = offset + 1
            yield message.key(), message.value(), offset

    def _apply_records(self, records: Iterable[tuple[bytes | None, bytes | None, int]]) -> None:
        """Applies tailed (key, value, offset) records in order.

        _apply inlined for the common record (a route for a topic already held): a busy
        routes topic runs this for every change. Everything else (poison, registry trouble,
        tombstones, a first topic) goes through _apply, which decodes again: rare, and it has
        the rules."""
        decode = self._codec.decode
        by_topic = self._routes
        counts = self._counts
        monotonic = time.monotonic
        # These dicts and the list are only ever changed in place: held for the batch.
        poisoned, pending, listeners = self._poison.reasons, self._deferred.pending, self._listeners
        applied = stale = 0
        try:
            for key, value, offset in records:
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
                elif (count is None or _highest(route) >= count) and not self._fits(route):
                    continue
                routes[tenant] = route
                applied += 1
                if listeners:
                    self._notify(topic, tenant, route)
        finally:
            self._applied += applied
            self._stale += stale

    def _handle_over_kept(self, messages: list[Message]) -> None:
        """Tailed records while routes are kept as bytes: a kept record under the same key is
        applied first."""
        for message in messages:
            if message.error() is not None:
                self._consumer_error(message)
                continue
            key, value, offset = message.key(), message.value(), message.offset() or 0
            if not self._await_schema(value):
                return
            if key in self._raw:  # nothing is added to _raw after ready: no lock otherwise
                with self._raw_lock:
                    if self._raw.get(key, _DECODED) is not _DECODED:
                        self._apply_kept(key)
                    self._apply(key, value, offset)
                    self._unmark(key)
            else:
                self._apply(key, value, offset)
            self._position = offset + 1

    def _apply(self, key: bytes | None, value: bytes | None, offset: int, settling: bool = False) -> None:
        while True:
            try:
                topic, tenant, route = self._codec.decode(key, value)
                break
            except DecodeError as exc:
                self._poison.skip_undecodable(key, offset, exc)
                return
            except RegistryUnavailable as exc:
                if settling:
                    # Kept since the rebuild, whose schema ids were all asked for before ready:
                    # this one was unknown to the registry then (poison). Never wait for the
                    # registry under _raw_lock, which a producer's lookup may be waiting on.
                    self._poison.skip_undecodable(key, offset, DecodeError(f"{exc} (unknown when read)"))
                    return
                # Skipping would lose a route: wait for the registry instead, however long that
                # takes, so give the collector back to the rest of the process meanwhile.
                self._gc.release()
                log.warning("route cache: %s; retrying", exc)
                if self._stop.wait(1.0):
                    return
        self._superseded(topic, tenant)
        self._store(topic, tenant, route, offset, settling)

    def _store(
        self, topic: str, tenant: str, route: Route | None, offset: int = -1, settling: bool = False
    ) -> None:
        """``settling``: a record kept since the rebuild, which readers could already look up:
        news to the listeners only if it is a drain under way (see the module's text)."""
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
        # A hash base too: every hashed key's choice may depend on it (memo cells).
        if self._listeners and (not settling or route.status is _DRAINING or not tenant):
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
        highest = _highest(route)
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
            # Under the lock: lookups that decode kept routes count applied routes too.
            with self._raw_lock:
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


def _highest(route: Route) -> int:
    """The highest partition a route names: where it goes, or, draining, where it leaves."""
    highest = max(route.partitions)
    if route.previous_partitions:
        highest = max(highest, max(route.previous_partitions))
    return highest


def _ends_drain(current: Route, route: Route) -> bool:
    """A move's second write reuses the draining route's epoch (see control.drain)."""
    return (
        route.epoch == current.epoch
        and current.status is RouteStatus.DRAINING
        and route.status is RouteStatus.ACTIVE
    )
