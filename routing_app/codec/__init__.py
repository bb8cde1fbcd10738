"""Confluent-framed Avro: the wire format of every record this project writes."""

from routing_app.codec.avro import (
    AvroCodec,
    DecodeError,
    RegistryUnavailable,
    probe_registry,
    registry_client,
)
from routing_app.codec.schemas import load_schema

__all__ = [
    "AvroCodec",
    "DecodeError",
    "RegistryUnavailable",
    "load_schema",
    "probe_registry",
    "registry_client",
]
