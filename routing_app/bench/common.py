"""What the benchmarks share: progress reporting, scratch topics, fast route writing, statistics."""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from types import TracebackType
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import admin_client, client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.topics import create_topic

log = logging.getLogger(__name__)

Advance = Callable[[int], None]


class Reporter(Protocol):
    """Where a benchmark tells a person what it is doing (never stdout: that is for the JSON)."""

    def note(self, message: str) -> None: ...

    def progress(self, description: str, total: int) -> AbstractContextManager[Advance]: ...


class SilentReporter:
    """For tests and library callers: says nothing."""

    def note(self, message: str) -> None:
        log.debug("%s", message)

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Advance]:
        yield lambda n: None


# -- scratch topics ----------------------------------------------------------------------------
class Scratch:
    """Topics named ``bench.<kind>.<suffix>``, created on demand and deleted on exit.

    Their registry subjects (``<topic>-value``, registered by the codecs on first use) are
    deleted too, so a benchmark leaves nothing behind on a shared development cluster.
    """

    def __init__(self, settings: Settings, reporter: Reporter | None = None) -> None:
        self.settings = settings
        self.suffix = uuid.uuid4().hex[:10]
        self._reporter = reporter or SilentReporter()
        self._topics: list[str] = []

    def topic(self, kind: str, partitions: int, config: dict[str, str] | None = None) -> str:
        name = f"bench.{kind}.{self.suffix}"
        create_topic(self.settings.kafka, name, partitions, config, self.settings.replication_factor)
        self._topics.append(name)
        self._reporter.note(f"created topic {name} ({partitions} partition(s))")
        return name

    def routes_topic(self, kind: str = "routes") -> str:
        """A routes topic shaped like the real one: compacted, one partition."""
        return self.topic(kind, 1, {"cleanup.policy": "compact"})

    def usage_topic(self, kind: str = "usage") -> str:
        return self.topic(kind, self.settings.usage_partitions, {"cleanup.policy": "delete"})

    def __enter__(self) -> Scratch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        topics, self._topics = self._topics, []
        if not topics:
            return
        admin = admin_client(self.settings.kafka)
        futures = admin.delete_topics(topics, operation_timeout=30, request_timeout=30)
        for name, future in futures.items():
            try:
                future.result(60)
            except KafkaException as exc:
                log.warning("could not delete benchmark topic %s: %s", name, exc)
                self._reporter.note(f"[yellow]could not delete topic {name}: {exc}[/]")
        self._reporter.note(f"deleted {len(topics)} benchmark topic(s)")
        subjects = {f"{name}-value" for name in topics}
        try:
            registry = registry_client(self.settings.registry_config())
            for subject in sorted(subjects & set(registry.get_subjects())):
                registry.delete_subject(subject)
                registry.delete_subject(subject, permanent=True)
        except Exception as exc:  # cleanup of a shared registry: never hide the benchmark result
            log.warning("could not delete benchmark registry subjects %s: %s", subjects, exc)


# -- writing routes ----------------------------------------------------------------------------
def tenant_id(index: int) -> str:
    return f"tenant-{index:07d}"


def _avro_long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


class RouteValues:
    """Route values for many tenants of one route template, encoded once and spliced.

    A registry-framed Avro record is the 5-byte header followed by its fields' encodings in
    schema order; the benchmark routes differ only in ``tenant`` (the second field), so each
    value is ``header + topic + tenant + rest`` with ``rest`` encoded once by the real
    RouteCodec. Every template is checked by decoding samples with RouteCodec: ~0.3 us a route
    instead of ~8 us through fastavro, which matters when writing a million.
    """

    def __init__(self, codec: RouteCodec) -> None:
        self._codec = codec
        self._parts: dict[tuple[object, ...], tuple[bytes, bytes]] = {}

    def _template(self, template: Route) -> tuple[bytes, bytes]:
        # Route is not hashable (its attributes are a mapping proxy): key by the fields.
        key = (
            template.topic,
            template.partitions,
            template.epoch,
            template.mode,
            template.status,
            template.reason,
            template.updated_at_ms,
            template.previous_partitions,
            template.decided_by,
            tuple(sorted(template.attributes.items())),
        )
        parts = self._parts.get(key)
        if parts is None:
            encoded = self._codec.encode(template)
            prefix_len = (
                5 + len(_avro_long(len(template.topic.encode("utf-8")))) + len(template.topic.encode("utf-8"))
            )
            if encoded[prefix_len] != 0:  # the empty tenant: a zero length
                raise AssertionError("route schema no longer starts with topic, tenant")
            parts = (encoded[:prefix_len], encoded[prefix_len + 1 :])
            self._parts[key] = parts
            for sample in ("t", "tenant-ü/x", "x" * 300):
                route = replace(template, tenant=sample)
                got = self._codec.decode(
                    RouteCodec.encode_key(route.topic, sample), self._splice(parts, sample)
                )[2]
                if got != route or self._codec.encode(route) != self._splice(parts, sample):
                    raise AssertionError(f"spliced route value differs for {route}")
        return parts

    @staticmethod
    def _splice(parts: tuple[bytes, bytes], tenant: str) -> bytes:
        raw = tenant.encode("utf-8")
        return b"".join((parts[0], _avro_long(len(raw)), raw, parts[1]))

    def encode(self, route: Route) -> bytes:
        return self._splice(self._template(replace(route, tenant="")), route.tenant)

    def record(self, route: Route) -> tuple[bytes, bytes]:
        """(key, value) of the route on the routes topic."""
        return RouteCodec.encode_key(route.topic, route.tenant), self.encode(route)


def produce_all(
    settings: Settings,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    total: int,
    reporter: Reporter,
    description: str,
) -> None:
    """Writes (key, value) records with a batching producer; raises if one is not acknowledged."""
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(
        client_settings(
            settings.kafka,
            **{
                "acks": "all",
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
            },
        )
    )
    step = max(1, min(10_000, total // 100))
    with reporter.progress(description, total) as advance:
        done = 0
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
            if done % step == 0:
                producer.poll(0)
                advance(step)
        left = producer.flush(120)
        advance(done % step)
    if left or failures:
        raise RuntimeError(
            f"{left} route records not acknowledged, {len(failures)} failed"
            f"{': ' + str(failures[0]) if failures else ''}"
        )


def write_routes(
    settings: Settings,
    routes_topic: str,
    routes: Iterable[Route],
    total: int,
    reporter: Reporter,
    description: str = "writing routes",
) -> None:
    values = RouteValues(RouteCodec(registry_client(settings.registry_config()), routes_topic))
    produce_all(settings, routes_topic, (values.record(r) for r in routes), total, reporter, description)


# -- numbers -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rounded(value: float, digits: int = 3) -> float:
    return float(round(value, digits))
