"""Routes the route cache defers because they name partitions their data topic does not have
(yet): the tenant keeps the route it had until the partitions show up in the broker's
metadata, or a later record under the key replaces the deferred one.

Apart from the cache because it is a state of its own (the routes deferred, their count, the
retry backoff) with its own rules; the cache decides when a route does not fit and stores a
deferred route again when one is due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from routing_app.client.poison import PoisonBook
from routing_app.routes import Route

log = logging.getLogger(__name__)

# Deferred routes are checked again at most this often once the first retry found them still
# beyond: a route that names partitions nobody created costs a request a minute, not a second.
METADATA_MAX_RETRY_S = 60.0


class DeferredRoutes:
    """The newest route per (data topic, tenant) that names partitions beyond the topic's count."""

    def __init__(
        self, get: Callable[[str, str], Route | None], poison: PoisonBook, first_retry_s: float
    ) -> None:
        self._get = get  # the cache's table: the route the tenant keeps meanwhile
        self._poison = poison
        self._first_retry_s = first_retry_s
        self._retry_delay = first_retry_s
        # Changed in place only: the cache's hot loop holds it.
        self.pending: dict[tuple[str, str], Route] = {}
        self.count = 0  # routes deferred (a retry that defers one again is not counted)

    def defer(self, route: Route, count: int) -> None:
        """Defers ``route``, which names partitions beyond the ``count`` of its topic."""
        key = (route.topic, route.tenant)
        if self.pending.get(key) is route:  # a retry is not news
            return
        self.count += 1
        self._retry_delay = self._first_retry_s
        kept = self._get(route.topic, route.tenant)
        log.warning(
            "route cache: route %r (epoch %d) names partitions %s but %r has %d partitions; "
            "keeping %s until they exist",
            route.key,
            route.epoch,
            sorted({*route.partitions, *route.previous_partitions}),
            route.topic,
            count,
            "default hashing" if kept is None else f"its route {list(kept.partitions)} (epoch {kept.epoch})",
        )
        self.pending[key] = route
        # The newest record under the key is one nobody can follow: to a new reader after
        # compaction, the route would be gone. (A route the writer really wrote for
        # partitions just added is re-asserted as is: harmless.)
        self._poison.note(
            route.key.encode("utf-8", "surrogateescape"),
            f"names partitions beyond the {count} of {route.topic!r}",
        )

    def due(self, counts_asked_at: float) -> Iterator[Route]:
        """The deferred routes to store again, if a retry is due since the partition counts were
        last asked for; backs off while they stay beyond."""
        if time.monotonic() - counts_asked_at < self._retry_delay:
            return
        self._retry_delay = min(self._retry_delay * 2, METADATA_MAX_RETRY_S)
        for key, route in list(self.pending.items()):
            if self.pending.get(key) is route:
                yield route

    def settled(self, route: Route, applied: bool) -> None:
        """``route``, stored again, was applied or found stale: it is deferred no more."""
        self.pending.pop((route.topic, route.tenant), None)
        self._poison.forget(route.key)
        if applied:
            log.info(
                "route cache: route %r (epoch %d) applied: its partitions %s exist now",
                route.key,
                route.epoch,
                list(route.partitions),
            )
