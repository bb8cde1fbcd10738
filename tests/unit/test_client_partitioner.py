"""Partition choice: murmur2 exactly like the Java client, routes, shards and round robin."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.client.partitioner import RoutingPath, choose_partition, java_partition

FAST = settings(max_examples=200, deadline=None, database=None)


# -- reference: a line-by-line port of org.apache.kafka.common.utils.Utils.murmur2 -------------


def _i32(x: int) -> int:
    """Java int overflow: wrap to signed 32 bits."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def _ushr(x: int, n: int) -> int:
    """Java ``>>>`` on an int."""
    return (x & 0xFFFFFFFF) >> n


def ref_murmur2(data: bytes) -> int:
    length = len(data)
    seed = _i32(0x9747B28C)
    m = 0x5BD1E995
    r = 24
    h = _i32(seed ^ length)
    for i in range(length // 4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = _i32(k)
        k = _i32(k * m)
        k = _i32(k ^ _ushr(k, r))
        k = _i32(k * m)
        h = _i32(h * m)
        h = _i32(h ^ k)
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h = _i32(h ^ ((data[tail + 2] & 0xFF) << 16))
    if rest >= 2:
        h = _i32(h ^ ((data[tail + 1] & 0xFF) << 8))
    if rest >= 1:
        h = _i32(h ^ (data[tail] & 0xFF))
        h = _i32(h * m)
    h = _i32(h ^ _ushr(h, 13))
    h = _i32(h * m)
    h = _i32(h ^ _ushr(h, 15))
    return h


def ref_partition(key: bytes, n: int) -> int:
    return (ref_murmur2(key) & 0x7FFFFFFF) % n  # Utils.toPositive(...) % n


# Kafka's UtilsTest.testMurmur2 vectors (signed 32-bit results).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_reference_matches_kafka_vectors(key: bytes, expected: int) -> None:
    assert ref_murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
@pytest.mark.parametrize("n", [1, 3, 12, 100, 997, 2**31 - 1])
def test_java_partition_on_kafka_vectors(key: bytes, expected: int, n: int) -> None:
    assert java_partition(key, n) == (expected & 0x7FFFFFFF) % n


def test_java_partition_fixed_values() -> None:
    # toPositive(-973932308) = 1173551340; % 1000 = 340.
    assert java_partition(b"21", 1000) == 340
    assert java_partition(b"abc", 1000) == 479470107 % 1000
    assert java_partition(b"", 1000) == ref_partition(b"", 1000)


@given(key=st.binary(max_size=64), n=st.integers(1, 1000))
@FAST
def test_java_partition_equals_java_client(key: bytes, n: int) -> None:
    expected = ref_partition(key, n)
    assert java_partition(key, n) == expected
    assert 0 <= expected < n


@given(tenant=st.text(max_size=30), n=st.integers(1, 1000))
@FAST
def test_java_partition_utf8_tenants(tenant: str, n: int) -> None:
    key = tenant.encode("utf-8")
    assert java_partition(key, n) == ref_partition(key, n)


# -- choose_partition --------------------------------------------------------------------------


def _no_round_robin() -> int:
    raise AssertionError("round robin must not be consulted")


def test_routed_single_partition() -> None:
    assert choose_partition(12, (7,), b"acme", b"k", _no_round_robin) == (7, RoutingPath.ROUTED)
    assert choose_partition(12, (7,), b"acme", None, _no_round_robin) == (7, RoutingPath.ROUTED)


@given(key=st.binary(max_size=32))
@FAST
def test_sharded_with_secondary_key_is_stable_and_inside(key: bytes) -> None:
    shards = (9, 2, 5, 11)
    first = choose_partition(12, shards, b"acme", key, _no_round_robin)
    second = choose_partition(12, shards, b"acme", key, _no_round_robin)
    assert first == second
    assert first[1] is RoutingPath.SHARDED
    assert first[0] in shards
    assert first[0] == shards[ref_partition(key, len(shards))]


def test_sharded_with_secondary_key_spreads() -> None:
    shards = (9, 2, 5, 11)
    hits = Counter(
        choose_partition(12, shards, b"acme", f"order-{i}".encode(), _no_round_robin)[0] for i in range(400)
    )
    assert set(hits) == set(shards)
    assert min(hits.values()) > 50  # roughly even, not one hot shard


def test_relaxed_sharded_without_secondary_key_round_robins() -> None:
    shards = (4, 0, 8)
    counter = itertools.count(5).__next__
    chosen = [choose_partition(12, shards, b"acme", None, counter, spread_keyless=True) for _ in range(6)]
    assert all(path is RoutingPath.SHARDED for _, path in chosen)
    assert [p for p, _ in chosen] == [8, 4, 0, 8, 4, 0]


@given(
    tenant=st.binary(min_size=1, max_size=32),
    shards=st.lists(st.integers(0, 63), min_size=2, max_size=16, unique=True),
)
@FAST
def test_strict_keyless_records_are_one_stream_on_one_shard(tenant: bytes, shards: list[int]) -> None:
    """A strict tenant's records without a secondary key (key=tenant) are one ordered stream:
    every one goes to the same shard, the tenant's own hash over the shard list."""
    counter = itertools.count().__next__
    chosen = {choose_partition(64, tuple(shards), tenant, None, counter) for _ in range(20)}
    assert chosen == {(shards[ref_partition(tenant, len(shards))], RoutingPath.SHARDED)}


@given(tenant=st.binary(min_size=0, max_size=32), n=st.integers(1, 1000))
@FAST
def test_unrouted_tenant_is_hashed_like_java(tenant: bytes, n: int) -> None:
    assert choose_partition(n, None, tenant, b"ignored", _no_round_robin) == (
        ref_partition(tenant, n),
        RoutingPath.HASHED,
    )


def test_no_tenant_is_unkeyed() -> None:
    assert choose_partition(12, None, None, None, _no_round_robin) == (None, RoutingPath.UNKEYED)
    assert choose_partition(12, None, None, b"k", _no_round_robin) == (None, RoutingPath.UNKEYED)
