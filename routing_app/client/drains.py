"""The producer's side of a strict tenant's move: hold its records, acknowledge the drain once
everything sent before the hold is reported, release the held records when the route settles
(see routing_app.control.drain for the writer's side)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from routing_app.client.cache import RouteCache
from routing_app.client.holds import TenantHold
from routing_app.client.ledger import SendLedger
from routing_app.client.memo import Memo
from routing_app.codec import AvroCodec, RegistryUnavailable
from routing_app.routes import Route
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteMode, RouteStatus, route_key

log = logging.getLogger(__name__)

# Sends one held record by the settled route: (topic, value, key, its produce options).
Resend = Callable[[str, Any, Any, dict[str, Any]], None]


class DrainCoordinator:
    """Holds, acks and releases. The holds share the ledger's send lock with every send: a
    hold's barrier (records sent to the old partitions before it) must be an exact cut of
    librdkafka's order, and a record must either go out before that cut or queue in the hold."""

    def __init__(
        self,
        producer_id: str,
        producer: Producer,
        answers_topic: str,
        hold_max_records: int,
        ledger: SendLedger,
        memo: Memo,
        cache: RouteCache | None,
        acks_codec: AvroCodec | None,
        registry_url: str | None,
        resend: Resend,
    ) -> None:
        # By (topic, tenant); replaced never, so hot paths may hold it.
        self.holds: dict[tuple[str, str], TenantHold] = {}
        self.acks = self.released = self.held_total = 0
        self._producer_id = producer_id
        self._producer: Producer | None = producer
        self._answers_topic = answers_topic
        self._hold_max_records = hold_max_records
        self._ledger = ledger
        self._memo = memo
        self._cache = cache
        self._codec = acks_codec
        self._registry_url = registry_url
        self._resend = resend
        # Hellos (greeting, poll thread) and the goodbye (close) take turns: a hello after the
        # goodbye would bring the closed producer back to life for the writer.
        self._farewell = threading.Lock()
        self._said_goodbye = False

    def route_changed(self, topic: str, tenant: str, route: Route | None) -> None:
        """Cache thread: a strict route draining holds its tenant; any other change releases."""
        if route is not None and route.status is RouteStatus.DRAINING and (route.mode is RouteMode.STRICT):
            self._begin(route)
        elif (topic, tenant) in self.holds:
            self._release(topic, tenant)

    def held_records(self) -> int:
        return sum(len(h.records) for h in list(self.holds.values()))

    def wait_released(self, deadline: float | None) -> None:
        for hold in list(self.holds.values()):
            hold.released.wait(None if deadline is None else max(deadline - time.monotonic(), 0))

    def counters(self) -> dict[str, int]:
        return {
            "held": self.held_records(),
            "held_total": self.held_total,
            "draining_tenants": len(self.holds),
            "drain_acks": self.acks,
            "holds_released": self.released,
        }

    def detach(self) -> None:
        """The producer is closing: let go of librdkafka (see RoutingProducer.close)."""
        self._producer = None

    # -- hold -----------------------------------------------------------------------------------
    def _begin(self, route: Route) -> None:
        """From now on the tenant's records wait; the barrier is what went out before."""
        key = (route.topic, route.tenant)
        with self._ledger.lock:
            current = self.holds.get(key)
            if current is not None and current.epoch >= route.epoch:
                return
            self._memo.take(route.topic, route.tenant.encode("utf-8", "surrogateescape"))
            old = set(route.previous_partitions)
            sent = self._ledger.sent
            barrier = {
                p: sent.get((route.topic, p), 0) + unsent
                for p, unsent in self._memo.unsent_on(route.topic, old).items()
            }
            if current is not None:  # a newer drain of the same tenant: keep what is held
                current.epoch, current.barrier, current.acked = route.epoch, barrier, False
            else:
                self.holds[key] = TenantHold(
                    route.topic, route.tenant, route.epoch, barrier, self._hold_max_records
                )
        log.info(
            "%s: holding %s while it moves %s -> %s (epoch %d)",
            self._producer_id,
            route.key,
            list(route.previous_partitions),
            list(route.partitions),
            route.epoch,
        )

    # -- acknowledge ----------------------------------------------------------------------------
    def acknowledge(self) -> None:
        """Poll thread: answers each hold whose barrier records are all reported."""
        if self._cache is not None and not self._cache.ready:
            return  # a rebuild replays drains long over; answer only what is current
        done, last_offsets = self._ledger.done, self._ledger.last_offsets
        for hold in list(self.holds.values()):
            if hold.acked:
                continue
            if any(done.get((hold.topic, p), 0) < n for p, n in hold.barrier.items()):
                continue
            ack = DrainAck(
                self._producer_id,
                hold.topic,
                hold.tenant,
                hold.epoch,
                {p: last_offsets.get((hold.topic, p), -1) for p in hold.barrier},
                int(time.time() * 1000),
                held=len(hold.records),
            )
            if self._codec is None or self._producer is None:
                return
            if not self._codec.registered:
                # The schema thread is still at it (the registry is down): never ask the
                # registry from here, it would stop delivery reports for seconds per try.
                if not hold.ack_error_logged:
                    hold.ack_error_logged = True
                    log.warning(
                        "%s: drain ack for %s/%s waits for the schema registry at %s "
                        "(the drain-ack schema is not resolved yet)",
                        self._producer_id,
                        hold.topic,
                        hold.tenant,
                        self._registry_url,
                    )
                continue
            try:
                self._producer.produce(
                    self._answers_topic,
                    self._codec.encode(ack.to_record()),
                    route_key(hold.topic, hold.tenant).encode("utf-8"),
                    headers=[MessageKind.DRAIN_ACK.header],
                )
            except (BufferError, RegistryUnavailable, KafkaException) as exc:
                if not hold.ack_error_logged:
                    hold.ack_error_logged = True
                    log.warning(
                        "%s: drain ack for %s/%s not sent yet (retrying): %s",
                        self._producer_id,
                        hold.topic,
                        hold.tenant,
                        exc,
                    )
                continue
            hold.acked = True
            self.acks += 1

    def say_hello(self, on_delivery: Callable[[KafkaError | None], None] | None = None) -> bool:
        """Tells the route writer this producer is here (see client.hello): before its first
        send, with ``on_delivery`` to learn when the broker has it, then every few seconds so
        that an idle producer stays known (Poller). False: closing, or no route cache (such a
        producer never holds, so no move may wait for it)."""
        producer_id = self._producer_id.encode("utf-8")
        with self._farewell:
            producer = self._producer
            if producer is None or self._cache is None or self._said_goodbye:
                return False
            # A callback of its own: a lost hello is not a failed record of the application's
            # (the producer-wide callback counts those).
            answered = on_delivery or _keep_alive_answered
            producer.produce(
                self._answers_topic,
                producer_id,
                producer_id,
                headers=[MessageKind.PRODUCER_HELLO.header],
                on_delivery=lambda err, _message: answered(err),
            )
        return True

    def say_goodbye(self) -> None:
        """Tells the route writer this producer is gone, so no drain waits for its answer
        until its heartbeats (usage reports) expire."""
        if self._codec is None or self._producer is None:
            return
        producer_id = self._producer_id.encode("utf-8")
        try:
            # No answers topic, no route writer that could know this producer: a goodbye to a
            # missing topic would only wait out the flush below. (Every topic is listed:
            # asking for one by name may create it.)
            if self._answers_topic not in self._producer.list_topics(timeout=2.0).topics:
                self._said_goodbye = True
                return
            with self._farewell:
                self._said_goodbye = True
                self._producer.produce(
                    self._answers_topic,
                    producer_id,
                    producer_id,
                    headers=[MessageKind.PRODUCER_CLOSED.header],
                    on_delivery=self._goodbye_answered,
                )
            self._producer.flush(2.0)
        except (BufferError, KafkaException) as exc:
            log.warning("%s: could not announce its close: %s", self._producer_id, exc)

    def _goodbye_answered(self, err: KafkaError | None, _message: object) -> None:
        if err is not None:  # not an application record: the producer-wide callback never sees it
            log.warning(
                "%s: could not announce its close (drains wait for it until its usage reports expire): %s",
                self._producer_id,
                err,
            )

    # -- release --------------------------------------------------------------------------------
    def _release(self, topic: str, tenant: str) -> None:
        """The route is settled: sends the held records by it, in order, before newer ones.

        The hold stays in place until it is empty, so records produced meanwhile queue behind.
        """
        key = (topic, tenant)
        hold = self.holds[key]
        released = 0
        while True:
            with self._ledger.lock:
                batch = hold.take_all()
                if not batch:
                    del self.holds[key]
                    hold.end()
                    break
            for value, record_key, options in batch:
                self._resend(topic, value, record_key, options)
                released += 1
        self.released += 1
        self.held_total += released
        log.info("%s: released %d held records of %s/%s", self._producer_id, released, topic, tenant)
        self._report_release(hold, released)

    def _report_release(self, hold: TenantHold, released: int) -> None:
        """Tells the writer how many records this move really held here: the ack said only how
        many were held when it went out, early in the hold. A rebuild replaying drains long
        over (cache not ready yet) reports nothing."""
        codec, producer = self._codec, self._producer
        if (
            codec is None
            or not codec.registered
            or self._cache is None
            or not self._cache.ready
            or producer is None
        ):
            return
        report = DrainAck(
            self._producer_id, hold.topic, hold.tenant, hold.epoch, {}, int(time.time() * 1000), held=released
        )
        try:
            producer.produce(
                self._answers_topic,
                codec.encode(report.to_record()),
                route_key(hold.topic, hold.tenant).encode("utf-8"),
                headers=[MessageKind.DRAIN_RELEASED.header],
            )
        except (BufferError, RegistryUnavailable, KafkaException) as exc:
            log.warning(
                "%s: release report for %s/%s not sent (the drain event will lack its held count): %s",
                self._producer_id,
                hold.topic,
                hold.tenant,
                exc,
            )


def _keep_alive_answered(err: KafkaError | None) -> None:
    if err is not None:
        log.debug("keep-alive hello to the route writer not delivered: %s", err)
