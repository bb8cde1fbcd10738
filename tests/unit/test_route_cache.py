"""RouteCache without a broker: the rebuild's fast paths (routes/wire.py, the partition-count
checks inlined in _handle) keep every rule of the general path. Fed real ``Message`` objects,
as its consumer would; the registry is confluent-kafka's mock:// one."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import sys
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Message
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.client import cache as cache_module
from routing_app.client.cache import RouteCache
from routing_app.codec import RegistryUnavailable
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import RouteStatus

ROUTES = "routing.routes"


def new_cache(
    registry: SchemaRegistryClient | None = None, *, fast_reader: bool = True
) -> tuple[RouteCache, RouteCodec]:
    registry = registry or SchemaRegistryClient.new_client({"url": f"mock://cache-{uuid.uuid4().hex}"})
    codec = RouteCodec(registry, ROUTES, fast_reader=fast_reader)
    # Never started: no consumer; partition counts are set by the tests.
    cache = RouteCache({"bootstrap.servers": "127.0.0.1:1"}, codec, ROUTES)
    return cache, codec


def messages(records: list[tuple[bytes, bytes | None]], first_offset: int = 0) -> list[Message]:
    return [
        Message(topic=ROUTES, partition=0, offset=first_offset + i, key=key, value=value)
        for i, (key, value) in enumerate(records)
    ]


def key(route: Route) -> bytes:
    return RouteCodec.encode_key(route.topic, route.tenant)


def a_topic_history(codec: RouteCodec, seed: int, tenants: int = 12) -> list[tuple[bytes, bytes | None]]:
    """Routes of a few tenants over time, as a routes topic holds them: newer and older epochs,
    drains and their ends, tombstones, and poison of every kind among them."""
    rng = random.Random(seed)
    records: list[tuple[bytes, bytes | None]] = []
    epochs: dict[str, int] = {}
    for _ in range(400):
        tenant = f"t{rng.randrange(tenants)}"
        epoch = max(0, epochs.get(tenant, 0) + rng.choice([1, 1, 1, 0, -1]))
        epochs[tenant] = max(epoch, epochs.get(tenant, 0))
        route = Route(
            "orders",
            tenant,
            tuple(rng.sample(range(6), rng.randint(1, 2))),
            epoch,
            status=rng.choice(list(RouteStatus)),
            updated_at_ms=1_700_000_000_000 + rng.randrange(3),
            decided_by=rng.choice(["planner", "alice"]),
        )
        kind = rng.randrange(10)
        encoded = codec.encode(route)
        value: bytes | None = encoded
        if kind == 0:
            value = None  # tombstone
        elif kind == 1:
            value = encoded[: rng.randrange(5, len(encoded))]  # cut short
        elif kind == 2:
            where = rng.randrange(5, len(encoded))
            value = encoded[:where] + bytes([rng.randrange(256)]) + encoded[where + 1 :]
        elif kind == 3:
            value = codec.encode(Route("orders", tenant, (1, 1), epoch + 1))  # invalid route
        elif kind == 4:
            value = codec.encode(Route("orders", "someone-else", (1,), epoch + 1))
        records.append((key(route), value))
    return records


def test_a_rebuild_reads_the_same_table_with_and_without_the_fast_reader() -> None:
    for seed in range(5):
        registry = SchemaRegistryClient.new_client({"url": f"mock://cache-{uuid.uuid4().hex}"})
        fast, fast_codec = new_cache(registry)
        slow, slow_codec = new_cache(registry, fast_reader=False)
        history = a_topic_history(fast_codec, seed)
        for cache in (fast, slow):
            cache._counts["orders"] = 6
            for start in range(0, len(history), 64):
                cache._handle(messages(history[start : start + 64], start))
        assert fast_codec.fast_path and not slow_codec.fast_path
        assert {r.key: r for r in fast} == {r.key: r for r in slow}
        assert fast.stats() == slow.stats()
        assert fast.poisoned() == slow.poisoned()
        assert fast.stats().undecodable > 0 and fast.stats().stale_ignored > 0


def catch_up_lazily(
    cache: RouteCache, history: list[tuple[bytes, bytes | None]], rng: random.Random, tail_from: int
) -> list[tuple[str, str, Route | None]]:
    """What RouteCache._catch_up and _tail do, with readers' lookups in between: the records
    before ``tail_from`` kept as bytes, the rest tailed while the kept ones settle."""
    looked_up: list[tuple[str, str, Route | None]] = []
    cache.keeps_bytes = True
    for start in range(0, tail_from, 32):
        cache._keep(messages(history[start : min(start + 32, tail_from)], start))
        tenant = f"t{rng.randrange(60)}"
        looked_up.append(("orders", tenant, cache.get("orders", tenant)))
    assert cache._learn_schemas()
    cache._ready.set()
    for start in range(tail_from, len(history), 16):
        cache._handle(messages(history[start : start + 16], start))
        cache._settle_some(7)
        tenant = f"t{rng.randrange(60)}"
        looked_up.append(("orders", tenant, cache.get("orders", tenant)))
    cache.settle()
    return looked_up


def hear(heard: list[tuple[str, str, Route | None]], topic: str, tenant: str, route: Route | None) -> None:
    heard.append((topic, tenant, route))


def test_a_rebuild_kept_as_bytes_settles_to_the_table_read_record_by_record() -> None:
    """Every rule of a record read while tailing (epochs, poison, drains' ends, tombstones,
    partition counts) holds for records kept as bytes, whether a reader's lookup or the
    settling decodes them, and whatever the cache tails meanwhile."""
    for seed in range(12):
        rng = random.Random(seed)
        registry = SchemaRegistryClient.new_client({"url": f"mock://cache-{uuid.uuid4().hex}"})
        lazy, codec = new_cache(registry)
        eager, _ = new_cache(registry)
        # Few tenants: most keys are read many times; many: most records are their key's only one.
        history = a_topic_history(codec, seed, tenants=rng.choice([12, 60, 400]))
        heard: list[tuple[str, str, Route | None]] = []
        lazy.add_listener(functools.partial(hear, heard))
        for cache in (lazy, eager):
            cache._counts["orders"] = 5  # some routes name partition 5: held back
        looked_up = catch_up_lazily(lazy, history, rng, tail_from=rng.randrange(len(history)))
        for start in range(0, len(history), 64):
            eager._handle(messages(history[start : start + 64], start))
        assert lazy._settled.is_set()
        assert {r.key: r for r in lazy} == {r.key: r for r in eager}
        # Routes kept as bytes are counted as applied when settled, and again once looked up.
        assert dataclasses.replace(lazy.stats(), applied=0, undecoded=0) == dataclasses.replace(
            eager.stats(), ready=True, applied=0
        )
        assert lazy.poisoned() == eager.poisoned()
        assert lazy._deferred.pending == eager._deferred.pending
        # A lookup never saw a route older than the one the table held at that point.
        for topic, tenant, seen in looked_up:
            final = lazy.get(topic, tenant)
            if seen is not None and final is not None:
                assert seen.epoch <= final.epoch
        # The listeners heard of every drain under way, however its route was decoded.
        draining = {r.key for r in lazy if r.status is RouteStatus.DRAINING}
        told = {f"{t}/{n}" for t, n, r in heard if r is not None and r.status is RouteStatus.DRAINING}
        assert draining and draining <= told


def test_a_lookup_while_catching_up_decodes_the_route_and_the_next_record_follows_it() -> None:
    cache, codec = new_cache()
    cache._counts["orders"] = 6
    first, second = Route("orders", "acme", (1,), 1), Route("orders", "acme", (2,), 2)
    other = Route("orders", "beta", (3,), 1)
    cache.keeps_bytes = True
    cache._keep(messages([(key(first), codec.encode(first)), (key(other), codec.encode(other))]))
    assert cache.stats().routes == 2 and cache.stats().undecoded == 2
    assert cache.routes_by_topic == {}
    assert cache.get("orders", "acme") == first  # decoded on lookup
    cache._keep(messages([(key(second), codec.encode(second))], 2))
    assert cache.get("orders", "acme") == second
    assert cache.get("orders", "nobody") is None
    cache._ready.set()
    cache.settle()
    # A plain active route nobody looked up stays bytes; a lookup still finds it.
    assert cache.routes_by_topic == {"orders": {"acme": second}}
    assert cache.stats().undecoded == 1 and cache.get("orders", "beta") == other
    assert {r.tenant: r for r in cache} == {"acme": second, "beta": other} == cache.routes_for_topic("orders")
    assert cache.stats().position == 3 and cache.stats().routes == 2


def test_routes_beyond_a_known_partition_count_are_held_back() -> None:
    cache, codec = new_cache()
    cache._counts["orders"] = 4
    first = Route("orders", "acme", (1,), 1)
    beyond = Route("orders", "acme", (5,), 2)
    leaving_beyond = Route("orders", "acme", (2,), 3, status=RouteStatus.DRAINING, previous_partitions=(7,))
    within = Route("orders", "acme", (3,), 4)
    records: list[tuple[bytes, bytes | None]] = [
        (key(r), codec.encode(r)) for r in (first, beyond, leaving_beyond)
    ]
    cache._handle(messages(records))
    assert cache.get("orders", "acme") == first
    assert cache.stats().out_of_range == 2
    cache._handle(messages([(key(within), codec.encode(within))], 3))
    assert cache.get("orders", "acme") == within


class Broker:
    """Stands in for _refresh_counts (asks at most every METADATA_MIN_INTERVAL_S, else answers
    from what it has): what the broker would answer, and how often it is asked."""

    def __init__(self, cache: RouteCache, answer: dict[str, int]) -> None:
        self.asked = 0
        self._cache = cache
        self._answer = answer

    def __call__(self, topic: str) -> int | None:
        cache = self._cache
        if time.monotonic() - cache._counts_at >= cache_module.METADATA_MIN_INTERVAL_S:
            self.asked += 1
            cache._counts_at = time.monotonic()
            cache._counts.update(self._answer)
        return cache._counts.get(topic)


def test_a_topic_the_broker_did_not_list_is_asked_about_again_only_once_due(monkeypatch: Any) -> None:
    cache, codec = new_cache()
    absent = cache_module._ABSENT
    cache._counts["orders"] = absent
    cache._counts_at = time.monotonic()
    broker = Broker(cache, {"orders": absent})
    monkeypatch.setattr(cache, "_refresh_counts", broker)
    routes = [Route("orders", f"t{i}", (9,), 1) for i in range(50)]
    cache._handle(messages([(key(r), codec.encode(r)) for r in routes]))
    # Nothing to check against, asked a moment ago: every route is taken, nobody is asked.
    assert len(cache) == 50 and broker.asked == 0
    # Due again, and the topic exists now with 4 partitions: partition 9 is beyond them.
    cache._counts_at -= cache_module.METADATA_MIN_INTERVAL_S
    broker._answer = {"orders": 4}
    later = [Route("orders", f"t{i}", (9,), 2) for i in range(3)] + [Route("orders", "t3", (2,), 2)]
    cache._handle(messages([(key(r), codec.encode(r)) for r in later], 50))
    assert broker.asked == 1
    assert cache.stats().out_of_range == 3
    assert [cache.get("orders", f"t{i}").epoch for i in range(4)] == [1, 1, 1, 2]  # type: ignore[union-attr]


def test_lookups_racing_the_settling_and_the_tail_never_miss_a_route_nor_go_back() -> None:
    """Readers on other threads while the cache thread settles and tails: a tenant that has a
    route is never found without one, and never with an older one than a lookup saw before.
    Half the lookups go to the tenant being tailed at that moment, the other half anywhere."""
    cache, codec = new_cache()
    cache._counts["orders"] = 6
    tenants = [f"t{i}" for i in range(4_000)]
    cache.keeps_bytes = True
    cache._keep(messages([(key(r), codec.encode(r)) for r in (Route("orders", t, (1,), 1) for t in tenants)]))
    assert cache._learn_schemas()
    cache._ready.set()
    newer = [Route("orders", t, (2,), 2) for t in tenants[::4]]
    tailing = [tenants[0]]
    failures: list[str] = []
    stop = threading.Event()

    def read(seed: int) -> None:
        rng, seen = random.Random(seed), dict.fromkeys(tenants, 0)
        while not stop.is_set():
            tenant = tailing[0] if rng.random() < 0.5 else rng.choice(tenants)
            route = cache.get("orders", tenant)
            if route is None or route.epoch < seen[tenant]:
                failures.append(f"{tenant}: {route} after epoch {seen[tenant]}")
                return
            seen[tenant] = route.epoch

    def tail(offset: int, route: Route) -> None:
        tailing[0] = route.tenant
        cache._handle(messages([(key(route), codec.encode(route))], offset))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    readers = [threading.Thread(target=read, args=(seed,)) for seed in range(2)]
    try:
        for reader in readers:
            reader.start()
        offsets = itertools.count(len(tenants))
        for route in newer[: len(newer) // 2]:  # while settling
            cache._settle_some(10)
            tail(next(offsets), route)
        cache.settle()
        for route in newer[len(newer) // 2 :]:  # once settled: applied entries may go
            tail(next(offsets), route)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        sys.setswitchinterval(interval)
    assert not failures, failures[:3]
    assert len(cache) == len(tenants)
    assert {r.epoch for r in cache} == {1, 2}


def test_a_tailed_record_waiting_for_the_registry_never_blocks_a_lookup(monkeypatch: Any) -> None:
    """The registry is down for a record tailed after ready: the cache thread waits for it
    (skipping would lose a route), but not while holding what lookups of kept routes take."""
    cache, codec = new_cache()
    cache._counts["orders"] = 6
    routes = [Route("orders", f"t{i}", (1,), 1) for i in range(100)]
    cache.keeps_bytes = True
    cache._keep(messages([(key(r), codec.encode(r)) for r in routes]))
    assert cache._learn_schemas()
    cache._ready.set()
    cache.settle()
    assert cache.keeps_bytes  # plain routes nobody looked up stay bytes
    decode, unreadable = codec.decode, b"\x00\x00\x00\x03\xe7 a schema the registry cannot serve now"

    def registry_down(k: bytes | None, v: bytes | None) -> Any:
        if v == unreadable:
            raise RegistryUnavailable("schema registry unreachable")
        return decode(k, v)

    monkeypatch.setattr(codec, "decode", registry_down)
    tail = threading.Thread(target=cache._handle, args=(messages([(b"orders/other", unreadable)], 100),))
    tail.start()
    try:
        time.sleep(0.2)  # the cache thread is waiting for the registry
        assert tail.is_alive()
        found: list[Route | None] = []
        reader = threading.Thread(target=lambda: found.append(cache.get("orders", "t5")))
        reader.start()
        reader.join(2)
        assert found == [routes[5]]
    finally:
        cache._stop.set()
        tail.join(5)


def test_a_router_on_a_cache_still_settling_hashes_by_the_kept_hash_base() -> None:
    """Unrouted keys hash by the topic's hash base (topics expand) whether the base is still
    bytes, decoded by the lookup, or settled; routed tenants follow their kept routes."""
    from confluent_kafka import murmur2

    from routing_app.client.router import Router
    from routing_app.routes.model import hash_base_route

    cache, codec = new_cache()
    cache._counts["orders"] = 24
    base = hash_base_route("orders", 12, 1, reason="expand", now_ms=1, decided_by="test")
    pinned = Route("orders", "pinned", (20,), 1)
    cache.keeps_bytes = True
    cache._keep(messages([(key(r), codec.encode(r)) for r in (base, pinned)]))
    assert cache._learn_schemas()
    cache._ready.set()

    class Counts:
        def get(self, topic: str) -> int:
            return 24

        def load(self, topic: str) -> int:
            return 24

    router = Router(Counts(), cache, {})  # type: ignore[arg-type]
    keys = [f"tenant-{i}".encode() for i in range(200)]
    expected = {k: murmur2(k, 12) for k in keys}
    before = {k: router.plain_choice("orders", k, 24) for k in keys[:100]}
    assert before == {k: (expected[k], "hashed") for k in keys[:100]}
    assert router.plain_choice("orders", b"pinned", 24) == (20, "routed")
    cache.settle()
    assert cache.settled and cache.routes_by_topic["orders"].get("") == base  # bases settle into the table
    assert {k: router.partition_for("orders", k)[0] for k in keys} == expected
