"""Routes on the wire: key ``<topic>/<tenant>`` as UTF-8, value registry-framed Avro, None = tombstone."""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.codec import AvroCodec, DecodeError
from routing_app.routes.model import Route, RouteError, parse_route_key, route_key

ROUTE_SCHEMA = "route"


class RouteCodec:
    def __init__(self, registry: SchemaRegistryClient, routes_topic: str) -> None:
        self.values = AvroCodec(registry, ROUTE_SCHEMA, routes_topic)

    @staticmethod
    def encode_key(topic: str, tenant: str) -> bytes:
        return route_key(topic, tenant).encode("utf-8")

    def encode(self, route: Route) -> bytes:
        return self.values.encode(route.to_record())

    def decode(self, key: bytes | None, value: bytes | None) -> tuple[str, str, Route | None]:
        """(topic, tenant, route); route None is a tombstone. Raises DecodeError on poison."""
        if key is None:
            raise DecodeError("route record without a key")
        try:
            topic, tenant = parse_route_key(key)
        except (RouteError, UnicodeDecodeError) as exc:
            raise DecodeError(f"bad route key {key[:80]!r}: {exc}") from exc
        if value is None:
            return topic, tenant, None
        try:
            route = Route.from_record(self.values.decode(value))
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"route {key[:80]!r}: {exc}") from exc
        if route.topic != topic or route.tenant != tenant:
            raise DecodeError(
                f"route key {key[:80]!r} does not match its value ({route.topic!r}, {route.tenant!r})"
            )
        return topic, tenant, route
