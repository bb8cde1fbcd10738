"""Whether the producer knows the routes yet: keyed records wait for the route cache (up to
routing.max.block.ms) until it has read every route that existed when it started."""

from __future__ import annotations

import time

from routing_app.client.cache import RouteCache
from routing_app.client.errors import RoutesNotReady, RoutingProducerError
from routing_app.codec import probe_registry
from routing_app.routes import RouteCodec


class RoutesGate:
    def __init__(self, cache: RouteCache | None, codec: RouteCodec | None, routes_topic: str,
                 max_block_ms: int, bootstrap: str, registry_url: str | None) -> None:
        # Once true, stays true: the cache only falls behind, never back before its start.
        self.ready = cache is None
        self._cache = cache
        self._codec = codec
        self._routes_topic = routes_topic
        self._max_block_ms = max_block_ms
        self._bootstrap = bootstrap
        self._registry_url = registry_url

    def wait_ready(self, timeout: float | None) -> None:
        if self._cache is None:
            return
        if not self._cache.wait_ready(timeout):
            raise TimeoutError(f"route cache not ready after {timeout}s: {self.problem()}")
        self.ready = True

    def wait(self, deadline: float) -> None:
        """A keyed record before the route cache is ready: placed by hash, it would go where
        its tenant's route (a pin, a move in progress) says it must not. Waits up to
        routing.max.block.ms for the routes, then says what the cache is stuck on."""
        cache = self._cache
        if cache is not None and not cache.ready:
            try:
                ready = cache.wait_ready(max(deadline - time.monotonic(), 0.0))
            except RuntimeError as exc:
                raise RoutingProducerError(str(exc)) from exc
            if not ready:
                raise RoutesNotReady(
                    f"routes not read within {self._max_block_ms} ms "
                    f"(routing.max.block.ms), so the record was not sent: {self.problem()}")
        self.ready = True

    def problem(self) -> str:
        """Why the route cache is not ready: where it stands, on which topic and broker, and the
        registry when that is what it waits for."""
        assert self._cache is not None
        stats = self._cache.stats()
        topic = self._routes_topic
        if stats.end_offset_at_start < 0:
            where = (f"it could not read the end of {topic!r} from Kafka at {self._bootstrap} "
                     f"(is the broker reachable, does the topic exist?)")
        else:
            where = (f"it read {stats.position} of {stats.end_offset_at_start} records of "
                     f"{topic!r} from Kafka at {self._bootstrap}")
        failure = self._codec.values.last_failure if self._codec else None
        problem = str(failure) if failure is not None else (
            probe_registry(self._registry_url) if self._registry_url else None)
        if problem is not None:
            where += (f"; the schema registry at {self._registry_url}, which it needs to read "
                      f"routes, does not answer ({problem})")
        return where
