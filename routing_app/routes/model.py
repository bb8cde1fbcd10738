"""The route: where one tenant's records go on one data topic. Plain data, no I/O."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
KEY_SEPARATOR = "/"
# The empty tenant names no tenant anywhere (usage reports fold unattributed records into it,
# commands refuse it), so its key, ``<topic>/``, holds the topic's hash base: see HashBase.
HASH_BASE_TENANT = ""
HASH_BASE = "hash_base"  # the base route's attribute: the partition count unrouted keys hash by
# On a base route: an operator asked for a rebase (routing-app topics rebase).
REBASE_ATTRIBUTE = "rebase"
REBASE_REQUESTED = "requested"
_EMPTY: Mapping[str, str] = MappingProxyType({})


class RouteMode(StrEnum):
    STRICT = "strict"  # moves keep each key's order: stop-and-wait
    RELAXED = "relaxed"  # moves switch at once; the tenant accepts out-of-order records


class RouteStatus(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"


class RouteError(ValueError):
    """A route, route key or command that cannot be valid; the message says why."""


def validate_topic_name(topic: str) -> str:
    if not _TOPIC_NAME.match(topic) or topic in (".", ".."):
        raise RouteError(f"{topic!r} is not a Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)")
    return topic


def route_key(topic: str, tenant: str) -> str:
    """The routes-topic key: ``<topic>/<tenant>``; topic names cannot contain '/', tenants may."""
    return f"{topic}{KEY_SEPARATOR}{tenant}"


def parse_route_key(key: str | bytes) -> tuple[str, str]:
    text = key.decode("utf-8") if isinstance(key, bytes) else key
    topic, sep, tenant = text.partition(KEY_SEPARATOR)
    if not sep or not topic:
        raise RouteError(f"route key {text!r} is not '<topic>/<tenant>'")
    return topic, tenant


_interned_partitions: dict[tuple[int, ...], tuple[int, ...]] = {}


def _shared_partitions(partitions: Iterable[int]) -> tuple[int, ...]:
    # A million routes mostly name a few hundred distinct partition lists: share the tuples.
    as_tuple = tuple(partitions)
    return _interned_partitions.setdefault(as_tuple, as_tuple)


@dataclass(frozen=True, slots=True)
class Route:
    topic: str
    tenant: str
    partitions: tuple[int, ...]
    epoch: int
    mode: RouteMode = RouteMode.STRICT
    status: RouteStatus = RouteStatus.ACTIVE
    reason: str = ""
    updated_at_ms: int = 0
    previous_partitions: tuple[int, ...] = ()
    decided_by: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> str:
        return route_key(self.topic, self.tenant)

    @property
    def sharded(self) -> bool:
        return len(self.partitions) > 1

    def usable_for(self, partition_count: int) -> bool:
        """Whether a producer follows this route on a topic of ``partition_count`` partitions
        (else it keeps the tenant where it was): the one rule the producer and the planner's
        view of the producers share. Routes read from the topic are validated already; the
        count is what may lag behind a route written for partitions just added."""
        parts = self.partitions
        return (
            bool(parts) and min(parts) >= 0 and max(parts) < partition_count and len(set(parts)) == len(parts)
        )

    def validate(self, partition_count: int | None = None) -> Route:
        """Raises RouteError naming the first problem; returns self so calls chain."""
        validate_topic_name(self.topic)
        if not self.partitions:
            raise RouteError(f"route {self.key!r} names no partitions")
        if len(set(self.partitions)) != len(self.partitions):
            raise RouteError(f"route {self.key!r} names a partition twice: {list(self.partitions)}")
        for p in (*self.partitions, *self.previous_partitions):
            if p < 0 or (partition_count is not None and p >= partition_count):
                limit = (
                    ">= 0"
                    if partition_count is None
                    else f"0..{partition_count - 1}"
                    if partition_count > 0
                    else "none"
                )
                raise RouteError(
                    f"route {self.key!r}: partition {p} does not exist on topic "
                    f"{self.topic!r} (valid: {limit})"
                )
        if self.epoch < 0:
            raise RouteError(f"route {self.key!r}: epoch {self.epoch} is negative")
        if self.tenant == HASH_BASE_TENANT and self.partitions != tuple(range(len(self.partitions))):
            raise RouteError(
                f"hash base {self.key!r} must name partitions 0..n-1 (n: the base), "
                f"not {list(self.partitions)}"
            )
        return self

    def to_record(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "tenant": self.tenant,
            "partitions": list(self.partitions),
            "mode": self.mode.value,
            "status": self.status.value,
            "epoch": self.epoch,
            "reason": self.reason,
            "updated_at": self.updated_at_ms,
            "previous_partitions": list(self.previous_partitions),
            "decided_by": self.decided_by,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Route:
        return route_from_record(record, record["topic"], record["tenant"])

    def to_json(self) -> dict[str, Any]:
        data = self.to_record()
        data["updated_at_ms"] = data.pop("updated_at")
        data["key"] = self.key
        return data


def is_hash_base(route: Route | None) -> bool:
    return route is not None and route.tenant == HASH_BASE_TENANT


def hash_base_of(route: Route | None) -> int | None:
    """The partition count unrouted keys of the route's topic hash by, if it is a base route."""
    if route is None or route.tenant != HASH_BASE_TENANT:
        return None
    return len(route.partitions)


def hash_base_route(topic: str, base: int, epoch: int, *, reason: str, now_ms: int, decided_by: str) -> Route:
    """A data topic's hash base: producers hash unrouted keys ``murmur2(key) % base`` instead of
    ``% partition_count``, so growing the topic moves no key (``routing-app topics expand``).

    It lives on the routes topic under ``<topic>/`` (the empty tenant) as a route over
    partitions ``0..base-1``: every reader already validates, orders (epochs) and compacts it
    like any route, and producers answer its draining write like a strict move's (that is
    their acknowledgement that they know the base)."""
    return Route(
        topic=topic,
        tenant=HASH_BASE_TENANT,
        partitions=tuple(range(base)),
        epoch=epoch,
        mode=RouteMode.STRICT,
        status=RouteStatus.ACTIVE,
        reason=reason,
        updated_at_ms=now_ms,
        decided_by=decided_by,
        attributes={HASH_BASE: str(base)},
    )


def hash_modulus(partition_count: int, base: int | None) -> int:
    """What an unrouted key hashes by: the base while there is one (never above the count)."""
    return partition_count if base is None or not 0 < base < partition_count else base


# -- building Routes fast: the route cache builds a million of them on start -------------------

_MODES: dict[Any, RouteMode] = {mode.value: mode for mode in RouteMode}
_STATUSES: dict[Any, RouteStatus] = {status.value: status for status in RouteStatus}
_FIELDS = (
    "topic",
    "tenant",
    "partitions",
    "epoch",
    "mode",
    "status",
    "reason",
    "updated_at_ms",
    "previous_partitions",
    "decided_by",
    "attributes",
)
if tuple(Route.__dataclass_fields__) != _FIELDS:
    # route_from_record fills every slot itself; a new field would be left unset.
    raise RuntimeError(f"Route fields are {tuple(Route.__dataclass_fields__)}: update route_from_record")
# The frozen dataclass __init__ goes through object.__setattr__ field by field (~1.5 us a route);
# the slot descriptors write the same slots directly. Route itself stays frozen to everyone else.
(
    _set_topic,
    _set_tenant,
    _set_partitions,
    _set_epoch,
    _set_mode,
    _set_status,
    _set_reason,
    _set_updated_at,
    _set_previous,
    _set_decided_by,
    _set_attributes,
) = (Route.__dict__[name].__set__ for name in _FIELDS)
_new = object.__new__


def route_from_record(record: Mapping[str, Any], topic: str, tenant: str) -> Route:
    """``Route.from_record`` with the topic and tenant given, so a caller can pass string objects
    it keeps anyway (the route cache's dict keys) instead of a second copy of each per route.

    Same values and the same exceptions as building the Route through its constructor.
    """
    get = record.get
    partitions = tuple(record["partitions"])
    partitions = _interned_partitions.setdefault(partitions, partitions)
    epoch = record["epoch"]
    if epoch.__class__ is not int:
        epoch = int(epoch)
    mode = get("mode") or RouteMode.STRICT
    try:
        mode = _MODES[mode]
    except (KeyError, TypeError):
        mode = RouteMode(mode)  # raises the Enum's own ValueError for an unknown mode
    status = get("status") or RouteStatus.ACTIVE
    try:
        status = _STATUSES[status]
    except (KeyError, TypeError):
        status = RouteStatus(status)
    reason = get("reason") or ""
    if reason:  # "" is a singleton already
        reason = sys.intern(reason)
    updated_at = get("updated_at") or 0
    if updated_at.__class__ is not int:
        updated_at = int(updated_at)
    previous = get("previous_partitions")
    previous = _shared_partitions(previous) if previous else ()
    decided_by = get("decided_by") or ""
    if decided_by:
        decided_by = sys.intern(decided_by)
    attributes = get("attributes")
    route: Route = _new(Route)
    _set_topic(route, topic)
    _set_tenant(route, tenant)
    _set_partitions(route, partitions)
    _set_epoch(route, epoch)
    _set_mode(route, mode)
    _set_status(route, status)
    _set_reason(route, reason)
    _set_updated_at(route, updated_at)
    _set_previous(route, previous)
    _set_decided_by(route, decided_by)
    _set_attributes(route, MappingProxyType(dict(attributes)) if attributes else _EMPTY)
    return route
