"""Faust codecs that keep the routes topic readable by any Kafka client.

Faust's defaults would JSON-quote keys and wrap values in ``__faust`` metadata. Decoding never
raises on poison: a poison record on the routes topic must not crash table recovery, and must
not erase the route its key had either. Faust decodes each changelog record's key, then its
value, and stores whatever the value decodes to under the key; so the key codec tells the value
codec whose value comes next, and a value that does not decode (or is not a valid route) comes
out as the key's last good route, or, for a key without one, an ``UndecodableRoute`` that
readers skip. Keys whose newest record was such poison are listed in ``poisoned``: the writer
re-asserts their route, so that compaction (which keeps the newest record per key) keeps a good
one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from routing_app.client.poison import brief
from routing_app.codec import DecodeError, RegistryUnavailable
from routing_app.routes import Route, RouteCodec
from routing_app.routes.codec import check_route

log = logging.getLogger(__name__)

KEY_CODEC = "routing-utf8-key"
ROUTE_CODEC = "routing-route-avro"


@dataclass(frozen=True)
class UndecodableRoute:
    raw: bytes
    error: str


class Utf8KeyCodec(codecs.Codec):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The key of the record being decoded: its value is decoded right after it, unless it
        # is a tombstone (Faust does not decode None). Then the next key finds it still here.
        self.last: str | None = None
        self.on_tombstone: Callable[[str], None] | None = None

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode("utf-8") if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        if self.last is not None and self.on_tombstone is not None:
            self.on_tombstone(self.last)
        key = s.decode("utf-8", "surrogateescape")
        self.last = key
        return key


class RouteValueCodec(codecs.Codec):
    def __init__(self, routes: RouteCodec, keys: Utf8KeyCodec | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes = routes
        self.keys = keys
        if keys is not None:
            keys.on_tombstone = self._tombstone
        self.undecodable = 0
        # Key -> the last valid route read under it: the same objects the table holds, so the
        # cost is the dict (~31 MB a million routes).
        self._good: dict[str, Route] = {}
        # Key -> why its newest record read so far is poison; a good record under it clears it.
        self.poisoned: dict[str, str] = {}

    def _decode_waiting(self, key: str | None, s: bytes) -> dict[str, Any]:
        """The route's record; waits out a registry outage (a schema id the worker has not
        resolved yet): skipping the record would lose the route or roll it back. It blocks
        the table's recovery, which cannot go on without the route anyway."""
        warned = 0.0
        while True:
            try:
                return self.routes.values.decode(s)
            except RegistryUnavailable as exc:
                if time.monotonic() - warned > 30:
                    log.warning(
                        "routes table: waiting for the schema registry to read the route under %r: %s",
                        key,
                        exc,
                    )
                    warned = time.monotonic()
                time.sleep(1.0)

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, UndecodableRoute):
            return obj.raw
        if not isinstance(obj, Route):
            raise TypeError(f"routes table values must be Route, not {type(obj).__name__}")
        return self.routes.encode(obj)

    def _loads(self, s: bytes) -> Any:
        key = None
        if self.keys is not None:
            key, self.keys.last = self.keys.last, None
        try:
            route = check_route(Route.from_record(self._decode_waiting(key, s)))
            if key is not None and route.key != key:
                raise DecodeError(f"its value is the route of {route.key!r}")
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            return self._poison(key, bytes(s), brief(exc))
        if key is not None:
            self._good[key] = route
            self.poisoned.pop(key, None)
        return route

    def _poison(self, key: str | None, raw: bytes, error: str) -> Any:
        self.undecodable += 1
        good = None if key is None else self._good.get(key)
        if key is not None:
            self.poisoned[key] = error
        if good is None:
            log.warning("routes table: undecodable route record under %r skipped: %s", key, error)
            return UndecodableRoute(raw, error)
        log.warning(
            "routes table: undecodable route record under %r skipped, its route stays %s (epoch %d): %s",
            key,
            list(good.partitions),
            good.epoch,
            error,
        )
        return good

    def _tombstone(self, key: str) -> None:
        # A deleted route must not come back as the "last good" one of later poison.
        self._good.pop(key, None)
        self.poisoned.pop(key, None)

    def forget(self, key: str) -> None:
        """The key's route was re-asserted (or removed) by the writer: it is no longer poison."""
        self.poisoned.pop(key, None)


def register(routes: RouteCodec) -> RouteValueCodec:
    keys = Utf8KeyCodec()
    value_codec = RouteValueCodec(routes, keys)
    codecs.register(KEY_CODEC, keys)
    codecs.register(ROUTE_CODEC, value_codec)
    return value_codec
