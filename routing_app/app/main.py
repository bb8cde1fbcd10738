"""Builds the Faust app: the routes Table, the single-writer control agent and the web views.

Nothing here runs at import: ``routing_app.app.app`` (what ``faust -A routing_app.app`` reads)
builds the app on first use, through :func:`default_app`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import faust
from faust.types import CodecArg, FutureMessage

from routing_app.app.codecs import KEY_CODEC, ROUTE_CODEC, register
from routing_app.app.planning import PlanningLoop
from routing_app.app.rebalance import hold_flow_until_seek
from routing_app.app.usage import UsageWindows
from routing_app.app.web import install_views
from routing_app.app.writer import RouteWriter
from routing_app.app.writer_input import WriterInput
from routing_app.app.writer_tables import Acknowledgements, WriterTables
from routing_app.client.cache import RouteCache
from routing_app.codec import AvroCodec, RegistryUnavailable, registry_client
from routing_app.config import ConfigError, Settings, load_settings
from routing_app.connection import aiokafka_noise, polled_client_settings
from routing_app.routes import RouteCodec
from routing_app.routes.messages import MessageKind
from routing_app.topics import TopicSettingsError, ensure_topics, routing_topics
from routing_app.topics.admin import TopicReplicationError, ensure_compatibility, replication_factor
from routing_app.topics.specs import SUBJECT_COMPATIBILITY
from routing_app.usage import USAGE_SCHEMA
from routing_app.windows import WINDOW_SUMMARY_SCHEMA

log = logging.getLogger(__name__)


# While the registry is down at start, a reminder this often that the worker still waits.
REGISTRY_REMINDER_S = 30.0
REGISTRY_RETRY_S = 2.0


class RoutingApp(faust.App):
    """A Faust app that refuses to start on topics it cannot work with, and waits for the
    schema registry before it reads any."""

    routing_settings: Settings
    route_cache: RouteCache
    # Every schema the worker reads or writes: resolved before recovery reads the routes.
    schema_codecs: Sequence[AvroCodec] = ()

    def is_writer(self) -> bool:
        """Owning the control partition makes this worker the route writer and the planner."""
        control = self.routing_settings.control_topic
        return any(tp.topic == control for tp in self.consumer.assignment())

    async def on_first_start(self) -> None:
        await super().on_first_start()
        s = self.routing_settings
        try:
            created, tolerated = await asyncio.to_thread(
                ensure_topics, s.kafka, routing_topics(s), s.replication_factor
            )
            # Faust declares its changelogs with this: the cluster's default when the setting
            # says 0 (3 replicas on a three-broker stack).
            self.conf.topic_replication_factor = await asyncio.to_thread(
                replication_factor, s.kafka, s.replication_factor
            )
        except (TopicSettingsError, TopicReplicationError) as exc:
            for problem in getattr(exc, "problems", [str(exc)]):
                log.critical("refusing to start: %s", problem)
            # Faust would restart a crashed service forever; a wrong topic needs an operator.
            raise SystemExit(f"routing-app worker refuses to start: {exc}") from exc
        for name in created:
            log.info("created topic %s", name)
        for problem in tolerated:
            log.warning("%s", problem)
        await self._wait_for_registry()
        try:  # once the registry answers (it waited above)
            for subject, before in await asyncio.to_thread(
                ensure_compatibility, s.registry_url, routing_topics(s)
            ):
                log.info(
                    "schema compatibility of %s: %s (was %s)",
                    subject,
                    SUBJECT_COMPATIBILITY,
                    before or "the registry's default",
                )
        except Exception as exc:  # advice to the registry: the worker runs without it
            log.warning("could not set the schema compatibility of the routing subjects: %s", exc)
        self.route_cache.start()

    async def _wait_for_registry(self) -> None:
        """Registers the worker's schemas, waiting for the registry as long as it takes.

        The routes table is restored from its changelog as soon as this returns, and a route
        that cannot be decoded there cannot be skipped (that would lose it): with the registry
        down the restore used to fail once and never resume, so the worker never became ready,
        even after the registry came back. With every schema id of ours known first, records
        written with them decode without the registry."""
        url = self.routing_settings.registry_url
        started = time.monotonic()
        waiting = False
        reminded_at = started
        while True:
            try:
                await asyncio.to_thread(_register_all, self.schema_codecs)
            except RegistryUnavailable as exc:
                if _refused(exc):
                    log.critical("refusing to start: %s", exc)
                    raise SystemExit(f"routing-app worker refuses to start: {exc}") from exc
                now = time.monotonic()
                if not waiting:
                    waiting = True
                    log.warning(
                        "waiting for the schema registry at %s before reading the routes "
                        "(%s); retrying every %.0f s",
                        url,
                        exc,
                        REGISTRY_RETRY_S,
                    )
                elif now - reminded_at >= REGISTRY_REMINDER_S:
                    reminded_at = now
                    log.warning(
                        "still waiting for the schema registry at %s after %.0f s: %s",
                        url,
                        now - started,
                        exc,
                    )
                await asyncio.sleep(REGISTRY_RETRY_S)
                continue
            if waiting:
                log.warning(
                    "schema registry at %s answered after %.1f s; starting", url, time.monotonic() - started
                )
            return


USAGE_FETCH_BYTES = 8 * 1024 * 1024  # per partition and fetch


def _register_all(codecs: Sequence[AvroCodec]) -> None:
    for codec in codecs:
        codec.schema_id  # noqa: B018 (registers it, or raises RegistryUnavailable)


def _refused(exc: RegistryUnavailable) -> bool:
    """The registry answered and said no (an incompatible schema): waiting will not help."""
    status = getattr(exc.__cause__, "http_status_code", None)
    return status is not None and 400 <= int(status) < 500 and int(status) != 408


def broker_credentials(s: Settings) -> faust.types.auth.CredentialsT | None:
    """The worker's Kafka credentials, from the same settings librdkafka clients use."""
    protocol = s.security_protocol.upper()
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=s.ssl_ca_location or None)
        if s.ssl_certificate_location:
            context.load_cert_chain(
                s.ssl_certificate_location, s.ssl_key_location or None, s.ssl_key_password or None
            )
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=s.sasl_username,
            password=s.sasl_password,
            mechanism=(s.sasl_mechanism or "PLAIN").upper(),
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def default_app() -> RoutingApp:
    """The worker's app from the environment's settings; a bad one ends it with one line."""
    try:
        return create_app()
    except ConfigError as exc:
        raise SystemExit(f"routing-app worker: {exc}") from None


def create_app(settings: Settings | None = None) -> RoutingApp:
    s = settings or load_settings()
    # aiokafka logs every failed attempt at ERROR: one line per kind and broker, then counts.
    aiokafka_noise.install()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    registry = registry_client(s.registry_config())
    route_codec = RouteCodec(registry, s.routes_topic)
    route_values = register(route_codec)

    app = RoutingApp(
        s.app_id,
        broker=f"kafka://{s.bootstrap}",
        broker_credentials=broker_credentials(s),
        store="memory://",
        web_port=s.web_port,
        # web_host only names the server in URLs; web_bind is what it listens on (Faust's
        # default is every interface, and these views have no authentication).
        web_bind=s.web_bind,
        web_host="127.0.0.1" if s.web_bind in ("0.0.0.0", "::") else s.web_bind,
        topic_replication_factor=max(1, s.replication_factor),  # resolved at first start
        producer_acks=-1,
        broker_session_timeout=s.worker_session_timeout_s,
        # faust-streaming 0.15.3 can hang recovering a standby partition promoted to active
        # (seen here on every kill -9 failover); our tables are small, so a fresh read of the
        # changelog on takeover is cheap and reliable.
        table_standby_replicas=0,
        broker_heartbeat_interval=min(3.0, s.worker_session_timeout_s / 4),
        # aiokafka keeps one fetch in flight per broker, and faust makes it wait up to 1.5 s
        # for data: when the other partitions' batches run out while a fetch long-polls a quiet
        # one (the control partition between ticks), they stall. Measured: with the default
        # 1 MiB, the worker owning the control partition aggregated a backlog 45 % slower than
        # the other one; big batches make that wait rare (bench aggregate, README).
        consumer_max_fetch_size=USAGE_FETCH_BYTES,
    )
    app.routing_settings = s
    app.route_cache = RouteCache(
        polled_client_settings(s.kafka), route_codec, s.routes_topic, name="worker-routes"
    )

    routes_changelog = app.topic(
        s.routes_topic,
        partitions=1,
        internal=False,
        key_type=str,
        value_type=None,
        key_serializer=KEY_CODEC,
        value_serializer=ROUTE_CODEC,
    )
    # What the broker has not acknowledged of the writer's tables and events (see writer_events).
    acks = Acknowledgements()

    def table(name: str, **options: Any) -> WriterTable:
        return writer_table(app, name, acks, **options)

    routes = table("routes", key_type=str, value_type=None, changelog_topic=routes_changelog)
    # Table derives its codecs from the types (JSON for str); writes must match the topic's.
    routes.key_serializer, routes.value_serializer = KEY_CODEC, ROUTE_CODEC
    tables = WriterTables(
        routes=routes,
        epochs=table("route_epochs", default=int),
        history=table("planner_history"),
        frozen=table("frozen_tenants"),
        # The table's old name: its changelog topic ("<app id>-drained_partitions-changelog")
        # is named after it and holds the evacuations already ordered; a new name would lose them.
        evacuated=table("drained_partitions"),
        drains=table("route_drains"),
        # Named for what it first held (finished moves' closing events); now every route change
        # written ahead. Its entries of before are read as they were.
        releases=table("drain_releases"),
        closed=table("closed_producers"),
        # Producers that said hello: a writer taking over knows them before their next report.
        members=table("producer_members"),
        acks=acks,
    )
    control_topic = app.topic(
        s.control_topic, partitions=1, internal=False, key_serializer="raw", value_serializer="raw"
    )
    # The writer's input: the control topic (operators' commands, the workers' summaries and
    # ticks) and the producers' answers, in one stream. Both have one partition, so Faust's
    # assignor gives them to the same worker (topics of one partition count are co-partitioned),
    # with the writer's tables.
    writer_records = app.topic(
        s.control_topic,
        s.answers_topic,
        partitions=1,
        internal=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    events_topic = app.topic(
        s.events_topic, partitions=1, internal=False, key_serializer="raw", value_serializer="raw"
    )
    usage_topic = app.topic(
        s.usage_topic,
        partitions=s.usage_partitions,
        internal=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    hold_flow_until_seek(app, [s.usage_topic, s.control_topic, s.answers_topic])
    writer = RouteWriter(s, registry, tables, events_topic, worker_id)
    writer.control_topic = control_topic
    summary_codec = AvroCodec(
        registry, WINDOW_SUMMARY_SCHEMA, s.control_topic, subject=f"{s.control_topic}-{WINDOW_SUMMARY_SCHEMA}"
    )
    planning = PlanningLoop(s, writer, summary_codec)
    usage_window = app.Table("usage_window", default=_zero_counts, partitions=s.usage_partitions).tumbling(
        s.window_s, expires=3 * s.window_s
    )
    usage_codec = AvroCodec(registry, USAGE_SCHEMA, s.usage_topic)
    usage = UsageWindows(
        s,
        usage_codec,
        summary_codec,
        usage_window,
        control_topic,
        worker_id,
        ready=lambda: not app.rebalancing,
    )
    app.schema_codecs = (route_codec.values, summary_codec, usage_codec, *writer.codecs())

    writer_input = WriterInput(app, writer, planning, app.route_cache, control_topic, s.answers_topic)
    app.route_writer, app.planning, app.usage_windows = writer, planning, usage  # type: ignore[attr-defined]

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _took_over(sender: faust.App, **_: Any) -> None:
        writer_input.took_over()

    @app.agent(writer_records, name="control")
    async def control(stream: faust.StreamT[bytes]) -> None:
        """The single writer: control and answers have one partition each, so one worker runs
        this at a time (see WriterInput)."""
        async for event in stream.events():
            await writer_input.handle(event)

    @app.agent(usage_topic, name="usage")
    async def usage_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await usage.on_report(event.value, event.message.partition, event.message.offset)

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """Closes quiet usage windows here, and lets the planner meet its deadlines."""
        aiokafka_noise.flush()
        try:
            assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == s.usage_topic}
            await usage.on_tick(assigned)
            await control_topic.send(value=b"", headers=[MessageKind.TICK.header])
        except Exception:
            # An exception escaping a Faust timer crashes the whole worker.
            log.exception("usage window tick failed; retrying next second")

    install_views(app, writer, planning, usage, route_values, worker_id)

    del control, usage_agent, tick, _took_over
    return app


def _zero_counts() -> list[int]:
    return [0, 0]


class WriterTable(faust.Table[Any, Any]):
    """A table of the writer's (one partition, with the control topic) whose changelog records
    it can wait for: each is reported to the writer's Acknowledgements as it is sent."""

    acks: Acknowledgements | None = None

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if self.acks is not None:
            self.acks.add(sent)
        return sent


def writer_table(app: faust.App, name: str, acks: Acknowledgements, **options: Any) -> WriterTable:
    """``app.Table(name, partitions=1, **options)``, as a WriterTable reporting to ``acks``."""
    table = WriterTable(app, name=name, beacon=app.tables.beacon, partitions=1, **options)
    table.acks = acks
    app.tables.add(table)
    return table
