"""Whether the producer knows the routes yet: keyed records wait (up to routing.max.block.ms)
until its route cache has read every route that existed when it started, and every route
written before its hello was acknowledged (see routing_app.client.hello)."""

from __future__ import annotations

import time
from typing import Any

from routing_app.client.cache import RouteCache
from routing_app.client.errors import RoutesNotReady, RoutingProducerError
from routing_app.client.hello import Greeting, SayHello
from routing_app.codec import probe_registry
from routing_app.routes import RouteCodec

# How often a wait looks at the cache's position once the hello is acknowledged.
_POSITION_POLL_S = 0.005


class RoutesGate:
    def __init__(
        self,
        cache: RouteCache | None,
        codec: RouteCodec | None,
        routes_topic: str,
        max_block_ms: int,
        bootstrap: str,
        registry_url: str | None,
    ) -> None:
        # Once true, stays true: the cache only falls behind, never back before its start.
        self.ready = cache is None
        self._cache = cache
        self._codec = codec
        self._routes_topic = routes_topic
        self._max_block_ms = max_block_ms
        self._bootstrap = bootstrap
        self._registry_url = registry_url
        self._greeting: Greeting | None = None

    def greet_first(
        self, say_hello: SayHello, rdkafka: dict[str, Any], producer_id: str, answers_topic: str
    ) -> None:
        """Says hello to the route writer now, and counts the routes as read only once the
        cache has passed the routes topic's end after the hello's acknowledgement. Called once,
        when the producer starts (before any send); nothing to do without a route cache."""
        if self._cache is None or self._greeting is not None:
            return
        self._greeting = Greeting(
            say_hello, rdkafka, self._routes_topic, answers_topic, f"{producer_id}-hello"
        ).start()
        self._cache.on_stop(self._greeting.stop)

    def wait_ready(self, timeout: float | None) -> None:
        if self._cache is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._cache.wait_ready(timeout) or not self._greeted(deadline):
            raise TimeoutError(f"route cache not ready after {timeout}s: {self.problem()}")
        self.ready = True

    def wait(self, deadline: float) -> None:
        """A keyed record before the routes are read: placed by hash, it would go where its
        tenant's route (a pin, a move in progress) says it must not. Waits up to
        routing.max.block.ms for the routes, then says what the cache is stuck on."""
        cache = self._cache
        if cache is not None and not self.ready:
            try:
                ready = cache.wait_ready(max(deadline - time.monotonic(), 0.0)) and self._greeted(deadline)
            except RuntimeError as exc:
                raise RoutingProducerError(str(exc)) from exc
            if not ready:
                raise RoutesNotReady(
                    f"routes not read within {self._max_block_ms} ms "
                    f"(routing.max.block.ms), so the record was not sent: {self.problem()}"
                )
        self.ready = True

    def _greeted(self, deadline: float | None) -> bool:
        """The hello acknowledged and the routes read past the end offset fetched after it."""
        greeting, cache = self._greeting, self._cache
        if greeting is None or cache is None:
            return True
        if not greeting.wait(None if deadline is None else max(deadline - time.monotonic(), 0)):
            return False
        while cache.stats().position < greeting.routes_end:
            cache.wait_ready(0)  # raises if the cache stopped
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POSITION_POLL_S)
        return True

    def problem(self) -> str:
        """Why the routes are not read: where the cache stands, on which topic and broker, its
        hello, and the registry when that is what it waits for."""
        assert self._cache is not None
        stats = self._cache.stats()
        topic = self._routes_topic
        greeting = self._greeting
        if stats.end_offset_at_start < 0:
            where = (
                f"it could not read the end of {topic!r} from Kafka at {self._bootstrap} "
                f"(is the broker reachable, does the topic exist?)"
            )
        elif greeting is not None and greeting.done and stats.ready:
            where = (
                f"it read {stats.position} of the {greeting.routes_end} records "
                f"{topic!r} had after its hello, from Kafka at {self._bootstrap}"
            )
        else:
            where = (
                f"it read {stats.position} of {stats.end_offset_at_start} records of "
                f"{topic!r} from Kafka at {self._bootstrap}"
            )
        if greeting is not None and not greeting.done:
            where += "; its hello to the route writer (the answers topic) is not " + (
                "acknowledged yet" if greeting.failure is None else f"through: {greeting.failure}"
            )
        failure = self._codec.values.last_failure if self._codec else None
        problem = (
            str(failure)
            if failure is not None
            else (probe_registry(self._registry_url) if self._registry_url else None)
        )
        if problem is not None:
            where += (
                f"; the schema registry at {self._registry_url}, which it needs to read "
                f"routes, does not answer ({problem})"
            )
        return where
