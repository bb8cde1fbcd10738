"""Route keys, Route validation and records, and RouteCodec on the wire."""

from __future__ import annotations

import string
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing_app.codec import DecodeError
from routing_app.routes import (
    Route,
    RouteCodec,
    RouteError,
    RouteMode,
    RouteStatus,
    parse_route_key,
    route_key,
    validate_topic_name,
)
from routing_app.routes.model import HASH_BASE_TENANT, hash_base_route

FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TOPIC_CHARS = string.ascii_letters + string.digits + "._-"
topics = st.text(TOPIC_CHARS, min_size=1, max_size=50).filter(lambda t: t not in (".", ".."))
tenants = st.text(max_size=40)
small_text = st.text(max_size=30)


def mock_registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://unit-{uuid.uuid4().hex}"})


def _route(**changes: object) -> Route:
    base: dict[str, object] = {"topic": "orders", "tenant": "acme", "partitions": (1,), "epoch": 1}
    base.update(changes)
    return Route(**base)  # type: ignore[arg-type]


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "tenant"),
    [("orders", "acme"), ("orders", "acme/eu/west"), ("a", ""), ("t.1_x-2", "/leading"), ("t", "ünïcødé/✓")],
)
def test_route_key_roundtrip(topic: str, tenant: str) -> None:
    key = route_key(topic, tenant)
    assert key == f"{topic}/{tenant}"
    assert parse_route_key(key) == (topic, tenant)
    assert parse_route_key(key.encode("utf-8")) == (topic, tenant)


@pytest.mark.parametrize("key", ["", "orders", "/acme", "/", b"no-separator", b"/x"])
def test_parse_route_key_rejects_invalid(key: str | bytes) -> None:
    with pytest.raises(RouteError, match="is not '<topic>/<tenant>'"):
        parse_route_key(key)


def test_parse_route_key_bad_utf8_bytes() -> None:
    with pytest.raises(UnicodeDecodeError):
        parse_route_key(b"orders/\xff\xfe")


@given(topic=topics, tenant=tenants)
@FAST
def test_route_key_property(topic: str, tenant: str) -> None:
    assert parse_route_key(route_key(topic, tenant)) == (topic, tenant)
    assert parse_route_key(RouteCodec.encode_key(topic, tenant)) == (topic, tenant)


@pytest.mark.parametrize("topic", ["", ".", "..", "a/b", "a b", "x" * 250, "tópico"])
def test_validate_topic_name_rejects(topic: str) -> None:
    with pytest.raises(RouteError, match="is not a Kafka topic name"):
        validate_topic_name(topic)


@pytest.mark.parametrize("topic", ["a", "...", "x" * 249, "A-z_0.9"])
def test_validate_topic_name_accepts(topic: str) -> None:
    assert validate_topic_name(topic) == topic


# -- validation --------------------------------------------------------------------------------


def test_valid_route_validates_and_chains() -> None:
    route = _route(partitions=(0, 5, 2), previous_partitions=(3,))
    assert route.validate(6) is route
    assert route.validate() is route
    assert route.sharded
    assert not _route().sharded
    assert route.key == "orders/acme"


def test_validate_empty_partitions() -> None:
    with pytest.raises(RouteError, match="'orders/acme' names no partitions"):
        _route(partitions=()).validate(4)


def test_validate_duplicate_partitions() -> None:
    with pytest.raises(RouteError, match=r"names a partition twice: \[1, 2, 1\]"):
        _route(partitions=(1, 2, 1)).validate(4)


def test_validate_out_of_range_with_partition_count() -> None:
    _route(partitions=(3,)).validate(4)
    with pytest.raises(RouteError, match=r"partition 4 does not exist .* \(valid: 0..3\)"):
        _route(partitions=(0, 4)).validate(4)


def test_validate_previous_partitions_out_of_range() -> None:
    with pytest.raises(RouteError, match="partition 9 does not exist"):
        _route(partitions=(0,), previous_partitions=(9,)).validate(4)


def test_validate_without_count_allows_any_non_negative() -> None:
    route = _route(partitions=(0, 10_000))
    route.validate(None)  # the partition count unknown: only the count can refuse 10,000
    with pytest.raises(RouteError, match="10000"):
        route.validate(4)


@pytest.mark.parametrize("count", [None, 4])
def test_validate_negative_partition(count: int | None) -> None:
    with pytest.raises(RouteError, match="partition -1 does not exist"):
        _route(partitions=(-1,)).validate(count)


def test_validate_negative_epoch() -> None:
    with pytest.raises(RouteError, match="epoch -1 is negative"):
        _route(epoch=-1).validate(4)


def test_validate_bad_topic() -> None:
    with pytest.raises(RouteError, match="not a Kafka topic name"):
        _route(topic="a/b").validate(4)


# -- records -----------------------------------------------------------------------------------


def test_to_record_from_record_roundtrip() -> None:
    route = _route(
        tenant="acme/eu",
        partitions=(2, 0),
        epoch=9,
        mode=RouteMode.RELAXED,
        status=RouteStatus.DRAINING,
        reason="move",
        updated_at_ms=123,
        previous_partitions=(1,),
        decided_by="op",
        attributes={"pinned": "true"},
    )
    record = route.to_record()
    assert record == {
        "topic": "orders",
        "tenant": "acme/eu",
        "partitions": [2, 0],
        "mode": "relaxed",
        "status": "draining",
        "epoch": 9,
        "reason": "move",
        "updated_at": 123,
        "previous_partitions": [1],
        "decided_by": "op",
        "attributes": {"pinned": "true"},
    }
    again = Route.from_record(record)
    assert again == route
    assert again.mode is RouteMode.RELAXED and again.status is RouteStatus.DRAINING
    assert isinstance(again.partitions, tuple)


def test_from_record_fills_defaults_for_missing_optional_fields() -> None:
    route = Route.from_record({"topic": "t", "tenant": "x", "partitions": [1], "epoch": 2})
    assert route == Route("t", "x", (1,), 2)
    assert route.mode is RouteMode.STRICT and route.status is RouteStatus.ACTIVE


def test_to_json_has_key_and_ms() -> None:
    data = _route(updated_at_ms=5).to_json()
    assert data["key"] == "orders/acme" and data["updated_at_ms"] == 5
    assert "updated_at" not in data


# -- RouteCodec --------------------------------------------------------------------------------


@pytest.fixture
def codec() -> RouteCodec:
    return RouteCodec(mock_registry(), "routing.routes")


def test_codec_roundtrip(codec: RouteCodec) -> None:
    route = _route(tenant="a/b", partitions=(1, 3), attributes={"k": "v"}, updated_at_ms=77)
    key = codec.encode_key(route.topic, route.tenant)
    assert key == b"orders/a/b"
    assert codec.decode(key, codec.encode(route)) == ("orders", "a/b", route)


def test_codec_tombstone(codec: RouteCodec) -> None:
    assert codec.decode(b"orders/acme/eu", None) == ("orders", "acme/eu", None)


def test_codec_key_value_mismatch(codec: RouteCodec) -> None:
    value = codec.encode(_route(tenant="other"))
    with pytest.raises(DecodeError, match="does not match its value"):
        codec.decode(b"orders/acme", value)
    with pytest.raises(DecodeError, match="does not match its value"):
        codec.decode(b"payments/other", value)


def test_codec_bad_utf8_key(codec: RouteCodec) -> None:
    with pytest.raises(DecodeError, match="bad route key"):
        codec.decode(b"orders/\xff", codec.encode(_route()))
    with pytest.raises(DecodeError, match="bad route key"):
        codec.decode(b"\xc3(/acme", None)


@pytest.mark.parametrize("key", [b"no-separator", b"/acme"])
def test_codec_malformed_key(codec: RouteCodec, key: bytes) -> None:
    with pytest.raises(DecodeError, match="bad route key"):
        codec.decode(key, None)


def test_codec_missing_key(codec: RouteCodec) -> None:
    with pytest.raises(DecodeError, match="without a key"):
        codec.decode(None, codec.encode(_route()))


def test_codec_poison_value(codec: RouteCodec) -> None:
    with pytest.raises(DecodeError):
        codec.decode(b"orders/acme", b"\x00garbage")


# -- property: encode -> decode is identity ----------------------------------------------------


@st.composite
def routes(draw: st.DrawFn) -> Route:
    partitions = draw(st.lists(st.integers(0, 999), min_size=1, max_size=16, unique=True))
    previous = draw(st.lists(st.integers(0, 999), max_size=8, unique=True))
    tenant = draw(tenants)
    if tenant == HASH_BASE_TENANT:  # a topic's hash base names partitions 0..base-1
        partitions = list(range(len(partitions)))
    return Route(
        topic=draw(topics),
        tenant=tenant,
        partitions=tuple(partitions),
        epoch=draw(st.integers(0, 2**63 - 1)),
        mode=draw(st.sampled_from(RouteMode)),
        status=draw(st.sampled_from(RouteStatus)),
        reason=draw(small_text),
        updated_at_ms=draw(st.integers(0, 2**53)),
        previous_partitions=tuple(previous),
        decided_by=draw(small_text),
        attributes=draw(st.dictionaries(small_text, small_text, max_size=5)),
    )


_PROPERTY_CODEC = RouteCodec(mock_registry(), "routing.routes")


@given(route=routes())
@FAST
def test_codec_roundtrip_property(route: Route) -> None:
    route.validate(1000)
    key = _PROPERTY_CODEC.encode_key(route.topic, route.tenant)
    topic, tenant, decoded = _PROPERTY_CODEC.decode(key, _PROPERTY_CODEC.encode(route))
    assert (topic, tenant) == (route.topic, route.tenant)
    assert decoded == route
    assert decoded is not None
    assert dict(decoded.attributes) == dict(route.attributes)
    assert Route.from_record(route.to_record()) == route


@pytest.mark.parametrize(
    ("partitions", "count", "usable"),
    [
        ((0,), 1, True),
        ((3, 1), 4, True),
        ((4,), 4, False),
        ((), 4, False),
        ((-1,), 4, False),
        ((2, 2), 4, False),
    ],
)
def test_usable_for_is_one_rule(partitions: tuple[int, ...], count: int, usable: bool) -> None:
    assert _route(partitions=partitions).usable_for(count) is usable


# -- a topic's hash base (routing-app topics expand) ---------------------------------------------


def test_a_hash_base_is_a_route_of_the_empty_tenant_over_partitions_0_to_base() -> None:
    base = hash_base_route("orders", 12, 1, reason="expand to 24", now_ms=1, decided_by="operator")
    assert base.key == "orders/" and base.partitions == tuple(range(12)) and base.validate(24) is base
    codec = RouteCodec(mock_registry(), "routing.routes")
    assert codec.decode(b"orders/", codec.encode(base)) == ("orders", "", base)


def test_a_hash_base_naming_other_partitions_is_refused() -> None:
    bad = Route(topic="orders", tenant="", partitions=(1, 2), epoch=1)
    with pytest.raises(RouteError, match=r"hash base 'orders/' must name partitions 0\.\.n-1"):
        bad.validate()
    codec = RouteCodec(mock_registry(), "routing.routes")
    with pytest.raises(DecodeError, match="hash base"):
        codec.decode(b"orders/", codec.encode(bad))
