"""RouteReader (routes/wire.py), the route cache's fast path: for every value, RouteCodec gives
the same Route, or the same kind of DecodeError, with it as with fastavro alone."""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
from collections.abc import Callable

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.codec import DecodeError, load_schema
from routing_app.routes import Route, RouteCodec, wire
from routing_app.routes.codec import InvalidRoute
from routing_app.routes.model import RouteMode, RouteStatus
from routing_app.routes.wire import RouteReader, has_route_layout, reads_alike

ROUTES = "routing.routes"


def mock_registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://wire-{uuid.uuid4().hex}"})


def codecs() -> tuple[RouteCodec, RouteCodec]:
    """(with the fast reader, fastavro only), on one registry."""
    registry = mock_registry()
    return RouteCodec(registry, ROUTES), RouteCodec(registry, ROUTES, fast_reader=False)


def outcome(
    decode: Callable[[bytes, bytes], tuple[str, str, Route | None]], key: bytes, value: bytes
) -> tuple[str, object]:
    try:
        topic, tenant, route = decode(key, value)
    except InvalidRoute:
        return ("invalid", None)
    except DecodeError:
        return ("poison", None)
    return ("route", (topic, tenant, route))


def test_the_shipped_route_schema_is_the_layout_the_reader_walks() -> None:
    # Fails when schemas/route.avsc changes: update ROUTE_LAYOUT and RouteReader.read with it
    # (otherwise every route goes through fastavro, several times slower).
    assert has_route_layout(load_schema("route"))
    fast, _ = codecs()
    fast.decode(b"orders/acme", fast.encode(Route("orders", "acme", (1,), 1)))
    assert fast.fast_path


def test_a_writer_schema_reads_alike_only_if_nothing_but_docs_and_defaults_differ() -> None:
    own = load_schema("route")
    documented = copy.deepcopy(own)
    documented["fields"][6]["doc"] = "why"
    documented["fields"][6]["default"] = "none given"
    assert reads_alike(documented, own)
    renamed = copy.deepcopy(own)
    renamed["fields"][3]["type"]["name"] = "OtherMode"  # fastavro refuses to resolve it
    swapped = copy.deepcopy(own)
    swapped["fields"][3]["type"]["symbols"] = ["relaxed", "strict"]
    longer = copy.deepcopy(own)
    longer["fields"].append({"name": "region", "type": "string", "default": ""})
    for other in (renamed, swapped, longer):
        assert not reads_alike(other, own)
    assert not has_route_layout(longer) and not has_route_layout(swapped)


_names = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_partitions = st.lists(st.integers(-3, 2**31 - 1) | st.integers(0, 70), max_size=5)
routes = st.builds(
    Route,
    topic=st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(lambda t: t not in ".."),
    tenant=_names,
    partitions=_partitions.map(tuple),
    epoch=st.integers(-2, 2**63 - 1) | st.integers(0, 100),
    mode=st.sampled_from(RouteMode),
    status=st.sampled_from(RouteStatus),
    reason=_names | st.just("") | st.text(max_size=300),
    updated_at_ms=st.integers(0, 2**63 - 1) | st.just(1_700_000_123_456),
    previous_partitions=_partitions.map(tuple),
    decided_by=_names,
    attributes=st.dictionaries(_names, _names, max_size=3),
)


# Shared by the examples of a test, as one cache's codec sees every route: what the fast path
# remembers (schema ids, partition lists, texts) must not change an answer either.
_FAST, _SLOW = codecs()
_FAST.decode(b"t/first", _FAST.encode(Route("t", "first", (0,), 0)))  # learns the schema id


@settings(max_examples=300, deadline=None)
@given(route=routes)
def test_any_route_reads_the_same_with_and_without_the_fast_reader(route: Route) -> None:
    fast, slow = _FAST, _SLOW
    key, value = RouteCodec.encode_key(route.topic, route.tenant), fast.encode(route)
    assert fast.fast_path
    got = outcome(fast.decode, key, value)
    assert got == outcome(slow.decode, key, value)
    if got[0] == "route":
        assert got == ("route", (route.topic, route.tenant, route))
    # The fast reader itself takes every value the writer writes (none left to fastavro), but
    # for longs of 10 bytes (beyond +-2**62: no epoch or time in milliseconds gets there).
    read = RouteReader().read(value, route.topic, route.tenant, route.tenant.encode())
    if max(abs(route.epoch), abs(route.updated_at_ms)) < 2**62:
        assert read == route
    else:
        assert read is None


_good = Route(
    "orders",
    "acme/eu",
    (3, 1),
    42,
    RouteMode.RELAXED,
    RouteStatus.DRAINING,
    "hot tenant",
    1_700_000_123_456,
    (7,),
    "worker-1",
    {"pinned": "true"},
)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_corrupted_values_read_the_same_with_and_without_the_fast_reader(data: st.DataObject) -> None:
    fast, slow = _FAST, _SLOW
    route = data.draw(
        st.sampled_from(
            [
                _good,
                Route("orders", "t", (0,), 0),
                Route(
                    "orders", "tenant-0000001", (11,), 1, updated_at_ms=1_700_000_123_456, decided_by="bench"
                ),
            ]
        )
    )
    key = RouteCodec.encode_key(route.topic, route.tenant)
    value = bytearray(fast.encode(route))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(5, len(value)))
        change = data.draw(st.sampled_from(["set", "cut", "insert", "append"]))
        byte = data.draw(st.integers(0, 255))
        if change == "set" and where < len(value):
            value[where] = byte
        elif change == "cut":
            del value[where:]
        elif change == "insert":
            value.insert(where, byte)
        else:
            value.append(byte)
    assert outcome(fast.decode, key, bytes(value)) == outcome(slow.decode, key, bytes(value))


def _good_value_in_parts(codec: RouteCodec) -> dict[str, bytes]:
    """_good's encoding cut at its fields (layout: see ROUTE_LAYOUT)."""
    value = codec.encode(_good)
    parts = {"header": value[:5], "topic_tenant": b"\x0corders\x0eacme/eu"}
    rest = value[5 + len(parts["topic_tenant"]) :]
    sizes = [("partitions", 4), ("mode", 1), ("status", 1), ("epoch", 1), ("reason", 11), ("updated_at", 6)]
    for name, size in sizes:
        parts[name], rest = rest[:size], rest[size:]
    parts["rest"] = rest
    assert b"".join(parts.values()) == value
    return parts


UNUSUAL: list[tuple[str, dict[str, bytes], bool]] = [
    # (what, fields replaced, whether the fast reader reads it itself)
    ("overlong zero epoch (fastavro reads it as 0 too)", {"epoch": b"\x80\x00"}, True),
    ("enum index out of range", {"mode": b"\x04"}, False),
    ("negative enum index", {"status": b"\x01"}, False),
    ("a sized (negative count) partition block", {"partitions": b"\x03\x04\x06\x02\x00"}, False),
    ("a 10-byte updated_at", {"updated_at": b"\x80" * 9 + b"\x01"}, False),
    ("a 10-byte epoch", {"epoch": b"\x80" * 9 + b"\x01"}, False),
    ("the value names another tenant", {"topic_tenant": b"\x0corders\x0eacme/EU"}, False),
    ("a string length beyond the value", {"reason": b"\x7e"}, False),
    ("bytes left over (fastavro ignores them)", {"rest": b"\x00\x00\x00\x02"}, False),
]


@pytest.mark.parametrize(("what", "replaced", "fast_reads_it"), UNUSUAL)
def test_unusual_values_read_the_same_and_most_are_left_to_fastavro(
    what: str, replaced: dict[str, bytes], fast_reads_it: bool
) -> None:
    fast, slow = codecs()
    key = b"orders/acme/eu"
    fast.decode(key, fast.encode(_good))
    value = b"".join({**_good_value_in_parts(fast), **replaced}.values())
    read = RouteReader().read(value, "orders", "acme/eu", b"acme/eu")
    assert (read is not None) == fast_reads_it
    assert outcome(fast.decode, key, value) == outcome(slow.decode, key, value)


def test_the_negative_block_count_case_is_read_by_fastavro_as_a_route() -> None:
    # Guards the hand-made value above: it is a valid route that only the general path reads.
    fast, _ = codecs()
    parts = _good_value_in_parts(fast)
    parts["partitions"] = b"\x03\x04\x06\x02\x00"  # -2 items, a 4-byte block, 3, 1, end
    assert fast.decode(b"orders/acme/eu", b"".join(parts.values()))[2] == _good


def test_values_of_a_schema_that_reads_differently_never_take_the_fast_path() -> None:
    registry = mock_registry()
    fast = RouteCodec(registry, ROUTES)
    own = load_schema("route")
    # A later schema version: a new field with a default. Its values need resolution.
    v2 = copy.deepcopy(own)
    v2["fields"].append({"name": "region", "type": "string", "default": ""})
    v2_id = registry.register_schema(f"{ROUTES}-value", Schema(json.dumps(v2), "AVRO"))
    body = io.BytesIO()
    record = {**_good.to_record(), "region": "eu"}
    fastavro.schemaless_writer(body, fastavro.parse_schema(copy.deepcopy(v2)), record)
    value = struct.pack(">bI", 0, v2_id) + body.getvalue()
    assert fast.decode(b"orders/acme/eu", value)[2] == _good
    assert not fast.fast_path


def test_shared_lists_and_texts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_MAX_SHARED", 10)
    fast, slow = codecs()
    fast.decode(b"t/first", fast.encode(Route("t", "first", (0,), 0)))
    reader = fast._fast_reader
    assert reader is not None
    for i in range(40):
        route = Route("orders", f"t{i}", (i, 40 + i), 1, decided_by=f"writer-{i}")
        key, value = RouteCodec.encode_key("orders", route.tenant), fast.encode(route)
        assert fast.decode(key, value) == slow.decode(key, value)
    assert len(reader._shared_lists) <= 10 and len(reader._shared_texts) <= 10


def test_routes_with_equal_partitions_share_one_tuple() -> None:
    fast, _ = codecs()
    a = Route("orders", "a", (5, 2), 1)
    b = Route("orders", "b", (5, 2), 3)
    fast.decode(b"orders/a", fast.encode(a))
    got_a = fast.decode(b"orders/a", fast.encode(a))[2]
    got_b = fast.decode(b"orders/b", fast.encode(b))[2]
    assert got_a is not None and got_b is not None
    assert got_a.partitions is got_b.partitions


def test_routes_are_built_either_way_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPython lets the reader turn its unfrozen twin into a Route (the faster way).
    assert wire._CLASS_SWITCH
    fast, _ = codecs()
    value = fast.encode(_good)
    switched = RouteReader().read(value, "orders", "acme/eu", b"acme/eu")
    monkeypatch.setattr(wire, "_CLASS_SWITCH", False)
    by_slots = RouteReader().read(value, "orders", "acme/eu", b"acme/eu")
    assert type(switched) is Route and type(by_slots) is Route
    assert switched == by_slots == _good
    with pytest.raises(AttributeError):  # still frozen
        switched.epoch = 7  # type: ignore[misc]
