"""The general send path: every record the memo does not send (see client.memo).

A record with options (tenant, partition, headers, timestamp, a callback), with serializers, or
with a key the memo cannot place: serialized, kept waiting until the routes are read when its
placement depends on them, placed by the router, then sent under the send lock or queued in its
tenant's hold while its route drains; a full queue or hold is waited on up to
routing.max.block.ms. Records a hold releases take the same path. Apart from the front door
because this is the path's own protocol (choose, then send only if no route changed meanwhile;
hold or send; wait, then time out with the reason), which the memoized path never needs.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from routing_app.client.background import Poller
from routing_app.client.errors import HoldTimeout, ProduceTimeout, RoutingProducerError
from routing_app.client.holds import TenantHold
from routing_app.client.ledger import SendLedger
from routing_app.client.memo import Memo
from routing_app.client.options import ProducerOptions
from routing_app.client.readiness import RoutesGate
from routing_app.client.records import DeliveryCallback, RecordMetadata, Serializer, adapt, tenant_name
from routing_app.client.router import Router


class GeneralSender:
    """Sends one record at a time by the general path; the producer's closing detaches it."""

    def __init__(
        self,
        producer: Producer,
        ledger: SendLedger,
        memo: Memo,
        holds: dict[tuple[str, str], TenantHold],
        router: Router,
        routes: RoutesGate,
        poller: Poller,
        options: ProducerOptions,
        bootstrap: str,
        key_serializer: Serializer | None,
        value_serializer: Serializer | None,
    ) -> None:
        self._producer = producer
        self._produce = producer.produce
        self._ledger = ledger
        self._memo = memo
        self._holds = holds
        self._router = router
        self._routes = routes
        self._poller = poller
        self._options = options
        self._max_block_s = options.max_block_ms / 1000.0
        self._bootstrap = bootstrap
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer

    def produce(
        self,
        topic: str,
        value: Any,
        key: Any,
        *,
        tenant: str | bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """RoutingProducer.produce for what its memoized path does not send (the caller has
        checked that the producer is open)."""
        if self._key_serializer is not None and key is not None:
            key = self._key_serializer(key, SerializationContext(topic, MessageField.KEY, headers))
        if self._value_serializer is not None:
            value = self._value_serializer(value, SerializationContext(topic, MessageField.VALUE, headers))
        name = tenant_name(tenant, key)
        deadline = time.monotonic() + self._max_block_s
        if not self._routes.ready and name is not None and partition is None:
            self._routes.wait(deadline)
        self._send(
            topic,
            value,
            key,
            tenant,
            partition,
            headers,
            timestamp,
            on_delivery,
            deadline,
            name,
            may_hold=partition is None,
        )

    def released(self, topic: str, value: Any, key: Any, options: dict[str, Any]) -> None:
        """A held record, by its tenant's settled route (cache thread, see client.drains)."""
        tenant = options["tenant"]
        self._send(
            topic,
            value,
            key,
            tenant,
            None,
            options["headers"],
            options["timestamp"],
            options["on_delivery"],
            time.monotonic() + self._max_block_s,
            tenant_name(tenant, key),
            may_hold=False,
        )

    def detach(self) -> None:
        """The producer is closing: let go of librdkafka (see RoutingProducer.close); a send
        racing the close gets a clear error instead."""
        del self._producer
        self._produce = send_after_close

    def _send(
        self,
        topic: str,
        value: Any,
        key: Any,
        tenant: str | bytes | None,
        partition: int | None,
        headers: Any,
        timestamp: int | None,
        on_delivery: DeliveryCallback | None,
        deadline: float,
        name: str | None,
        *,
        may_hold: bool,
    ) -> None:
        """Chooses, then sends under the send lock, or queues in the tenant's hold while its
        route drains (``may_hold``: not a record the hold is releasing)."""
        # None: the producer-wide callback, which counts failures.
        callback = None if on_delivery is None else adapt(on_delivery, self._ledger.on_delivery_report)
        kwargs: dict[str, Any] = {}
        if headers is not None:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        memo, holds = self._memo, self._holds
        while True:
            epoch = memo.epoch
            chosen, path = self._router.partition_for(topic, key, tenant, partition)
            with self._ledger.lock:
                if memo.epoch != epoch:
                    continue  # a route changed while we chose: choose again
                hold = holds.get((topic, name)) if may_hold and holds and name is not None else None
                if hold is not None:
                    if hold.offer(
                        value,
                        key,
                        {
                            "tenant": tenant,
                            "headers": headers,
                            "timestamp": timestamp,
                            "on_delivery": on_delivery,
                        },
                    ):
                        return
                else:
                    try:
                        self._produce(topic, value, key, -1 if chosen is None else chosen, callback, **kwargs)
                    except BufferError:
                        pass
                    else:
                        self._ledger.count(path, topic, name, chosen, value, None if tenant is None else key)
                        return
            # Full: the local queue, or the tenant's hold while its route drains.
            self._wait_for_room(hold, deadline, topic, name)

    def _wait_for_room(self, hold: TenantHold | None, deadline: float, topic: str, name: str | None) -> None:
        """Waits up to routing.max.block.ms in all for the queue or the hold to have room."""
        if time.monotonic() >= deadline:
            if hold is not None:
                raise HoldTimeout(
                    f"tenant {name!r} on {topic!r} is moving (route draining, epoch "
                    f"{hold.epoch}) and {len(hold.records)} of its records are held "
                    f"(routing.hold.max.records={self._options.hold_max_records}) for "
                    f"{self._options.max_block_ms} ms (routing.max.block.ms): is a worker "
                    f"running the route writer?"
                )
            raise ProduceTimeout(
                f"local queue full for {self._options.max_block_ms} ms "
                f"(routing.max.block.ms); {len(self._producer)} records wait for "
                f"{self._bootstrap}: is the broker reachable?"
            )
        if hold is not None:
            hold.wait_for_room(min(0.05, max(deadline - time.monotonic(), 0.001)))
            return
        with self._poller.serving():
            self._producer.poll(0.05)


def resolves(future: Future[RecordMetadata]) -> DeliveryCallback:
    """The delivery callback of RoutingProducer.send: settles its future."""

    def resolve(err: KafkaError | None, metadata: RecordMetadata | None) -> None:
        if err is not None:
            future.set_exception(KafkaException(err))
        else:
            assert metadata is not None
            future.set_result(metadata)

    return resolve


def send_after_close(*_args: Any, **_kwargs: Any) -> NoReturn:
    """What stands in for librdkafka's produce() once the producer has let go of it."""
    raise RoutingProducerError("producer is closed")
