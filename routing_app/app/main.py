"""Builds the Faust app: the routes Table, the single-writer control agent and the web views."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import faust
from faust.web import Request, Response, View

from routing_app.app.codecs import KEY_CODEC, ROUTE_CODEC, register
from routing_app.app.writer import RouteWriter
from routing_app.client.cache import RouteCache
from routing_app.codec import registry_client
from routing_app.config import Settings, load_settings
from routing_app.routes import RouteCodec
from routing_app.topics import TopicSettingsError, ensure_topics, routing_topics

log = logging.getLogger(__name__)


class RoutingApp(faust.App):
    """A Faust app that refuses to start on topics it cannot work with."""

    routing_settings: Settings
    route_cache: RouteCache

    async def on_first_start(self) -> None:
        await super().on_first_start()
        s = self.routing_settings
        try:
            created, tolerated = await asyncio.to_thread(
                ensure_topics, s.bootstrap, routing_topics(s), s.replication_factor)
        except TopicSettingsError as exc:
            for problem in exc.problems:
                log.critical("refusing to start: %s", problem)
            # Faust would restart a crashed service forever; a wrong topic needs an operator.
            raise SystemExit(f"routing-app worker refuses to start: {exc}") from exc
        for name in created:
            log.info("created topic %s", name)
        for problem in tolerated:
            log.warning("%s", problem)
        self.route_cache.start()


def create_app(settings: Settings | None = None) -> RoutingApp:
    s = settings or load_settings()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    registry = registry_client(s.registry_url)
    route_codec = RouteCodec(registry, s.routes_topic)
    route_values = register(route_codec)

    app = RoutingApp(
        s.app_id,
        broker=f"kafka://{s.bootstrap}",
        store="memory://",
        web_port=s.web_port,
        web_host="127.0.0.1",
        topic_replication_factor=s.replication_factor,
        producer_acks=-1,
    )
    app.routing_settings = s
    app.route_cache = RouteCache({"bootstrap.servers": s.bootstrap}, route_codec, s.routes_topic,
                                 name="worker-routes")

    routes_changelog = app.topic(
        s.routes_topic, partitions=1, internal=False, key_type=str, value_type=None,
        key_serializer=KEY_CODEC, value_serializer=ROUTE_CODEC,
    )
    routes = app.Table("routes", partitions=1, key_type=str, value_type=None,
                       changelog_topic=routes_changelog)
    # Table derives its codecs from the types (JSON for str); writes must match the topic's.
    routes.key_serializer, routes.value_serializer = KEY_CODEC, ROUTE_CODEC  # type: ignore[attr-defined]
    # Highest epoch ever written per route key; survives the tombstones that clear `routes`.
    epochs = app.Table("route_epochs", default=int, partitions=1, key_type=str, value_type=int)
    control_topic = app.topic(s.control_topic, partitions=1, internal=False,
                              key_serializer="raw", value_serializer="raw")
    events_topic = app.topic(s.events_topic, partitions=1, internal=False,
                             key_serializer="raw", value_serializer="raw")
    writer = RouteWriter(s, registry, routes, epochs, events_topic, worker_id)
    app.route_writer = writer  # type: ignore[attr-defined]

    @app.agent(control_topic, name="control")
    async def control(stream: faust.StreamT[bytes]) -> None:
        """The single writer: control has one partition, so one worker runs this at a time."""
        async for event in stream.events():
            await writer.handle_command_bytes(event.value, event.message.offset)

    @app.page("/routes/")
    class RoutesView(View):
        async def get(self, request: Request) -> Response:
            topic = request.query.get("topic")
            items = [r.to_json() for r in app.route_cache if topic in (None, r.topic)]
            items.sort(key=lambda r: r["key"])
            return self.json({"routes": items, "count": len(items),
                              "cache": app.route_cache.stats().__dict__})

    @app.page("/routes/{topic}/{tenant}")
    class RouteView(View):
        async def get(self, request: Request, topic: str, tenant: str) -> Response:
            route = app.route_cache.get(topic, tenant)
            if route is None:
                return self.json({"topic": topic, "tenant": tenant, "route": None,
                                  "placement": "default hashing (murmur2)"}, status=404)
            return self.json({"topic": topic, "tenant": tenant, "route": route.to_json()})

    @app.page("/writer/stats")
    class WriterStatsView(View):
        async def get(self, request: Request) -> Response:
            stats: dict[str, Any] = dict(writer.counters)
            stats["undecodable_routes_in_table"] = route_values.undecodable
            stats["worker_id"] = worker_id
            stats["time_ms"] = int(time.time() * 1000)
            return self.json(stats)

    del control
    return app


app = create_app()
