"""AvroCodec: Confluent framing around fastavro, against confluent-kafka's in-memory registry."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import struct
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable, load_schema
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.routes.model import Route

TS = 1_700_000_123_456


def mock_registry() -> SchemaRegistryClient:
    # new_client() is the factory that honours mock:// (the plain constructor speaks HTTP).
    return SchemaRegistryClient.new_client({"url": f"mock://unit-{uuid.uuid4().hex}"})


SAMPLES: dict[str, dict[str, Any]] = {
    "route": {
        "topic": "orders",
        "tenant": "acme/eu",
        "partitions": [3, 1],
        "mode": "relaxed",
        "status": "draining",
        "epoch": 42,
        "reason": "hot tenant",
        "updated_at": TS,
        "previous_partitions": [7],
        "decided_by": "worker-1",
        "attributes": {"pinned": "true"},
    },
    "control_command": {
        "command_id": "c-1",
        "action": "pin",
        "topic": "orders",
        "tenant": "acme",
        "partitions": [0, 2],
        "mode": "strict",
        "reason": "ops",
        "issued_by": "alice",
        "issued_at": TS,
    },
    "reassignment_event": {
        "event_id": "e-1",
        "topic": "orders",
        "tenant": "acme",
        "action": "pin",
        "reason": "operator pin",
        "from_partitions": [1],
        "to_partitions": [2, 3],
        "from_epoch": 4,
        "to_epoch": 5,
        "mode": "strict",
        "status": "active",
        "observed": {"rate": 12.5, "lag": 0.0},
        "command_id": None,
        "decided_at": TS,
        "worker_id": "w-9",
        "reason_kind": "operator",
    },
    "usage_report": {  # version 3: the reports of many tenants, with their stream figures
        "producer_id": "p-1",
        "topic": "",
        "tenant": "",
        "records": 0,
        "bytes": 0,
        "interval_start": TS,
        "interval_end": TS + 1000,
        "partition": -1,
        "reports": [
            {
                "topic": "orders",
                "tenant": "acme/eu",
                "records": 3,
                "bytes": 7,
                "partition": 2,
                "top_stream": 2,
                "streams": 2,
            },
            {
                "topic": "orders",
                "tenant": "",
                "records": 10,
                "bytes": 2**40,
                "partition": 5,
                "top_stream": -1,
                "streams": 0,
            },
        ],
    },
}


def _frame(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def _avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_roundtrip_every_schema(name: str) -> None:
    codec = AvroCodec(mock_registry(), name, "data")
    data = codec.encode(SAMPLES[name])
    assert codec.decode(data) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_fresh_decoder_reads_what_another_codec_wrote(name: str) -> None:
    registry = mock_registry()
    data = AvroCodec(registry, name, "data").encode(SAMPLES[name])
    # A second codec that never registered anything must find the writer schema by id.
    assert AvroCodec(registry, name, "data").decode(data) == SAMPLES[name]


def test_wire_format_is_magic_zero_then_big_endian_schema_id() -> None:
    registry = mock_registry()
    # Take a few ids first, so the codec's id is not a trivially small constant.
    for i in range(3):
        registry.register_schema(f"other{i}-value", Schema(json.dumps({"type": "string"}), "AVRO"))
    codec = AvroCodec(registry, "usage_report", "usage")
    data = codec.encode(SAMPLES["usage_report"])
    assert data[0] == 0
    (schema_id,) = struct.unpack(">I", data[1:5])
    assert schema_id == codec.schema_id
    assert schema_id == registry.get_latest_version("usage-value").schema_id
    assert data[5:] == _avro(load_schema("usage_report"), SAMPLES["usage_report"])


def test_subject_is_topic_value() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "route", "routing.routes")
    codec.encode(SAMPLES["route"])
    assert codec.subject == "routing.routes-value"
    assert registry.get_latest_version("routing.routes-value").schema_id == codec.schema_id


def test_timestamp_millis_decodes_as_int_milliseconds() -> None:
    codec = AvroCodec(mock_registry(), "route", "routes")
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)
    decoded = codec.decode(codec.encode({**SAMPLES["route"], "updated_at": when}))
    assert type(decoded["updated_at"]) is int
    assert decoded["updated_at"] == int(when.timestamp() * 1000)


def test_encode_error_is_value_error_naming_schema() -> None:
    codec = AvroCodec(mock_registry(), "route", "routes")
    record = {**SAMPLES["route"], "epoch": "not a number"}
    with pytest.raises(ValueError, match="cannot encode route record"):
        codec.encode(record)


# -- decode errors -----------------------------------------------------------------------------


@pytest.fixture
def route_codec() -> AvroCodec:
    codec = AvroCodec(mock_registry(), "route", "routes")
    codec.encode(SAMPLES["route"])  # registers the schema
    return codec


def test_decode_none_is_tombstone_error(route_codec: AvroCodec) -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        route_codec.decode(None)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_decode_too_short(route_codec: AvroCodec, data: bytes) -> None:
    with pytest.raises(DecodeError, match=f"{len(data)} bytes is too short"):
        route_codec.decode(data)


@pytest.mark.parametrize("magic", [1, 0x7F])
def test_decode_wrong_magic_byte(route_codec: AvroCodec, magic: int) -> None:
    good = route_codec.encode(SAMPLES["route"])
    with pytest.raises(DecodeError, match=f"magic byte {magic} \\(expected 0\\)"):
        route_codec.decode(bytes([magic]) + good[1:])


def test_decode_json_payload_is_wrong_magic(route_codec: AvroCodec) -> None:
    with pytest.raises(DecodeError, match="not Confluent-framed"):
        route_codec.decode(json.dumps(SAMPLES["route"]).encode())


def test_decode_unknown_schema_id(route_codec: AvroCodec) -> None:
    good = route_codec.encode(SAMPLES["route"])
    with pytest.raises(DecodeError, match="unknown schema id 4242"):
        route_codec.decode(_frame(4242, good[5:]))


def test_unknown_schema_id_is_not_asked_again_at_once() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "route", "routes")
    calls: list[int] = []
    real_get = registry.get_schema

    def counting_get(schema_id: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(schema_id)
        return real_get(schema_id, *args, **kwargs)

    registry.get_schema = counting_get  # type: ignore[method-assign]
    for _ in range(5):
        with pytest.raises(DecodeError, match="unknown schema id 999"):
            codec.decode(_frame(999, b"\x00"))
    assert calls == [999]


def test_registry_failure_is_transient_not_poison() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "route", "routes")

    def broken_get(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("connection refused")

    registry.get_schema = broken_get  # type: ignore[method-assign]
    with pytest.raises(RegistryUnavailable, match="connection refused"):
        codec.decode(_frame(1, b"\x00"))


def test_registry_refusing_registration_is_registry_unavailable() -> None:
    registry = mock_registry()

    def broken_register(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("registry down")

    registry.register_schema = broken_register  # type: ignore[method-assign]
    codec = AvroCodec(registry, "route", "routes")
    with pytest.raises(RegistryUnavailable, match="registry down"):
        codec.encode(SAMPLES["route"])


def test_non_avro_schema_id_is_decode_error() -> None:
    registry = mock_registry()
    schema_id = registry.register_schema("x-value", Schema('{"type": "object"}', "JSON"))
    codec = AvroCodec(registry, "route", "routes")
    with pytest.raises(DecodeError, match=f"schema id {schema_id} is JSON, not AVRO"):
        codec.decode(_frame(schema_id, b"{}"))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda body: b"", id="empty-body"),
        pytest.param(lambda body: body[:-3], id="truncated"),
        pytest.param(lambda body: body[: len(body) // 2], id="half"),
        pytest.param(lambda body: b"\x01", id="negative-string-length"),
        pytest.param(lambda body: b"\x02a\x02", id="short-after-first-field"),
    ],
)
def test_decode_corrupt_avro_body(route_codec: AvroCodec, mangle: Any) -> None:
    good = route_codec.encode(SAMPLES["route"])
    with pytest.raises(DecodeError, match=f"schema id {route_codec.schema_id}: bytes are not a valid route"):
        route_codec.decode(good[:5] + mangle(good[5:]))


def test_decode_bad_enum_index(route_codec: AvroCodec) -> None:
    record = {**SAMPLES["route"], "mode": "strict"}
    good = route_codec.encode(record)
    # topic "orders", tenant "acme/eu", partitions [3, 1], then the mode enum index (0 = strict).
    prefix = _avro(
        {
            "type": "record",
            "name": "P",
            "fields": [
                {"name": "topic", "type": "string"},
                {"name": "tenant", "type": "string"},
                {"name": "partitions", "type": {"type": "array", "items": "int"}},
            ],
        },
        {"topic": "orders", "tenant": "acme/eu", "partitions": [3, 1]},
    )
    assert good[5 + len(prefix)] == 0
    corrupt = bytearray(good)
    corrupt[5 + len(prefix)] = 2 * 9  # zigzag 9: no such symbol
    with pytest.raises(DecodeError, match="not a valid route"):
        route_codec.decode(bytes(corrupt))


def test_record_of_another_type_is_decode_error() -> None:
    registry = mock_registry()
    usage = AvroCodec(registry, "usage_report", "routes")
    data = usage.encode(SAMPLES["usage_report"])
    with pytest.raises(DecodeError, match="not a valid route"):
        AvroCodec(registry, "route", "routes").decode(data)


# -- schema evolution --------------------------------------------------------------------------


def _reduced_route_schema() -> dict[str, Any]:
    """The route schema as an older writer had it: without the fields that have defaults."""
    schema = copy.deepcopy(load_schema("route"))
    dropped = {"reason", "previous_partitions", "decided_by", "attributes"}
    assert dropped <= {f["name"] for f in schema["fields"] if "default" in f}
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in dropped]
    return schema


def test_older_writer_schema_decodes_with_defaults() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "route", "routing.routes")
    current_id = codec.schema_id
    old = _reduced_route_schema()
    old_id = registry.register_schema(codec.subject, Schema(json.dumps(old), "AVRO"))
    assert old_id != current_id
    old_record = {
        "topic": "orders",
        "tenant": "t/1",
        "partitions": [4],
        "mode": "relaxed",
        "status": "active",
        "epoch": 7,
        "updated_at": TS,
    }
    decoded = codec.decode(_frame(old_id, _avro(old, old_record)))
    assert decoded == {
        **old_record,
        "reason": "",
        "previous_partitions": [],
        "decided_by": "",
        "attributes": {},
    }
    assert type(decoded["updated_at"]) is int
    route = Route.from_record(decoded)
    assert route.partitions == (4,) and route.epoch == 7 and route.updated_at_ms == TS
    # Both writer versions keep decoding side by side.
    assert codec.decode(codec.encode(SAMPLES["route"])) == SAMPLES["route"]
    assert codec.decode(_frame(old_id, _avro(old, old_record)))["tenant"] == "t/1"


def test_newer_writer_enum_symbol_falls_back_to_enum_default() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "control_command", "routing.control")
    newer = copy.deepcopy(load_schema("control_command"))
    action = next(f for f in newer["fields"] if f["name"] == "action")
    action["type"]["symbols"] = [*action["type"]["symbols"], "split"]
    newer["fields"].append({"name": "priority", "type": "int", "default": 0})
    new_id = registry.register_schema(codec.subject, Schema(json.dumps(newer), "AVRO"))
    record = {**SAMPLES["control_command"], "action": "split", "priority": 3}
    decoded = codec.decode(_frame(new_id, _avro(newer, record)))
    assert decoded["action"] == "unknown"
    assert "priority" not in decoded
    assert ControlCommand.from_record(decoded).action is ControlAction.UNKNOWN


def test_incompatible_writer_schema_is_decode_error() -> None:
    registry = mock_registry()
    codec = AvroCodec(registry, "route", "routes")
    bad = copy.deepcopy(load_schema("route"))
    bad["fields"] = [f for f in bad["fields"] if f["name"] != "epoch"]  # required, no default
    bad_id = registry.register_schema(codec.subject, Schema(json.dumps(bad), "AVRO"))
    record = {k: v for k, v in SAMPLES["route"].items() if k != "epoch"}
    with pytest.raises(DecodeError, match=f"schema id {bad_id}"):
        codec.decode(_frame(bad_id, _avro(bad, record)))
