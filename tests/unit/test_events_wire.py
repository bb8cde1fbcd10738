"""Wire compatibility of the records renamed or extended by issue #13: the event's reason_kind
(a new optional field) and the evacuate command (still "drain" on the wire)."""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from routing_app.codec import AvroCodec, load_schema
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.metrics.reasons import event_labels
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent

TS = 1_700_000_123_456


def mock_registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://events-{uuid.uuid4().hex}"})


def _avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


def _event_schema_before_reason_kind() -> dict[str, Any]:
    schema = copy.deepcopy(load_schema(EVENT_SCHEMA))
    (field,) = [f for f in schema["fields"] if f["name"] == "reason_kind"]
    # Optional with a null default: what lets old and new versions read each other.
    assert field["type"] == ["null", "string"] and field["default"] is None
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "reason_kind"]
    return schema


def _event(**changes: Any) -> ReassignmentEvent:
    base: dict[str, Any] = dict(
        topic="orders",
        tenant="acme",
        action="shard",
        decided_at_ms=TS,
        reason="acme sends 5,000/s: sharded over 3 partitions (was 1)",
        to_partitions=(1, 4, 7),
        from_partitions=(1,),
        from_epoch=3,
        to_epoch=4,
        mode="strict",
        status="active",
        observed={"rate": 5000.0},
        worker_id="w-1",
    )
    base.update(changes)
    return ReassignmentEvent(**base)


def test_reason_kind_survives_the_avro_round_trip() -> None:
    codec = AvroCodec(mock_registry(), EVENT_SCHEMA, "routing.events")
    event = _event(reason_kind="shard_grow")
    back = ReassignmentEvent.from_record(codec.decode(codec.encode(event.to_record())))
    assert back == event
    assert back.reason_kind == "shard_grow"
    # None is written as the union's null, and read back as None.
    plain = _event(reason_kind=None)
    assert ReassignmentEvent.from_record(codec.decode(codec.encode(plain.to_record()))) == plain


def test_an_event_written_before_reason_kind_decodes_with_none() -> None:
    registry = mock_registry()
    old = _event_schema_before_reason_kind()
    codec = AvroCodec(registry, EVENT_SCHEMA, "routing.events")
    # The subject already holds the old version (events on the topic were written with it).
    old_id = registry.register_schema(codec.subject, Schema(json.dumps(old), "AVRO"))
    assert codec.schema_id != old_id
    record = {k: v for k, v in _event().to_record().items() if k != "reason_kind"}
    data = struct.pack(">bI", 0, old_id) + _avro(old, record)
    event = ReassignmentEvent.from_record(codec.decode(data))
    assert event.reason_kind is None
    assert event.reason == _event().reason
    # Without a kind, metrics read the words (the legacy path).
    assert event_labels(event) == ("shard", "shard_grow")


def test_a_reader_of_the_old_schema_reads_new_events() -> None:
    """A rolling upgrade: a worker or audit tool of the old version reads what the new writer
    appends, and ignores the field it does not know."""
    new = load_schema(EVENT_SCHEMA)
    old = _event_schema_before_reason_kind()
    data = _avro(new, _event(reason_kind="shard_grow").to_record())
    record = fastavro.schemaless_reader(
        io.BytesIO(data), fastavro.parse_schema(copy.deepcopy(new)), fastavro.parse_schema(copy.deepcopy(old))
    )
    assert isinstance(record, dict) and "reason_kind" not in record
    assert record["action"] == "shard" and record["to_partitions"] == [1, 4, 7]


def test_evacuate_keeps_the_drain_symbol_on_the_wire() -> None:
    schema = load_schema("control_command")
    (action,) = [f for f in schema["fields"] if f["name"] == "action"]
    assert "drain" in action["type"]["symbols"] and "evacuate" not in action["type"]["symbols"]
    command = ControlCommand(ControlAction.EVACUATE, "orders", "", TS, (2, 5), reason="disk")
    assert command.to_record()["action"] == "drain"
    codec = AvroCodec(mock_registry(), "control_command", "routing.control")
    assert ControlCommand.from_record(codec.decode(codec.encode(command.to_record()))) == command


def test_a_drain_command_already_on_the_control_topic_is_an_evacuation() -> None:
    """Bytes as the previous version wrote them: the same schema, the symbol "drain"."""
    schema = load_schema("control_command")
    record = {
        "command_id": "c-1",
        "action": "drain",
        "topic": "orders",
        "tenant": "",
        "partitions": [3],
        "mode": None,
        "reason": "",
        "issued_by": "alice",
        "issued_at": TS,
    }
    registry = mock_registry()
    codec = AvroCodec(registry, "control_command", "routing.control")
    data = struct.pack(">bI", 0, codec.schema_id) + _avro(schema, record)
    command = ControlCommand.from_record(codec.decode(data))
    assert command.action is ControlAction.EVACUATE and command.partitions == (3,)
    # Other actions keep their own symbols both ways.
    for other in (ControlAction.PIN, ControlAction.UNPIN, ControlAction.FREEZE, ControlAction.UNFREEZE):
        wire = ControlCommand(other, "orders", "acme", TS).to_record()
        assert wire["action"] == other.value
        assert ControlCommand.from_record(wire).action is other
