"""Bad input without a broker: routes that cannot be followed (item 8), poison under a live
route's key (item 9), usage reports beyond what a producer can send (item 10), and the suite's
check that no Kafka client outlives its test (item 12). The registry is confluent-kafka's
mock:// one; the route cache is fed real ``Message`` objects, as its consumer would be."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.app.codecs import UndecodableRoute, register
from routing_app.app.usage import UsageWindows, usage_limits
from routing_app.client.cache import RouteCache
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.routes import Route, RouteCodec
from routing_app.routes.codec import InvalidRoute
from routing_app.routes.model import RouteStatus
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports
from routing_app.usage.batch import (
    REJECTED_FUTURE,
    REJECTED_INTERVAL,
    REJECTED_MALFORMED,
    REJECTED_NEGATIVE,
    REJECTED_TOO_LARGE,
    UsageLimits,
)
from routing_app.windows import WINDOW_SUMMARY_SCHEMA, WindowSummary
from routing_app.windows.summary import MAX_COUNT, WindowAccumulator
from tests.conftest import LIBRDKAFKA_CLIENT_THREAD, kafka_client_threads, leaked_since

ROUTES = "routing.routes"


def mock_registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://bad-input-{uuid.uuid4().hex}"})


def route(partitions: tuple[int, ...] = (1,), epoch: int = 1, tenant: str = "acme", **changes: Any) -> Route:
    return Route("orders", tenant, partitions, epoch, **changes)


# -- item 8: a route that cannot be followed is poison ------------------------------------------


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (route(()), "names no partitions"),
        (route((-1,)), "partition -1 does not exist"),
        (route((2, 2)), "names a partition twice"),
        (route((1,), epoch=-3), "epoch -3 is negative"),
        (route((1,), status=RouteStatus.DRAINING, previous_partitions=(-2,)), "partition -2 does not exist"),
    ],
)
def test_the_route_codec_refuses_routes_that_cannot_be_followed(bad: Route, problem: str) -> None:
    codec = RouteCodec(mock_registry(), ROUTES)
    good = codec.encode(route())
    value = codec.encode(bad)
    with pytest.raises(InvalidRoute, match=problem) as raised:
        codec.decode(b"orders/acme", value)
    assert isinstance(raised.value, DecodeError)  # poison to every reader: skipped and counted
    # Valid routes go on decoding, including after a shape was refused once.
    assert codec.decode(b"orders/acme", good)[2] == route()
    with pytest.raises(InvalidRoute):
        codec.decode(b"orders/acme", value)


def test_the_route_codec_refuses_a_key_that_names_no_topic() -> None:
    codec = RouteCodec(mock_registry(), ROUTES)
    bad = Route("bad topic!", "acme", (1,), 1)
    with pytest.raises(InvalidRoute, match="is not a Kafka topic name"):
        codec.decode(b"bad topic!/acme", codec.encode(bad))
    with pytest.raises(InvalidRoute, match="is not a Kafka topic name"):
        codec.decode(b"bad topic!/acme", None)


class Listened:
    def __init__(self, cache: RouteCache) -> None:
        self.changes: list[tuple[str, str, Route | None]] = []
        self.poison: list[tuple[str, str, Route, str]] = []
        cache.add_listener(lambda t, n, r: self.changes.append((t, n, r)))
        cache.add_poison_listener(lambda t, n, r, why: self.poison.append((t, n, r, why)))


def feed(
    cache: RouteCache,
    codec: RouteCodec,
    records: list[tuple[bytes, Route | bytes | None]],
    first_offset: int = 0,
) -> None:
    """Hands the cache these records as its consumer would (route objects are encoded)."""
    messages = []
    for i, (key, value) in enumerate(records):
        raw = codec.encode(value) if isinstance(value, Route) else value
        messages.append(Message(topic=ROUTES, partition=0, offset=first_offset + i, key=key, value=raw))
    cache._handle(messages)


def new_cache() -> tuple[RouteCache, RouteCodec]:
    codec = RouteCodec(mock_registry(), ROUTES)
    # Never started: no consumer, so no partition counts either (the real stack checks those).
    cache = RouteCache({"bootstrap.servers": "127.0.0.1:1"}, codec, ROUTES)
    cache._ready.set()
    return cache, codec


def test_the_cache_keeps_a_tenants_route_when_an_invalid_one_follows() -> None:
    cache, codec = new_cache()
    heard = Listened(cache)
    feed(cache, codec, [(b"orders/acme", route((1,), epoch=1))])
    # Newer epochs, so before validation each of them replaced the route: [] made produce()
    # fail (max() of nothing), [-1] sent the tenant to librdkafka's choice without a drain.
    feed(
        cache,
        codec,
        [
            (b"orders/acme", route((), epoch=2)),
            (b"orders/acme", route((-1,), epoch=3)),
            (b"orders/acme", route((4, 4), epoch=4)),
        ],
        first_offset=1,
    )
    assert cache.get("orders", "acme") == route((1,), epoch=1)
    assert cache.stats().undecodable == 3
    assert cache.stats().position == 4
    assert [r for _, _, r in heard.changes] == [route((1,), epoch=1)]
    # A valid newer route still applies.
    feed(cache, codec, [(b"orders/acme", route((5,), epoch=5))], first_offset=4)
    assert cache.get("orders", "acme") == route((5,), epoch=5)


def test_poison_under_a_live_key_is_reported_until_a_good_record_follows() -> None:
    cache, codec = new_cache()
    heard = Listened(cache)
    good = route((1,), epoch=7)
    feed(cache, codec, [(b"orders/acme", good), (b"orders/other", route((2,), tenant="other"))])
    feed(
        cache,
        codec,
        [(b"orders/acme", b"\x00\x00\x00\x00\x01not avro"), (b"orders/nobody", b"garbage")],
        first_offset=2,
    )
    assert cache.get("orders", "acme") == good
    # Only the live key: poison under a key without a route loses nothing.
    assert list(cache.poisoned()) == ["orders/acme"]
    assert [(t, n, r) for t, n, r, _ in heard.poison] == [("orders", "acme", good)]
    # The writer writes the same route again (same epoch): stale to the cache, and the key is
    # no longer poisoned.
    feed(cache, codec, [(b"orders/acme", good)], first_offset=4)
    assert cache.poisoned() == {}
    assert cache.get("orders", "acme") == good
    assert len(heard.poison) == 1


def test_poison_read_while_catching_up_is_reported_once_ready_if_still_newest() -> None:
    codec = RouteCodec(mock_registry(), ROUTES)
    cache = RouteCache({"bootstrap.servers": "127.0.0.1:1"}, codec, ROUTES)
    heard = Listened(cache)
    feed(
        cache,
        codec,
        [
            (b"orders/acme", route((1,), epoch=2)),
            (b"orders/acme", route((), epoch=3)),  # poison, then re-asserted
            (b"orders/acme", route((1,), epoch=2)),
            (b"orders/beta", route((3,), tenant="beta")),
            (b"orders/beta", b"\x00\x00\x00\x00\x01junk"),
        ],
    )
    assert heard.poison == []  # not ready yet: the rest of the topic may fix it
    assert list(cache.poisoned()) == ["orders/beta"]


# -- item 9: the worker's table restore keeps a key's last good route --------------------------


def restore(codec: RouteCodec, records: list[tuple[bytes, bytes | None]]) -> tuple[dict[str, Any], Any]:
    """What a Faust table recovering from these changelog records holds: each key is decoded,
    then its value (not for a tombstone), and the value is stored under the key."""
    from faust.serializers import codecs

    values = register(codec)
    keys = codecs.get_codec("routing-utf8-key")
    table: dict[str, Any] = {}
    for key, value in records:
        k = keys.loads(key)
        if value is None:
            table.pop(k, None)
        else:
            table[k] = values.loads(value)
    return table, values


def test_table_restore_keeps_the_last_good_route_under_poison() -> None:
    codec = RouteCodec(mock_registry(), ROUTES)
    good = route((3,), epoch=4)
    table, values = restore(
        codec,
        [
            (b"orders/acme", codec.encode(good)),
            (b"orders/acme", b"\x00\x00\x00\x00\x09not avro"),
            (b"orders/acme", codec.encode(route((-1,), epoch=9))),
            (b"orders/gone", codec.encode(route((2,), tenant="gone"))),
            (b"orders/gone", None),
            (b"orders/gone", b"junk"),  # no good route to keep: skipped as before
            (b"orders/liar", codec.encode(route((2,), tenant="someone-else"))),
        ],
    )
    assert table["orders/acme"] == good  # unpin finds it; the planner sees it
    assert isinstance(table["orders/gone"], UndecodableRoute)  # the tombstone stays a tombstone
    assert isinstance(table["orders/liar"], UndecodableRoute)
    assert values.undecodable == 4
    assert set(values.poisoned) == {"orders/acme", "orders/gone", "orders/liar"}
    values.forget("orders/acme")
    assert "orders/acme" not in values.poisoned


# -- item 10: usage beyond what a producer can send ---------------------------------------------

SIZE_S = 10.0
SIZE = int(SIZE_S * 1000)


class FakeWindowTable:
    """The surface UsageWindows writes to (see test_usage_windows.py)."""

    class _Inner:
        def __init__(self) -> None:
            from faust.windows import TumblingWindow

            self.window = TumblingWindow(SIZE_S, expires=3 * SIZE_S)
            self.data: dict[Any, Any] = {}

    def __init__(self) -> None:
        self.table = self._Inner()
        self.writes = 0

    def __getitem__(self, key: str) -> Any:
        table = self

        class _Set:
            def __setitem__(self, window_range: Any, value: Any) -> None:
                table.writes += 1
                table.table.data[(key, window_range)] = value

        return _Set()


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, value: bytes, headers: Any) -> None:
        self.sent.append(value)


class Worker:
    def __init__(self) -> None:
        registry = mock_registry()
        self.settings = Settings().replace(
            usage_partitions=1, window_s=SIZE_S, window_grace_ms=1000, window_idle_ms=2000
        )
        self.codec = AvroCodec(registry, USAGE_SCHEMA, "usage")
        self.summaries = AvroCodec(registry, WINDOW_SUMMARY_SCHEMA, "control")
        self.control = FakeTopic()
        self.windows = UsageWindows(
            self.settings,
            self.codec,
            self.summaries,
            FakeWindowTable(),
            self.control,  # type: ignore[arg-type]
            "w",
            None,
        )
        self.offset = 0

    def send(self, reports: list[UsageReport] | dict[str, Any]) -> None:
        if isinstance(reports, dict):  # a record as a forger writes it, fields and all
            values = [self.codec.encode(reports)]
        else:
            values = [self.codec.encode(b.to_record()) for b in batch_reports(reports, 1)]
        for value in values:
            asyncio.run(self.windows.on_report(value, 0, self.offset))
            self.offset += 1

    def close_now(self, now_ms: int, monkeypatch: pytest.MonkeyPatch) -> list[WindowSummary]:
        """Every window up to ``now_ms`` closed, by the timer of a later tick."""
        later = now_ms + 2 * SIZE + 5000
        with monkeypatch.context() as patch:
            patch.setattr(time, "time", lambda: later / 1000)
            asyncio.run(self.windows.on_tick({0}))
        return [WindowSummary.from_record(self.summaries.decode(v)) for v in self.control.sent]


def now_ms() -> int:
    return int(time.time() * 1000)


def report(
    records: int,
    nbytes: int = 10,
    *,
    tenant: str = "acme",
    producer: str = "p",
    start: int | None = None,
    end: int | None = None,
    topic: str = "orders",
    partition: int = -1,
) -> UsageReport:
    end = now_ms() if end is None else end
    start = end - 1000 if start is None else start
    return UsageReport(producer, topic, tenant, records, nbytes, start, end, partition)


def test_limits_bound_every_field_of_a_report() -> None:
    limits = UsageLimits(
        max_records_per_s=1000,
        max_bytes_per_s=10_000,
        max_future_ms=500,
        max_interval_ms=5000,
        window_ms=2000,
    )
    now = 1_000_000
    assert limits.interval_problem(now - 1000, now + 500, now) is None
    assert limits.interval_problem(now - 1000, now + 501, now)[0] == REJECTED_FUTURE  # type: ignore[index]
    assert limits.interval_problem(now, now - 1, now)[0] == REJECTED_INTERVAL  # type: ignore[index]
    assert limits.interval_problem(now - 5001, now, now)[0] == REJECTED_INTERVAL  # type: ignore[index]
    assert limits.interval_problem(now - 5000, now, now) is None
    rows = [
        ("orders", "ok", -1, 2000, 20_000, 2000, 1),  # 1 s interval, bounded by the window
        ("orders", "neg", -1, -1, 5, 0, 0),
        ("orders", "bytes", -1, 1, -5, 1, 1),
        ("orders", "many", -1, 2001, 5, 2001, 1),
        ("orders", "fat", -1, 1, 20_001, 1, 1),
        ("bad topic", "x", -1, 1, 1, 1, 1),
        ("orders", "part", -2, 1, 1, 1, 1),
        ("orders", "", 7, 5, 5, 5, 1),
    ]
    kept, refused = limits.bound(rows, now - 1000, now)
    assert [r[1] for r in kept] == ["ok", ""]
    assert [reason for reason, _ in refused] == [
        REJECTED_NEGATIVE,
        REJECTED_NEGATIVE,
        REJECTED_TOO_LARGE,
        REJECTED_TOO_LARGE,
        REJECTED_MALFORMED,
        REJECTED_MALFORMED,
    ]
    assert "orders/many: 2001 records" in refused[2][1]
    # A longer interval allows more, in proportion.
    kept, refused = limits.bound([("orders", "many", -1, 4000, 5, 4000, 1)], now - 4000, now)
    assert len(kept) == 1 and not refused


def test_the_defaults_follow_the_settings() -> None:
    limits = usage_limits(Settings().replace(window_grace_ms=1500, window_s=5.0))
    assert limits.max_future_ms == 1500 and limits.window_ms == 5000
    assert limits.max_records_per_s == 1_000_000


def test_forged_counts_are_refused_and_counted_and_good_reports_still_aggregate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = Worker()
    now = now_ms()
    w.send(
        [
            report(5, tenant="good", end=now),
            report(9 * 10**18, tenant="huge", end=now),
            report(10**18, tenant="big", end=now),
            report(-7, tenant="negative", end=now),
        ]
    )
    w.send([report(3, tenant="good", end=now)])
    c = w.windows.counters
    assert c[REJECTED_TOO_LARGE] == 2 and c[REJECTED_NEGATIVE] == 1
    assert c["rejected_reports"] == 3
    assert c["usage_reports"] == 5 and c["reports_aggregated"] == 2
    (summary,) = [s for s in w.close_now(now, monkeypatch) if s.tenants]
    assert summary.tenants == {("orders", "good"): (8, 20)}
    assert summary.producers == ("p",)
    assert c["summary_errors"] == 0


def test_a_report_from_the_future_neither_counts_nor_closes_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    w = Worker()
    now = now_ms()
    w.send([report(5, tenant="good", end=now)])
    hour_ahead = now + 3_600_000
    w.send([report(1, tenant="ahead", producer="skewed", end=hour_ahead)])
    # An interval of a day, ending now, as a forger would write the record.
    w.send(
        {
            "producer_id": "forger",
            "interval_start": now - 86_400_000,
            "interval_end": now,
            "reports": [{"topic": "orders", "tenant": "day", "records": 1, "bytes": 1}],
        }
    )
    c = w.windows.counters
    assert c[REJECTED_FUTURE] == 1 and c[REJECTED_INTERVAL] == 1
    # Stream time did not jump: no window closed, and the open one still takes reports.
    assert w.control.sent == []
    w.send([report(2, tenant="good", end=now)])
    summaries = w.close_now(now, monkeypatch)
    (summary,) = [s for s in summaries if s.tenants]
    assert summary.tenants == {("orders", "good"): (7, 20)}
    # The refused producers are alive all the same: drains wait for their answers.
    assert {"skewed", "forger", "p"} <= {p for s in summaries for p in s.producers}
    # Closed up to the tick's clock, not an hour ahead.
    assert max(s.window_end for s in summaries) <= now + 2 * SIZE + 5000


def test_refusals_are_logged_once_per_producer_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    w = Worker()
    for _ in range(5):
        w.send([report(-1, tenant="neg", producer="bad")])  # in the window of now
        w.send([report(1, producer="bad", end=now_ms() + 600_000)])
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "rejected_negative" in warnings[0] and "'bad'" in warnings[0]
    assert "ahead of this worker's clock" in warnings[1]
    assert w.windows.counters["rejected_reports"] == 10


def test_window_totals_beyond_avros_long_are_clamped_not_lost() -> None:
    windows = WindowAccumulator()
    row = ("orders", "acme", 1, MAX_COUNT, MAX_COUNT, 1, 1)
    windows.add_usage(0, 0, "p", [row], 0)
    windows.add_usage(0, 0, "q", [row], 1)
    summary = windows.close(0, 0, SIZE, 1, "timer", "w")
    assert summary.tenants == {("orders", "acme"): (MAX_COUNT, MAX_COUNT)}
    AvroCodec(mock_registry(), WINDOW_SUMMARY_SCHEMA, "control").encode(summary.to_record())


# -- item 12: the suite's check for clients that outlive their test -----------------------------


def test_the_leak_check_sees_a_live_librdkafka_client() -> None:
    before = kafka_client_threads()
    client = Producer({"bootstrap.servers": "127.0.0.1:1", "logger": _quiet})
    try:
        assert leaked_since(before)[LIBRDKAFKA_CLIENT_THREAD] == 1
    finally:
        del client
    assert not leaked_since(before)


class _Quiet:
    def log(self, *_args: Any) -> None:
        pass


_quiet = _Quiet()
