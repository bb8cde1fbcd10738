"""Route schema evolution through the real registry (Apicurio, Confluent API).

A newer worker writes routes with a v2 schema (one more field, with a default): today's
producers read them, and a v2 reader reads today's routes. The registry refuses what would break
a reader, and `topics ensure` makes it check both directions on the project's subjects.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from routing_app.client import RoutingProducer
from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable, registry_client
from routing_app.codec.schemas import load_schema
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.routes.codec import ROUTE_SCHEMA
from routing_app.topics import create_topic, routing_topics
from routing_app.topics.admin import ensure_compatibility
from routing_app.topics.specs import SUBJECT_COMPATIBILITY
from tests.e2e.support import fresh_routing_settings, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 6
REGION = {
    "name": "region",
    "type": "string",
    "default": "",
    "doc": "v2: where the deciding worker ran (a newer worker's field).",
}


def route_schema(change: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    """schemas/route.avsc with its fields changed by ``change``."""
    schema = copy.deepcopy(load_schema(ROUTE_SCHEMA))
    change(schema["fields"])
    return schema


def with_region(fields: list[dict[str, Any]]) -> None:
    fields.append(dict(REGION))


def codec_for(
    schema: dict[str, Any], registry: SchemaRegistryClient, routes_topic: str, monkeypatch: pytest.MonkeyPatch
) -> AvroCodec:
    """The project's own codec, built on another route.avsc: what a newer worker would run."""
    with monkeypatch.context() as patch:
        patch.setattr(
            "routing_app.codec.avro.load_schema",
            lambda name: schema if name == ROUTE_SCHEMA else load_schema(name),
        )
        return AvroCodec(registry, ROUTE_SCHEMA, routes_topic)


def route(topic: str, tenant: str, partition: int, epoch: int) -> Route:
    return Route(
        topic,
        tenant,
        (partition,),
        epoch,
        reason="schema evolution",
        updated_at_ms=int(time.time() * 1000),
        decided_by="e2e",
    )


def write(s: Settings, key: bytes, value: bytes) -> None:
    producer = Producer(client_settings(s.bootstrap, acks="all"))
    producer.produce(s.routes_topic, value, key)
    assert producer.flush(10) == 0


def refusal(registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]) -> str:
    """The registry's error for ``schema``; fails the test if it was registered."""
    with pytest.raises(SchemaRegistryError) as refused:
        registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    assert refused.value.http_status_code == 409, refused.value
    return str(refused.value)


def test_newer_route_schema_is_read_by_todays_producer_and_the_other_way_round(
    stack_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = fresh_routing_settings(stack_settings, "evolve")
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(s.bootstrap, topic, PARTITIONS)
    registry = registry_client(s.registry_url)
    subject = f"{s.routes_topic}-value"
    registry.set_compatibility(subject, "BACKWARD")

    today = RouteCodec(registry, s.routes_topic)
    newer = codec_for(route_schema(with_region), registry, s.routes_topic, monkeypatch)
    old_route = route(topic, "by-todays-worker", 1, 1)
    old_bytes = today.encode(old_route)
    write(s, today.encode_key(topic, old_route.tenant), old_bytes)
    new_route = route(topic, "by-newer-worker", 2, 1)
    new_bytes = newer.encode({**new_route.to_record(), "region": "eu-west-1"})
    write(s, today.encode_key(topic, new_route.tenant), new_bytes)
    assert newer.schema_id != today.values.schema_id
    assert registry.get_versions(subject) == [1, 2]

    # A v2 reader reads today's route, with the new field's default.
    assert newer.decode(old_bytes) == {**old_route.to_record(), "region": ""}
    assert newer.decode(new_bytes)["region"] == "eu-west-1"
    # Today's codec reads the v2 route, without the field it does not know.
    assert today.decode(today.encode_key(topic, new_route.tenant), new_bytes) == (
        topic,
        new_route.tenant,
        new_route,
    )

    with RoutingProducer(s.producer_config(**{"routing.usage.enabled": False})) as producer:
        producer.wait_ready(30)
        assert producer.route_for(topic, new_route.tenant) == new_route
        assert producer.route_for(topic, old_route.tenant) == old_route
        # ... and follows a v2 route written while it runs.
        moved = route(topic, new_route.tenant, 4, 2)
        write(
            s,
            today.encode_key(topic, moved.tenant),
            newer.encode({**moved.to_record(), "region": "eu-west-1"}),
        )
        wait_for(
            lambda: producer.route_for(topic, moved.tenant) == moved,
            20,
            "the route moved by the newer worker",
        )
        assert producer.send(topic, b"v", moved.tenant.encode()).result(10).partition == 4
        assert producer.cache is not None and producer.cache.wait_settled(30)
        assert producer.cache.stats().undecodable == 0


def test_incompatible_route_schema_is_refused_with_the_reason(
    stack_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = fresh_routing_settings(stack_settings, "evolve")
    registry = registry_client(s.registry_url)
    subject = f"{s.routes_topic}-value"
    registry.set_compatibility(subject, "BACKWARD")
    assert RouteCodec(registry, s.routes_topic).values.schema_id > 0

    def epoch_as_text(fields: list[dict[str, Any]]) -> None:
        next(f for f in fields if f["name"] == "epoch")["type"] = "string"

    def region_required(fields: list[dict[str, Any]]) -> None:
        fields.append({"name": "region", "type": "string"})

    changed_type = refusal(registry, subject, route_schema(epoch_as_text))
    assert "Incompatible" in changed_type and "LONG" in changed_type, changed_type
    no_default = refusal(registry, subject, route_schema(region_required))
    assert "Incompatible" in no_default and "region" in no_default, no_default
    # A newer worker with such a schema cannot write a single route: the codec says why.
    newer = codec_for(route_schema(region_required), registry, s.routes_topic, monkeypatch)
    with pytest.raises(
        RegistryUnavailable,
        match=rf"refused schema 'route' for subject "
        rf"'{subject}'.*Incompatible",
    ):
        newer.encode({**route("t", "x", 0, 1).to_record(), "region": "eu"})
    assert registry.get_versions(subject) == [1]


def test_topics_ensure_makes_the_registry_check_both_ways(
    stack_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def without_epoch(fields: list[dict[str, Any]]) -> None:
        fields.remove(next(f for f in fields if f["name"] == "epoch"))

    # BACKWARD (what the registries default to) only checks that new readers read old records:
    # it accepts a route schema without `epoch`, and today's producers cannot read its routes.
    loose = fresh_routing_settings(stack_settings, "evolve")
    registry = registry_client(loose.registry_url)
    registry.set_compatibility(f"{loose.routes_topic}-value", "BACKWARD")
    today = RouteCodec(registry, loose.routes_topic)
    assert today.values.schema_id > 0
    dropped = codec_for(route_schema(without_epoch), registry, loose.routes_topic, monkeypatch)
    record = route("orders", "t", 0, 1).to_record()
    del record["epoch"]
    with pytest.raises(DecodeError):
        today.decode(b"orders/t", dropped.encode(record))

    s = fresh_routing_settings(stack_settings, "evolve")
    specs = routing_topics(s)
    subjects = [subject for spec in specs for subject in spec.subjects]
    routes_subject = f"{s.routes_topic}-value"
    registry.set_compatibility(routes_subject, "BACKWARD")
    assert RouteCodec(registry, s.routes_topic).values.schema_id > 0

    changed = dict(ensure_compatibility(s.registry_url, specs))
    assert changed[routes_subject] == "BACKWARD"
    assert set(changed) == set(subjects)  # those not registered yet too
    assert {registry.get_compatibility(x) for x in subjects} == {SUBJECT_COMPATIBILITY}
    assert ensure_compatibility(s.registry_url, specs) == []

    reason = refusal(registry, routes_subject, route_schema(without_epoch))
    assert "Incompatible" in reason and "epoch" in reason, reason
    # Adding a field with a default still evolves the schema.
    assert codec_for(route_schema(with_region), registry, s.routes_topic, monkeypatch).schema_id > 0
    assert registry.get_versions(routes_subject) == [1, 2]
