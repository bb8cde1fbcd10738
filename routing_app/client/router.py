"""Partition choice by the route table: where a record goes, before it is sent."""

from __future__ import annotations

import itertools
import logging
from typing import Any

from confluent_kafka import murmur2

from routing_app.client.cache import RouteCache
from routing_app.client.errors import PartitionOutOfRange
from routing_app.client.holds import TenantHold
from routing_app.client.metadata import PartitionCounts
from routing_app.client.partitioner import RoutingPath, choose_partition
from routing_app.routes import Route
from routing_app.routes.model import HASH_BASE_TENANT, RouteMode, RouteStatus, hash_modulus

log = logging.getLogger(__name__)

_DRAINING = RouteStatus.DRAINING
_ROUTED = RoutingPath.ROUTED.value
_HASHED = RoutingPath.HASHED.value
_UNKEYED = RoutingPath.UNKEYED.value


class Router:
    def __init__(
        self, metadata: PartitionCounts, cache: RouteCache | None, holds: dict[tuple[str, str], TenantHold]
    ) -> None:
        self._metadata = metadata
        self._cache = cache
        # Tenants whose records wait while their routes drain (drains.DrainCoordinator's).
        self._holds = holds
        self._routes_by_topic: dict[str, dict[str, Route]] = {} if cache is None else cache.routes_by_topic
        self._round_robin = itertools.count().__next__
        self.out_of_range = 0  # records hashed because their route named unknown partitions

    def partition_for(
        self,
        topic: str,
        key: bytes | None,
        tenant: str | bytes | None = None,
        partition: int | None = None,
    ) -> tuple[int | None, RoutingPath]:
        """Where a record would go; None leaves the choice to librdkafka."""
        count = self._metadata.get(topic)
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
        modulus = count
        cache = self._cache
        if tenant_bytes is not None and cache is not None:
            keeps_bytes = cache.keeps_bytes  # before the table: see RouteCache.get
            routes = self._routes_by_topic.get(topic)
            if routes or keeps_bytes:
                modulus = self._modulus(topic, count)
                tenant_name = (
                    tenant if isinstance(tenant, str) else tenant_bytes.decode("utf-8", "surrogateescape")
                )
                # The empty tenant's key holds the topic's hash base: no tenant is routed by it.
                route = cache.get(topic, tenant_name) if tenant_name else None
                if route is not None:
                    route_partitions = self._usable(route, count)
                    relaxed = route.mode is RouteMode.RELAXED
        return choose_partition(
            modulus, route_partitions, tenant_bytes, secondary, self._round_robin, spread_keyless=relaxed
        )

    def plain_choice(self, topic: str, key: Any, count: int) -> tuple[int, str] | None:
        """(partition, path value) of a plain record, as partition_for would choose; None for
        what only the general path does: a sharded or draining route, a route ahead of our
        metadata, a held tenant, a key that is not bytes."""
        if key is None:
            return -1, _UNKEYED  # -1: librdkafka's sticky partitioner
        if key.__class__ is not bytes:
            return None
        # The flag before the table: it turns False only once every kept route is in it.
        cache = self._cache
        keeps_bytes = cache is not None and cache.keeps_bytes
        routes = self._routes_by_topic.get(topic)
        name = key.decode("utf-8", "surrogateescape")
        route = routes.get(name) if routes and name else None
        if route is None and name and keeps_bytes and cache is not None:
            route = cache.get(topic, name)  # may be bytes still: decoded now
        if self._holds and (topic, name) in self._holds:
            return None
        if route is None:
            return murmur2(key, self._modulus(topic, count)), _HASHED
        shards = route.partitions
        if len(shards) != 1 or shards[0] >= count or route.status is _DRAINING:
            return None
        return shards[0], _ROUTED

    def _modulus(self, topic: str, count: int) -> int:
        """What unrouted keys of the topic hash by: its hash base if it has one (topics expand)."""
        # The flag before the table (bases are in it once settled), the table read anew.
        cache = self._cache
        settled = cache is None or cache.settled
        routes = self._routes_by_topic.get(topic)
        base = routes.get(HASH_BASE_TENANT) if routes else None
        if base is None and not settled and cache is not None:
            base = cache.get(topic, HASH_BASE_TENANT)  # may be bytes still
        return count if base is None else hash_modulus(count, len(base.partitions))

    def _usable(self, route: Route, count: int) -> tuple[int, ...] | None:
        if route.usable_for(count):
            return route.partitions
        # The route was written for partitions our metadata does not know yet: refresh once.
        count = self._metadata.load(route.topic)
        if route.usable_for(count):
            return route.partitions
        self.out_of_range += 1
        log.warning(
            "route %s names partitions %s but %r has %d; hashing instead",
            route.key,
            list(route.partitions),
            route.topic,
            count,
        )
        return None
