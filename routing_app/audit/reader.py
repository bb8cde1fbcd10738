"""Reads the routes topic and the events topic from the beginning for the audit. Kafka I/O only.

Both topics are read up to the high watermarks seen when the read begins, so one read is one
snapshot even while the writer keeps going. Records that cannot be decoded are kept as
``Undecodable`` and never stop the read. A progress bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from routing_app.audit.records import EVENTS, ROUTES, EventRecord, RouteRecord, RoutesLog, Undecodable
from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import Settings
from routing_app.connection import AUDIT_GROUP_PREFIX, KafkaUnreachable, client_settings, reader_group
from routing_app.routes.codec import RouteCodec
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent

log = logging.getLogger(__name__)

_BATCH = 10_000


class AuditReadError(RuntimeError):
    """A topic the audit needs is missing or could not be read to its end."""


@dataclass
class AuditInput:
    routes: RoutesLog
    events: list[EventRecord]
    undecodable: list[Undecodable] = field(default_factory=list)

    @property
    def undecodable_routes(self) -> int:
        return sum(1 for u in self.undecodable if u.source == ROUTES)

    @property
    def undecodable_events(self) -> int:
        return sum(1 for u in self.undecodable if u.source == EVENTS)


@dataclass
class _Partition:
    source: str
    topic: str
    partition: int
    low: int
    high: int
    position: int = 0
    offsets: list[int] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.position >= self.high


def read_history(
    settings: Settings,
    *,
    console: Console | None = None,
    progress: bool | None = None,
    stall_timeout_s: float = 30.0,
) -> AuditInput:
    """Everything still on the routes topic and the events topic, decoded.

    ``progress`` None: show a progress bar when ``console`` is a terminal. Raises AuditReadError
    when a topic is missing or stops delivering for ``stall_timeout_s`` before its end.
    """
    err = console or Console(stderr=True)
    registry = registry_client(settings.registry_config())
    route_codec = RouteCodec(registry, settings.routes_topic)
    event_codec = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
    consumer = Consumer(
        client_settings(
            settings.kafka,
            **{
                "group.id": reader_group(AUDIT_GROUP_PREFIX),
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            },
        )
    )
    try:
        parts = _partitions(consumer, settings)
        routes: list[RouteRecord] = []
        events: list[EventRecord] = []
        undecodable: list[Undecodable] = []
        show = err.is_terminal if progress is None else progress
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
            disable=not show,
        ) as bar:
            tasks = {}
            for source, topic in ((ROUTES, settings.routes_topic), (EVENTS, settings.events_topic)):
                total = sum(p.high - p.low for p in parts.values() if p.topic == topic)
                tasks[topic] = bar.add_task(
                    f"{source} ({topic})", total=max(total, 1), completed=0 if total else 1
                )
            pending = [p for p in parts.values() if not p.done]
            if pending:
                consumer.assign([TopicPartition(p.topic, p.partition, p.low) for p in pending])
            last_progress = time.monotonic()
            while any(not p.done for p in parts.values()):
                messages = consumer.consume(num_messages=_BATCH, timeout=0.2)
                if messages:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > stall_timeout_s:
                    behind = [
                        f"{p.topic}[{p.partition}] at {p.position} of {p.high}"
                        for p in parts.values()
                        if not p.done
                    ]
                    raise AuditReadError(f"no records for {stall_timeout_s:g}s: {', '.join(behind)}")
                for message in messages:
                    _take(message, parts, route_codec, event_codec, routes, events, undecodable)
                for topic, task in tasks.items():
                    done = sum(min(p.position, p.high) - p.low for p in parts.values() if p.topic == topic)
                    if any(p.topic == topic for p in parts.values()):
                        bar.update(task, completed=done)
    finally:
        consumer.close()
    route_parts = [p for p in parts.values() if p.source == ROUTES]
    log = RoutesLog(
        routes,
        {p.partition: p.offsets for p in route_parts},
        {p.partition: (p.low, p.high) for p in route_parts},
    )
    return AuditInput(log, events, undecodable)


def _partitions(consumer: Consumer, settings: Settings) -> dict[tuple[str, int], _Partition]:
    try:
        metadata = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise KafkaUnreachable(f"cannot reach Kafka at {settings.bootstrap} ({exc.args[0].str()})") from exc
    found: dict[tuple[str, int], _Partition] = {}
    for source, topic in ((ROUTES, settings.routes_topic), (EVENTS, settings.events_topic)):
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise AuditReadError(
                f"topic {topic!r} does not exist on {settings.bootstrap} "
                f"(routing-app topics ensure creates it)"
            )
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            found[(topic, partition)] = _Partition(source, topic, partition, low, high, position=low)
    return found


def _take(
    message: Message,
    parts: dict[tuple[str, int], _Partition],
    route_codec: RouteCodec,
    event_codec: AvroCodec,
    routes: list[RouteRecord],
    events: list[EventRecord],
    undecodable: list[Undecodable],
) -> None:
    topic, partition = message.topic(), message.partition()
    part = parts.get((topic or "", partition if partition is not None else -1))
    if part is None:
        return
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            part.position = max(part.position, message.offset() or 0, part.high)
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("audit read of %s[%s]: %s", topic, partition, error)
        return
    offset = message.offset() or 0
    if offset >= part.high:  # written after the read began: not part of this snapshot
        part.position = part.high
        return
    part.position = offset + 1
    part.offsets.append(offset)
    _, timestamp = message.timestamp()
    key = message.key()
    try:
        if part.source == ROUTES:
            record_topic, tenant, route = route_codec.decode(key, message.value())
            routes.append(RouteRecord(offset, timestamp, record_topic, tenant, route, part.partition))
        else:
            event = ReassignmentEvent.from_record(event_codec.decode(message.value()))
            events.append(EventRecord(offset, timestamp, event, part.partition))
    except (DecodeError, KeyError, ValueError, TypeError) as exc:
        text = None if key is None else key.decode("utf-8", "replace")
        undecodable.append(
            Undecodable(part.source, part.topic, part.partition, offset, text, f"{type(exc).__name__}: {exc}")
        )
