"""Routes on the wire: key ``<topic>/<tenant>`` as UTF-8, value registry-framed Avro, None = tombstone."""

from __future__ import annotations

import sys

from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.codec import AvroCodec, DecodeError, load_schema
from routing_app.routes.model import (
    KEY_SEPARATOR,
    Route,
    RouteError,
    parse_route_key,
    route_from_record,
    route_key,
    validate_topic_name,
)
from routing_app.routes.wire import RouteReader, has_route_layout, reads_alike

ROUTE_SCHEMA = "route"
# Distinct (partitions, previous partitions) pairs remembered as valid: a million routes name
# a few hundred, and past this bound the rest are simply checked every time.
_MAX_VALID_SHAPES = 100_000
# Schema ids whose layout was checked (a handful: the route schema's versions).
_MAX_FAST_HEADERS = 1_000
_HEADER_SIZE = 5


class InvalidRoute(DecodeError):
    """A route record that decodes but cannot be followed (no partitions, a negative or
    repeated one, a negative epoch, a key that names no topic): poison like any other, so
    readers skip and count it and keep the route they had."""


def check_route(route: Route, partition_count: int | None = None) -> Route:
    """``route.validate(partition_count)``, raising InvalidRoute (a DecodeError) instead."""
    try:
        return route.validate(partition_count)
    except RouteError as exc:
        raise InvalidRoute(f"invalid route: {exc}") from exc


class RouteCodec:
    def __init__(
        self, registry: SchemaRegistryClient, routes_topic: str, *, fast_reader: bool = True
    ) -> None:
        self.values = AvroCodec(registry, ROUTE_SCHEMA, routes_topic)
        self._topics: dict[str, str] = {}
        self._valid_shapes: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        # Values framed with one of these headers (schema ids whose writer schema reads like
        # ours, learnt from the first such value fastavro decodes) are read by RouteReader;
        # what it does not take still goes to fastavro (routes/wire.py). ``fast_reader=False``:
        # fastavro only (the tests compare the two).
        self._schema = load_schema(ROUTE_SCHEMA)
        self._fast_reader = RouteReader() if fast_reader and has_route_layout(self._schema) else None
        self._fast_headers: set[bytes] = set()
        self._layouts_seen: set[int] = set()

    @staticmethod
    def encode_key(topic: str, tenant: str) -> bytes:
        return route_key(topic, tenant).encode("utf-8")

    def encode(self, route: Route) -> bytes:
        return self.values.encode(route.to_record())

    def decode(self, key: bytes | None, value: bytes | None) -> tuple[str, str, Route | None]:
        """(topic, tenant, route); route None is a tombstone. Raises DecodeError on poison, and
        InvalidRoute (one) on a route that ``Route.validate`` refuses: every route that comes
        out of here can be followed, whatever the data topic's partition count."""
        if key is None:
            raise DecodeError("route record without a key")
        # parse_route_key inlined (a rebuild decodes a million keys); it still words the errors.
        try:
            topic, sep, tenant = key.decode("utf-8").partition(KEY_SEPARATOR)
            if not sep or not topic:
                parse_route_key(key)
        except (RouteError, UnicodeDecodeError) as exc:
            raise DecodeError(f"bad route key {key[:80]!r}: {exc}") from exc
        # Few topics, a million tenants: one shared topic string, and the Route holds the very
        # tenant string the caller keys its dict by, instead of copies decoded from the value.
        shared = self._topics.get(topic)
        if shared is None:
            try:
                validate_topic_name(topic)
            except RouteError as exc:
                raise InvalidRoute(f"bad route key {key[:80]!r}: {exc}") from exc
            shared = self._topics.setdefault(topic, sys.intern(topic))
        topic = shared
        if value is None:
            return topic, tenant, None
        route = None
        if value[:_HEADER_SIZE] in self._fast_headers:
            # Topic names are ASCII (validated above): the tenant's bytes follow len(topic) + 1.
            route = self._fast_reader.read(  # type: ignore[union-attr]
                value, topic, tenant, key[len(topic) + 1 :]
            )
        if route is None:
            route = self._decode_value(key, value, topic, tenant)
        # Route.validate costs ~2.7 us a route (~3 s of a million-route rebuild); the topic is
        # checked once above and partition lists are interned, so valid lists are remembered.
        shape = (route.partitions, route.previous_partitions)
        # A topic's hash base (the empty tenant) has a rule of its own: always checked (rare).
        if route.epoch < 0 or not tenant or shape not in self._valid_shapes:
            check_route(route)
            if len(self._valid_shapes) < _MAX_VALID_SHAPES:
                self._valid_shapes.add(shape)
        return topic, tenant, route

    def _decode_value(self, key: bytes, value: bytes, topic: str, tenant: str) -> Route:
        """The general path: fastavro, for any writer schema the registry knows."""
        try:
            record = self.values.decode(value)
            record_topic, record_tenant = record["topic"], record["tenant"]
            route = route_from_record(record, topic, tenant)
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"route {key[:80]!r}: {exc}") from exc
        if record_topic != topic or record_tenant != tenant:
            raise DecodeError(
                f"route key {key[:80]!r} does not match its value ({record_topic!r}, {record_tenant!r})"
            )
        schema_id = AvroCodec.schema_id_of(value)
        if schema_id is not None and schema_id not in self._layouts_seen:
            self._learn_layout(schema_id, value[:_HEADER_SIZE])
        return route

    def _learn_layout(self, schema_id: int, header: bytes) -> None:
        """Once per schema id fastavro read a route of: may RouteReader read its values?"""
        if self._fast_reader is None or len(self._layouts_seen) >= _MAX_FAST_HEADERS:
            return
        self._layouts_seen.add(schema_id)
        if reads_alike(self.values.writer_schema(schema_id), self._schema):
            self._fast_headers.add(header)

    @property
    def fast_path(self) -> bool:
        """Whether values of some schema id are read without fastavro (for tests and benchmarks)."""
        return bool(self._fast_headers)
