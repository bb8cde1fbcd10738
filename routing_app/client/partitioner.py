"""Which partition a record goes to. Pure functions: the producer, the simulator and tests share them."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from confluent_kafka import murmur2


class RoutingPath(StrEnum):
    EXPLICIT = "explicit"  # the caller named the partition
    ROUTED = "routed"  # the tenant's route names one partition
    # The tenant's route names several: the secondary key picks one; without one, the tenant's
    # own hash does (a strict tenant's keyless records are one ordered stream) or, for a
    # relaxed tenant, round robin.
    SHARDED = "sharded"
    HASHED = "hashed"  # no route: murmur2, exactly where the Java client puts the key
    UNKEYED = "unkeyed"  # no key, no tenant: librdkafka's sticky partitioner decides


def java_partition(key: bytes, partition_count: int) -> int:
    """``Utils.toPositive(Utils.murmur2(key)) % n``, the Java client's default for keyed records."""
    return murmur2(key, partition_count)


def choose_partition(
    partition_count: int,
    route_partitions: tuple[int, ...] | None,
    tenant: bytes | None,
    secondary_key: bytes | None,
    next_round_robin: Callable[[], int],
    spread_keyless: bool = False,
) -> tuple[int | None, RoutingPath]:
    """The partition for a record without an explicit one; None leaves the choice to librdkafka.

    ``route_partitions`` must already be checked against ``partition_count``. Order holds per
    (tenant, secondary key), and a tenant's records without a secondary key are one ordered
    stream: they all go to one shard, unless ``spread_keyless`` (the tenant accepts records out
    of order: relaxed mode) lets round robin spread them.
    """
    if route_partitions is not None:
        shards = len(route_partitions)
        if shards == 1:
            return route_partitions[0], RoutingPath.ROUTED
        if secondary_key is not None:
            return route_partitions[murmur2(secondary_key, shards)], RoutingPath.SHARDED
        if spread_keyless or tenant is None:
            return route_partitions[next_round_robin() % shards], RoutingPath.SHARDED
        return route_partitions[murmur2(tenant, shards)], RoutingPath.SHARDED
    if tenant is not None:
        return murmur2(tenant, partition_count), RoutingPath.HASHED
    return None, RoutingPath.UNKEYED
