"""Strict moves at the route writer, from the draining route to the move's end: the drains in
progress (a table), the producers' acks, the roll call, the consumer groups' commits, and the
write that ends each drain, done or out of time. The rules are control.drain's; this is their
I/O: tables, the broker, the wake-ups.

Apart from the writer's core because a drain outlives the decision that started it: it is
supervised record after record and tick after tick until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

import faust
from confluent_kafka.admin import OffsetSpec

from routing_app.app.producers import ProducerRoll, RollCalls
from routing_app.app.writer_broker import WriterBroker
from routing_app.app.writer_tables import WriterTables
from routing_app.client.partitioner import java_partition
from routing_app.config import Settings
from routing_app.control import Decision
from routing_app.control import drain as drains
from routing_app.control.drain import Drain, OnTimeout, Phase
from routing_app.routes import Route
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus, hash_base_of, hash_modulus, route_key

log = logging.getLogger(__name__)

# How often a drain waiting for the consumer groups asks for their commits: most of a pause is
# this wait (a group commits every 100 ms or so), so the wake-up follows the commit closely.
CONSUMER_POLL_S = 0.02


class DecisionWriter(Protocol):
    """RouteWriter._write: the route change and its event (held until the releases)."""

    def __call__(self, decision: Decision, *, release_from: Sequence[str] = ...) -> Awaitable[None]: ...


class DrainSupervisor:
    def __init__(
        self,
        settings: Settings,
        tables: WriterTables,
        counters: dict[str, int],
        roll: ProducerRoll,
        roll_calls: RollCalls,
        broker: WriterBroker,
        answers_offset: Callable[[OffsetSpec], int],
        write: DecisionWriter,
        worker_id: str,
    ) -> None:
        self._settings = settings
        self._tables = tables
        self._counters = counters
        self._roll = roll
        self._roll_calls = roll_calls
        self._broker = broker
        self._answers_offset = answers_offset  # late-bound by the writer: tests stub it
        self._write = write
        self._worker_id = worker_id
        self._lag_groups = [g.strip() for g in settings.lag_groups.split(",") if g.strip()]
        self._on_timeout = OnTimeout(settings.drain_on_timeout)
        self._wakers: dict[str, asyncio.Task[None]] = {}
        # route key -> (drain epoch, end offsets read when a producer was found silent)
        self._silent_targets: dict[str, tuple[int, dict[int, int]]] = {}
        self.control_topic: faust.TopicT | None = None  # for drain wake-ups; set by the app

    def pending(self) -> dict[str, Drain]:
        return {key: Drain.from_record(value) for key, value in self._tables.drains.items()}

    def start(self, decision: Decision, current: Route | None, partition_count: int) -> Decision | None:
        """The draining route to write instead of the decision, its drain recorded; None when
        the move changes no partition after all (default hashing lands where it is)."""
        event = decision.event
        current_base = self._tables.route(route_key(event.topic, HASH_BASE_TENANT))
        hashed = (
            None
            if event.tenant == HASH_BASE_TENANT
            else java_partition(
                event.tenant.encode("utf-8", "surrogateescape"),
                hash_modulus(partition_count, hash_base_of(current_base)),
            )
        )
        draining, drain = drains.start(
            decision,
            current,
            hashed,
            now_ms=_now_ms(),
            timeout_ms=self._settings.drain_timeout_ms,
            live_producers=self._roll.live(_now_ms()),
        )
        if drain.from_partitions == drain.to_partitions:
            return None
        self._tables.drains[route_key(event.topic, event.tenant)] = drain.to_record()
        self._counters["drains_started"] += 1
        # Its roll call opens once the route cache reads it (WriterInput).
        return draining

    def join(self, producer_id: str, offset: int) -> None:
        """A producer's hello: a drain whose roll call it belongs to waits for it too."""
        for key, drain in self.pending().items():
            if producer_id in drain.expected or producer_id in drain.acks:
                continue
            if drains.hello_joins(self._roll_calls.end(key, drain), offset):
                self._tables.drains[key] = drain.with_expected(producer_id).to_record()
                log.info(
                    "drain of %s waits for producer %s too (its hello came before the "
                    "draining route was committed)",
                    key,
                    producer_id,
                )

    async def acked(self, ack: DrainAck) -> None:
        key = route_key(ack.topic, ack.tenant)
        record = self._tables.drains.get(key)
        drain = Drain.from_record(record) if record is not None else None
        if drain is None or drain.epoch != ack.epoch:
            # A late answer to a drain that already ended, or a producer behind on routes.
            self._counters["drain_acks_stale"] += 1
            return
        self._counters["drain_acks"] += 1
        # A producer's answer is also its heartbeat.
        self._roll.saw(ack.producer_id, ack.acked_at_ms)
        self._tables.drains[key] = drain.with_ack(ack).to_record()
        await self.check([key], _now_ms())

    async def check(self, keys: Iterable[str] | None, now: int) -> None:
        """Ends the drains that are done or out of time (all of them, or ``keys``); wakes
        itself for consumer waits."""
        pending = self.pending()
        live = self._roll.live(now)
        grace = self._settings.drain_ack_grace_ms
        if keys is None and not self._broker.connected:
            # Connected ahead (a tick): the first drain's roll call would pay for it.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._answers_offset, OffsetSpec.latest())
        for key in pending if keys is None else [k for k in keys if k in pending]:
            drain = pending[key]
            await self._roll_calls.open(key, drain)
            step = drains.progress(
                drain, now, live, ack_grace_ms=grace, roll_call_done=await self._roll_calls.done(key, drain)
            )
            if step.phase in (Phase.CONSUMERS, Phase.DONE) and drain.answered_ms is None:
                drain = replace(drain, answered_ms=now)
                self._tables.drains[key] = drain.to_record()
            if step.phase is Phase.CONSUMERS or (step.phase is Phase.DONE and self._lag_groups):
                # The producers are done: now the broker's view (commits, end offsets) decides.
                step = await asyncio.to_thread(self._consumer_progress, drain, now, live)
            if step.phase is Phase.CONSUMERS:
                self._wake_when_consumed(key, drain)
            if step.phase in (Phase.DONE, Phase.TIMED_OUT):
                waited_for = (
                    drains.describe_wait(drain, step, self._lag_groups)
                    if step.phase is Phase.TIMED_OUT
                    else ()
                )
                await self._finish(key, drain, step.phase, waited_for)

    def _consumer_progress(self, drain: Drain, now: int, live: set[str]) -> drains.Progress:
        partitions = list(drain.from_partitions)
        committed = self._broker.consumer_commits(self._lag_groups, drain.topic, partitions)
        # Only called once the producers' phase is over, roll call included.
        first = drains.progress(
            drain,
            now,
            live,
            ack_grace_ms=self._settings.drain_ack_grace_ms,
            roll_call_done=True,
            committed=committed,
        )
        if not first.needs_end_offsets:
            return first
        # Read once per drain: the end moves on with other tenants' records, and a target
        # that moves with it might never be reached while traffic flows.
        ends = self._silent_targets.get(route_key(drain.topic, drain.tenant))
        if ends is None or ends[0] != drain.epoch:
            ends = (drain.epoch, self._broker.end_offsets(drain.topic, partitions))
            self._silent_targets[route_key(drain.topic, drain.tenant)] = ends
        return drains.progress(
            drain,
            now,
            live,
            ack_grace_ms=self._settings.drain_ack_grace_ms,
            roll_call_done=True,
            committed=committed,
            end_offsets=ends[1],
        )

    def _wake_when_consumed(self, key: str, drain: Drain) -> None:
        """Polls the groups' commits off the agent and sends a wake-up once they passed (ticks
        would add up to a second to every pause)."""
        if key in self._wakers or self.control_topic is None:
            return
        topic = self.control_topic

        async def wake() -> None:
            try:
                while True:
                    now = _now_ms()
                    step = await asyncio.to_thread(self._consumer_progress, drain, now, self._roll.live(now))
                    if step.phase is not Phase.CONSUMERS:
                        await topic.send(
                            key=key.encode("utf-8"), value=b"", headers=[MessageKind.DRAIN_CHECK.header]
                        )
                        return
                    await asyncio.sleep(CONSUMER_POLL_S)
            except Exception:
                log.exception("drain of %s: waiting for consumer groups failed; ticks go on", key)
            finally:
                self._wakers.pop(key, None)

        self._wakers[key] = asyncio.ensure_future(wake())

    async def _finish(self, key: str, drain: Drain, outcome: Phase, waiting_for: tuple[str, ...]) -> None:
        decision = drains.finish(
            drain,
            self._tables.route(key),
            outcome,
            # A hash base not every producer acknowledged must not stand: the topic would grow
            # under a producer that still hashes by the partition count.
            OnTimeout.ABORT if drain.tenant == HASH_BASE_TENANT else self._on_timeout,
            now_ms=_now_ms(),
            worker_id=self._worker_id,
            waiting_for=waiting_for,
        )
        self._silent_targets.pop(key, None)
        self._roll_calls.forget(key)
        self._counters[
            {
                "drain-complete": "drains_completed",
                "drain-forced": "drains_forced",
                "drain-abort": "drains_aborted",
            }[decision.event.action]
        ] += 1
        # Whoever holds the tenant releases it on this write, and reports what it held.
        holders = set(drain.acks) | (set(drain.expected) & self._roll.live(_now_ms()))
        try:
            await self._write(decision, release_from=sorted(holders))
        finally:
            # Only once its end is in the table, written ahead (writer_events): a writer killed
            # before leaves its successor the end to write, not a draining route that nothing
            # ends. (A write that failed before the route keeps the drain, to end it again.)
            self.drop_stale([key])

    def started(self, key: str, epoch: int) -> bool:
        """Whether the key's drain of ``epoch`` is in the table."""
        record = self._tables.drains.get(key)
        return record is not None and Drain.from_record(record).epoch == epoch

    def drop_stale(self, keys: Iterable[str] | None = None) -> None:
        """Drops the drains (of ``keys``, or all) whose draining route is not in the table: a
        drain is in progress only while it is. At takeover (RouteWriter.recover), such a drain
        never started (the writer before died between the drain and its route) or has ended
        (it died before removing it); waiting for answers to a route nobody read would abort a
        move that never was."""
        drains = self._tables.drains
        for key in list(drains) if keys is None else [k for k in keys if k in drains]:
            drain = Drain.from_record(drains[key])
            route = self._tables.route(key)
            if route is None or route.status is not RouteStatus.DRAINING or route.epoch != drain.epoch:
                if keys is None:
                    log.warning("drain of %s (epoch %d) has no draining route: dropped", key, drain.epoch)
                del drains[key]


def _now_ms() -> int:
    return int(time.time() * 1000)
