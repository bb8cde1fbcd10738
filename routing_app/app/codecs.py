"""Faust codecs that keep the routes topic readable by any Kafka client.

Faust's defaults would JSON-quote keys and wrap values in ``__faust`` metadata. Decoding never
raises: a poison record on the routes topic must not crash table recovery, so it decodes to an
``UndecodableRoute`` that readers skip and count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from routing_app.codec import DecodeError
from routing_app.routes import Route, RouteCodec

log = logging.getLogger(__name__)

KEY_CODEC = "routing-utf8-key"
ROUTE_CODEC = "routing-route-avro"


@dataclass(frozen=True)
class UndecodableRoute:
    raw: bytes
    error: str


class Utf8KeyCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode("utf-8") if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode("utf-8", "surrogateescape")


class RouteValueCodec(codecs.Codec):
    def __init__(self, routes: RouteCodec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes = routes
        self.undecodable = 0

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, UndecodableRoute):
            return obj.raw
        if not isinstance(obj, Route):
            raise TypeError(f"routes table values must be Route, not {type(obj).__name__}")
        return self.routes.encode(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return Route.from_record(self.routes.values.decode(s))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.undecodable += 1
            log.warning("routes table: undecodable route record skipped: %s", exc)
            return UndecodableRoute(bytes(s), str(exc))


def register(routes: RouteCodec) -> RouteValueCodec:
    value_codec = RouteValueCodec(routes)
    codecs.register(KEY_CODEC, Utf8KeyCodec())
    codecs.register(ROUTE_CODEC, value_codec)
    return value_codec
