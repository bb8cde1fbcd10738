"""Poison on the routes topic, as the route cache meets it: records it skips (undecodable,
refused by Route.validate, or older than the route it holds), and the live keys they sit under.

Apart from the cache because it is bookkeeping of its own: counts, reasons per key and the
listeners told about them. Compaction keeps only a key's newest record, so a poison record
that is the newest under a live route's key would lose that route for a new reader: the route
writer, told by a listener, writes the route again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from routing_app.codec import DecodeError
from routing_app.routes import Route
from routing_app.routes.codec import InvalidRoute
from routing_app.routes.model import RouteError, parse_route_key

log = logging.getLogger(__name__)

# (topic, tenant, the route kept, why the newest record under its key is poison)
PoisonListener = Callable[[str, str, Route, str], None]


def brief(exc: BaseException, limit: int = 300) -> str:
    """An error's text, cut: a decoder's message can carry both whole schemas (kilobytes of
    JSON per poison record)."""
    text = str(exc)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class PoisonBook:
    """The poison one route cache met: counted, logged, and noted per live key until a
    decodable record under the key supersedes it."""

    def __init__(
        self, routes_topic: str, get: Callable[[str, str], Route | None], ready: threading.Event
    ) -> None:
        self._topic = routes_topic
        self._get = get  # the cache's table
        self._ready = ready  # set once the cache has caught up: listeners are told from then on
        # Route key -> reason: keys of live routes whose newest record is poison, or a route
        # held back for its partitions. Changed in place only: the cache's hot loop holds it.
        self.reasons: dict[str, str] = {}
        self.undecodable = 0  # records skipped: undecodable, or routes Route.validate refuses
        self.out_of_order = 0  # older routes found after newer ones
        self._listeners: list[PoisonListener] = []

    def add_listener(self, listener: PoisonListener) -> None:
        self._listeners.append(listener)

    def skip_undecodable(self, key: bytes | None, offset: int, exc: DecodeError) -> None:
        self.undecodable += 1
        why = brief(exc)
        kept = self.note(key, f"{_at(offset)}: {why}")
        log.warning(
            "route cache: skipped %s record at %s %s%s: %s",
            "an invalid route" if isinstance(exc, InvalidRoute) else "an undecodable",
            self._topic,
            _at(offset),
            ""
            if kept is None
            else f" (the route of {kept.key!r} stays {list(kept.partitions)}, epoch {kept.epoch})",
            why,
        )

    def skip_older(self, key: bytes | None, route: Route, current: Route, offset: int) -> None:
        """A route older than the one already read, after it: readers that follow the topic skip
        it, but compaction keeps only a key's newest record, so a reader starting later would
        take it. Only a writer that is not ours (or a retry without idempotence) puts one there:
        treated as poison, so the worker writes the route again."""
        self.out_of_order += 1
        log.warning(
            "route cache: %s %s: route %r %s (epoch %d) is older than the route "
            "already read (%s, epoch %d); skipped",
            self._topic,
            _at(offset),
            route.key,
            list(route.partitions),
            route.epoch,
            list(current.partitions),
            current.epoch,
        )
        self.note(key, f"{_at(offset)}: an older route (epoch {route.epoch}) after epoch {current.epoch}")

    def note(self, key: bytes | None, reason: str) -> Route | None:
        """Notes poison under ``key``; returns the route the key keeps, if it has one."""
        try:
            topic, tenant = parse_route_key(key or b"")
        except (RouteError, UnicodeDecodeError):
            return None
        kept = self._get(topic, tenant)
        if kept is None:
            return None  # no route to lose: a reader without one hashes the tenant anyway
        self.reasons[kept.key] = reason
        if self._ready.is_set():
            self._tell(kept.key, reason)
        return kept

    def forget(self, key: str) -> None:
        self.reasons.pop(key, None)

    def tell_all(self) -> None:
        """After the first catch-up: the poison met on the way that is still the newest record
        under a live key."""
        for key, reason in list(self.reasons.items()):
            self._tell(key, reason)

    def _tell(self, key: str, reason: str) -> None:
        topic, tenant = parse_route_key(key)
        kept = self._get(topic, tenant)
        if kept is None:
            return
        for listener in self._listeners:
            try:
                listener(topic, tenant, kept, reason)
            except Exception:
                log.exception("route poison listener failed")


def _at(offset: int) -> str:
    # A record kept as bytes while the cache caught up is decoded later, without its offset.
    return f"offset {offset}" if offset >= 0 else "an offset read while catching up"
