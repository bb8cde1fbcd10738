"""The single writer's input: what each kind of record on the control and answers topics does,
and the route cache's alarms that come back to the writer as records of their own.

Operator commands, window summaries, ticks and producers' answers come through one agent so
that planning, operator changes and the ends of drains are applied one at a time by one writer.
A kind is taken only from its own topic (``MessageKind.from_producers``): producers may write
the answers topic and nothing else, so nothing they write there can be a command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import faust

from routing_app.app.planning import PlanningLoop
from routing_app.app.writer import RouteWriter
from routing_app.client.cache import RouteCache
from routing_app.routes import Route
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteError, RouteStatus, parse_route_key, route_key

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes | None, int], Awaitable[None]]


class _Writer(Protocol):
    """What the input needs of the app: whether this worker holds the writer's partition."""

    loop: asyncio.AbstractEventLoop

    def is_writer(self) -> bool: ...


class WriterInput:
    def __init__(
        self,
        app: _Writer,
        writer: RouteWriter,
        planning: PlanningLoop,
        cache: RouteCache,
        control_topic: faust.TopicT,
        answers_topic: str,
    ) -> None:
        self._app = app
        self._writer = writer
        self._planning = planning
        self._cache = cache
        self._control = control_topic
        self._answers_topic = answers_topic
        # Rebalances seen, and the one after which the restored table was last checked.
        self._takeovers = 0
        self._checked_after = -1
        self._handlers: dict[MessageKind, Handler] = {
            MessageKind.COMMAND: lambda _, value, offset: writer.handle_command_bytes(value, offset),
            MessageKind.WINDOW_SUMMARY: lambda _, value, offset: planning.on_summary(value, offset),
            MessageKind.EARLY_SUMMARY: lambda _, value, offset: planning.on_early_summary(value, offset),
            MessageKind.TICK: self._on_tick,
            MessageKind.DRAIN_CHECK: lambda key, *_: writer.check_drains([key] if key else None),
            MessageKind.ROUTE_CHECK: self._on_route_check,
            MessageKind.ROUTE_REASSERT: self._on_reassert,
            MessageKind.PRODUCER_HELLO: self._on_producer_hello,
            MessageKind.DRAIN_ACK: lambda _, value, offset: writer.handle_drain_ack(value, offset),
            MessageKind.DRAIN_RELEASED: lambda _, value, offset: writer.handle_release(value, offset),
            MessageKind.PRODUCER_CLOSED: self._on_producer_closed,
        }
        cache.add_poison_listener(self._reassert_route)
        cache.add_listener(self._check_route)
        cache.add_listener(self._draining_read)
        # A draining route the cache has read is committed: a drain's roll call may open.
        writer.roll_calls.route_cache = cache

    def took_over(self) -> None:
        """A rebalance ended: the restored table is completed and checked before the next
        record, and the answers topic is read again from its committed offset."""
        self._takeovers += 1
        self._writer.roll_calls.took_over()

    async def handle(self, event: Any) -> None:
        if self._checked_after != self._takeovers:
            self._checked_after = self._takeovers
            # What the writer before left half-written first (its routes and epochs): then
            # the table is what this writer issued, and a route it did not is somebody else's.
            await self._writer.recover()
            await self._writer.repair_table()
        message = event.message
        kind = MessageKind.of(message.headers)
        answer = message.topic == self._answers_topic
        # The drains whose roll call this record completes (see control.drain): checked once
        # it is handled.
        completed = self._writer.roll_calls.read(message.offset) if answer else []
        if kind is None or kind.from_producers != answer:
            self._writer.misplaced(message.topic, kind, message.offset)
        else:
            key = bytes(event.key or b"").decode("utf-8", "surrogateescape")
            handler = self._handlers[kind]
            await self._guarded(kind, message, lambda: handler(key, event.value, message.offset))
        if completed:
            await self._guarded(
                MessageKind.DRAIN_CHECK, message, lambda: self._writer.check_drains(completed)
            )

    async def _guarded(self, kind: MessageKind, message: Any, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:
            # An exception escaping an agent stops it for good: the writer would be gone until
            # a restart. One record that breaks a handler is logged, counted and passed.
            self._writer.counters["handler_errors"] += 1
            log.exception(
                "%s offset %d: handling a %s record failed; skipped",
                message.topic,
                message.offset,
                kind.name.lower(),
            )

    # -- handlers -------------------------------------------------------------------------------
    async def _on_tick(self, *_: object) -> None:
        await self._planning.on_tick()
        await self._writer.check_drains()

    async def _on_producer_hello(self, _: str, value: bytes | None, offset: int) -> None:
        self._writer.producer_hello(value, offset)

    async def _on_producer_closed(self, _: str, value: bytes | None, __: int) -> None:
        self._writer.producer_closed(value)
        await self._writer.check_drains()

    async def _on_route_check(self, key: str, _: bytes | None, __: int) -> None:
        try:
            topic, tenant = parse_route_key(key)
        except (RouteError, ValueError):
            return
        await self._writer.repair(key, self._cache.get(topic, tenant))

    async def _on_reassert(self, key: str, _: bytes | None, __: int) -> None:
        # Every worker's cache asks; the writer's own cache says whether it still must.
        if key in self._cache.poisoned():
            await self._writer.reassert(key)

    # -- the route cache's alarms (its thread) ---------------------------------------------------
    def _send(self, key: str, kind: MessageKind) -> None:
        asyncio.run_coroutine_threadsafe(
            self._control.send(key=key.encode("utf-8", "surrogateescape"), value=b"", headers=[kind.header]),
            self._app.loop,
        )

    def _reassert_route(self, topic: str, tenant: str, kept: Route, reason: str) -> None:
        """Poison under a live route's key: the writer writes the route again, so that
        compaction, which keeps only the newest record of a key, keeps a good one (see
        RouteCache.add_poison_listener)."""
        self._send(route_key(topic, tenant), MessageKind.ROUTE_REASSERT)

    def _draining_read(self, topic: str, tenant: str, route: Route | None) -> None:
        """A draining route the cache has read is committed: its drain's roll call may open
        (see control.drain), on the agent, now rather than on the next tick."""
        if (
            route is None
            or route.status is not RouteStatus.DRAINING
            or not self._cache.ready
            or not self._app.is_writer()
        ):
            return
        self._send(route_key(topic, tenant), MessageKind.DRAIN_CHECK)

    def _check_route(self, topic: str, tenant: str, route: Route | None) -> None:
        """A route change the cache applied that the writer could not have made (an epoch it
        never issued, a tombstone over its live route) is repaired on the agent, which alone
        may write the table."""
        if not self._cache.ready or not self._app.is_writer():
            return
        key = route_key(topic, tenant)
        if self._writer.foreign_epoch(key, route) or (
            route is None and self._writer.current(topic, tenant) is not None
        ):
            self._send(key, MessageKind.ROUTE_CHECK)
