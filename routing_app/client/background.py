"""The producer's poll thread: delivery reports, drain acks, usage reports, hellos, metadata
refresh."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from confluent_kafka import KafkaException, Producer

from routing_app.client.drains import DrainCoordinator
from routing_app.client.metadata import PartitionCounts

log = logging.getLogger(__name__)

# A hello this often keeps the producer known to the route writer when it sends no usage
# reports (idle, or routing.usage.enabled=false): a third of the writer's default
# producer_expiry_ms (three 10 s windows).
HELLO_INTERVAL_S = 10.0


class Poller:
    def __init__(
        self,
        name: str,
        producer: Producer,
        drains: DrainCoordinator,
        metadata: PartitionCounts,
        report_usage: Callable[[], None],
        usage_interval_s: float,
        stop: threading.Event,
    ) -> None:
        self._producer: Producer | None = producer
        self._drains = drains
        self._metadata = metadata
        self._report_usage = report_usage
        self._interval_s = usage_interval_s
        self._stop = stop
        self._serving_lock = threading.Lock()
        self._serving = 0  # callers' threads serving delivery callbacks (see serving)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread and lets go of librdkafka (see RoutingProducer.close)."""
        self._stop.set()
        self._thread.join(5.0)
        self._producer = None

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Marks a caller's thread as serving delivery callbacks (flush, or a wait for room),
        which the poll thread leaves to it meanwhile: two threads serving them at once take
        the GIL from each other once per record."""
        with self._serving_lock:
            self._serving += 1
        try:
            yield
        finally:
            with self._serving_lock:
                self._serving -= 1

    def _run(self) -> None:
        producer = self._producer
        assert producer is not None
        holds = self._drains.holds
        next_report = time.monotonic() + self._interval_s
        # The first hello is the routes gate's (client.hello), before any send.
        next_hello = time.monotonic() + HELLO_INTERVAL_S
        while not self._stop.is_set():
            if self._serving:
                self._stop.wait(0.05)
            else:
                producer.poll(0.05)
            if holds:
                self._drains.acknowledge()
            now = time.monotonic()
            if now >= next_report:
                next_report = now + self._interval_s
                self._report_usage()
            if now >= next_hello:
                next_hello = now + HELLO_INTERVAL_S
                self._say_hello()
            self._metadata.refresh_if_due(now)

    def _say_hello(self) -> None:
        try:
            self._drains.say_hello()
        except (BufferError, KafkaException) as exc:  # the next one, then
            log.debug("hello to the route writer not sent: %s", exc)
