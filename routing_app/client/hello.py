"""The producer's hello: how the route writer knows of a producer before its first send.

A strict move waits for the producers the writer knows (see routing_app.control.drain). A
producer that just started is not known from its usage reports yet, and may have read the
routes before a move's draining route. So before its routes count as read (RoutesGate), it
says hello on the answers topic, waits for the broker's acknowledgement, and then fetches the
routes topic's end offset: its cache must pass that offset first. Either the writer read the
hello before it closed a move's roll call, and the move waits for this producer's answer; or
the hello was acknowledged after the move's draining route was committed, which is then below
that end offset: the producer holds the tenant from its first record, and nobody waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from routing_app.client.consumer_config import consumer_settings_from
from routing_app.connection import CACHE_GROUP_PREFIX, reader_group, with_client_log

log = logging.getLogger(__name__)

# Sends the hello; the callback gets the broker's answer (None: acknowledged). False: the
# producer is closing, there is nobody to greet for.
SayHello = Callable[[Callable[[KafkaError | None], None]], bool]

_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_WATERMARK_TIMEOUT_S = 5.0


class Greeting:
    """The hello and the routes topic's end offset after it, on a thread of their own, retried
    until they succeed or the producer closes."""

    def __init__(
        self, say_hello: SayHello, rdkafka: dict[str, Any], routes_topic: str, answers_topic: str, name: str
    ) -> None:
        conf = {
            **consumer_settings_from(rdkafka),
            "group.id": reader_group(CACHE_GROUP_PREFIX),
            "enable.auto.commit": False,
        }
        if "logger" in rdkafka:
            conf["logger"] = rdkafka["logger"]
        self._conf = with_client_log(conf, polled=False)
        self._say_hello = say_hello
        self._routes_topic = routes_topic
        self._answers_topic = answers_topic
        self._name = name
        # Set once, before ``done``: the routes topic's end offset read after the hello's ack.
        self.routes_end = 0
        self.acknowledged = False
        self.failure: str | None = None  # the last thing that went wrong, for error messages
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Greeting:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                if not self.acknowledged and attempt == 0 and not self._answers_topic_listed():
                    # Asked first: a hello to a topic that does not exist waits for librdkafka's
                    # topic.metadata.propagation.max.ms (30 s) before it fails.
                    raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
                if not self.acknowledged:
                    self._greet()
                if self.acknowledged and not self._stop.is_set():
                    self.routes_end = self._routes_end()
                    self.failure = None
                    self._done.set()
                    return
            except (KafkaException, BufferError) as exc:
                if _no_answers_topic(exc):
                    # No route writer has ever run (it creates the answers topic before it
                    # serves): no move can be under way. The keep-alive hellos introduce this
                    # producer once one starts.
                    log.info(
                        "%s: the answers topic does not exist (no route writer has run "
                        "yet); routes are read without a hello",
                        self._name,
                    )
                    self.acknowledged = True
                    continue
                self.failure = str(exc)
                if attempt == 2:  # the first tries fail on a cold broker: not worth a warning
                    log.warning("%s: no hello to the route writer yet (retrying): %s", self._name, exc)
            self._stop.wait(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
            attempt += 1

    def _greet(self) -> None:
        answered = threading.Event()
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None) -> None:
            if err is not None:
                errors.append(err)
            answered.set()

        if not self._say_hello(delivered):
            self._stop.set()  # closing
            return
        # Delivery reports are served by the producer's poll thread.
        while not answered.wait(0.1):
            if self._stop.is_set():
                return
        if errors:
            raise KafkaException(errors[0])
        self.acknowledged = True

    def _answers_topic_listed(self) -> bool:
        """Whether the broker lists the answers topic (every topic is asked for: asking for one
        by name may create it). True when the broker cannot tell: the hello then finds out."""
        consumer = Consumer(self._conf)
        try:
            topics = consumer.list_topics(timeout=_WATERMARK_TIMEOUT_S).topics
        except KafkaException:
            return True
        finally:
            consumer.close()
        found = topics.get(self._answers_topic)
        return found is not None and found.error is None

    def _routes_end(self) -> int:
        consumer = Consumer(self._conf)
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(self._routes_topic, 0), timeout=_WATERMARK_TIMEOUT_S
            )
            return int(high)
        finally:
            consumer.close()


def _no_answers_topic(exc: Exception) -> bool:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error is not None and error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
