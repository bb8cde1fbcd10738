"""Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary).

The registry client is confluent-kafka's; the encoding is fastavro's. We frame by hand instead of
using ``AvroDeserializer`` because rebuilding a million-route cache is dominated by per-record
overhead (measured: ~12 us/record there against ~3 us here).

Timestamps (``timestamp-millis``) decode as plain ``int`` milliseconds: the route model keeps
times as integers, and skipping the datetime conversion halves decode time.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
from collections.abc import Mapping
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from routing_app.codec.schemas import load_schema

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")
# A record naming an unknown schema id is asked about again only after this long, so a stream
# of poison records does not become a stream of registry requests.
_UNKNOWN_ID_RETRY_S = 30.0


class DecodeError(ValueError):
    """The bytes are not a record this codec can read: poison, to be skipped and counted."""


class RegistryUnavailable(RuntimeError):
    """The schema registry could not be asked: transient, retry rather than skip."""


def registry_client(target: str | Mapping[str, str]) -> SchemaRegistryClient:
    """A registry client for a URL, or for SchemaRegistryClient settings (``url`` and, say,
    ``basic.auth.user.info``: Settings.registry_config())."""
    # new_client, unlike the constructor, also understands mock:// URLs (unit tests).
    return SchemaRegistryClient.new_client({"url": target} if isinstance(target, str) else dict(target))


def probe_registry(url: str, timeout_s: float = 2.0) -> str | None:
    """None when the registry at ``url`` answers; otherwise why not, for an error message. One
    request, no retries: a reader stuck on a record may be inside a slow retry loop of its own
    and not have failed yet."""
    client = SchemaRegistryClient.new_client({"url": url, "timeout": timeout_s, "max.retries": 0})
    try:
        client.get_subjects()
    except SchemaRegistryError as exc:
        return f"it answered HTTP {exc.http_status_code}: {exc}"
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


class AvroCodec:
    """Encodes and decodes one record type for one topic's values.

    The subject is ``<topic>-value`` (TopicNameStrategy) unless the topic carries more than one
    record type, as the control topic does; then each type has its own subject.
    """

    def __init__(
        self, registry: SchemaRegistryClient, schema_name: str, topic: str, subject: str | None = None
    ) -> None:
        self._registry = registry
        self.schema_name = schema_name
        self.topic = topic
        self.subject = subject or f"{topic}-value"
        self._schema_json = load_schema(schema_name)
        self._writer = fastavro.parse_schema(copy.deepcopy(self._schema_json))
        self._reader = fastavro.parse_schema(_without_logical_types(self._schema_json))
        self._schema_id: int | None = None
        # schema id -> (parsed writer schema, needs resolution against our reader schema)
        self._readers: dict[int, tuple[Any, bool]] = {}
        # schema id -> the writer schema's JSON, for callers with readers of their own
        self._writer_json: dict[int, Any] = {}
        self._unknown_ids: dict[int, float] = {}
        # The registry's last failure, until it answers again: lets a reader stuck on a record
        # say it is the registry it waits for.
        self.last_failure: RegistryUnavailable | None = None

    @property
    def schema_id(self) -> int:
        """Registers the schema on first use (idempotent in the registry)."""
        if self._schema_id is None:
            text = json.dumps(self._schema_json, separators=(",", ":"))
            try:
                self._schema_id = self._registry.register_schema(self.subject, Schema(text, "AVRO"))
            except SchemaRegistryError as exc:
                raise self._failed(
                    RegistryUnavailable(
                        f"schema registry refused schema {self.schema_name!r} for subject "
                        f"{self.subject!r}: {exc}"
                    )
                ) from exc
            except Exception as exc:
                raise self._failed(
                    RegistryUnavailable(
                        f"schema registry unreachable while registering {self.subject!r}: {exc}"
                    )
                ) from exc
            self.last_failure = None
            self._readers[self._schema_id] = (self._reader, False)
            self._writer_json[self._schema_id] = self._schema_json
        return self._schema_id

    def _failed(self, exc: RegistryUnavailable) -> RegistryUnavailable:
        self.last_failure = exc
        return exc

    @property
    def registered(self) -> bool:
        """True once the schema id is known: encode() no longer asks the registry."""
        return self._schema_id is not None

    def prefetch(self) -> bool:
        """Looks our schema's id up without registering it, so records written with it decode
        without asking the registry later (while it may be down). False when the subject does
        not have it yet; RegistryUnavailable when the registry cannot be asked."""
        if self._schema_id is not None:
            return True
        text = json.dumps(self._schema_json, separators=(",", ":"))
        try:
            found = self._registry.lookup_schema(self.subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self.last_failure = None
                return False
            raise self._failed(
                RegistryUnavailable(f"schema registry error looking up {self.subject!r}: {exc}")
            ) from exc
        except Exception as exc:
            raise self._failed(
                RegistryUnavailable(f"schema registry unreachable while looking up {self.subject!r}: {exc}")
            ) from exc
        self.last_failure = None
        if found.schema_id is None:
            return False
        self._readers[found.schema_id] = (self._reader, False)
        self._writer_json[found.schema_id] = self._schema_json
        return True

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(_HEADER.pack(MAGIC_BYTE, self.schema_id))
        try:
            fastavro.schemaless_writer(out, self._writer, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"cannot encode {self.schema_name} record: {exc}") from exc
        return out.getvalue()

    def needs_registry(self, data: bytes | None) -> bool:
        """True when decoding ``data`` would ask the registry (a schema id not seen yet)."""
        if data is None or len(data) < _HEADER.size:
            return False
        magic, schema_id = _HEADER.unpack_from(data)
        return magic == MAGIC_BYTE and schema_id not in self._readers

    def writer_schema(self, schema_id: int) -> Any | None:
        """The JSON of the schema records with ``schema_id`` were written with, once decode()
        (or registering, or prefetch) has learnt it; None before. Never asks the registry."""
        return self._writer_json.get(schema_id)

    @staticmethod
    def schema_id_of(data: bytes) -> int | None:
        """The schema id in a Confluent-framed value's header; None if it has no such header."""
        if len(data) < _HEADER.size:
            return None
        magic, schema_id = _HEADER.unpack_from(data)
        return schema_id if magic == MAGIC_BYTE else None

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("no value (tombstone) where a record was expected")
        if len(data) < _HEADER.size:
            raise DecodeError(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise DecodeError(f"magic byte {magic} (expected 0): not Confluent-framed Avro")
        writer, resolve = self._readers.get(schema_id) or self._writer_for(schema_id)
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(memoryview(data)[_HEADER.size :]),
                writer,
                self._reader if resolve else None,
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(
                f"schema id {schema_id}: bytes are not a valid {self.schema_name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id}: not a record ({type(record).__name__})")
        return record

    def _writer_for(self, schema_id: int) -> tuple[Any, bool]:
        retry_at = self._unknown_ids.get(schema_id)
        if retry_at is not None and time.monotonic() < retry_at:
            raise DecodeError(f"unknown schema id {schema_id}")
        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self.last_failure = None
                self._unknown_ids[schema_id] = time.monotonic() + _UNKNOWN_ID_RETRY_S
                raise DecodeError(f"unknown schema id {schema_id} (not in the registry)") from exc
            raise self._failed(
                RegistryUnavailable(f"schema registry error for id {schema_id}: {exc}")
            ) from exc
        except Exception as exc:
            raise self._failed(
                RegistryUnavailable(f"schema registry unreachable while looking up id {schema_id}: {exc}")
            ) from exc
        self.last_failure = None
        if schema.schema_type not in (None, "AVRO"):
            raise DecodeError(f"schema id {schema_id} is {schema.schema_type}, not AVRO")
        try:
            parsed_json = json.loads(schema.schema_str or "")
            writer = fastavro.parse_schema(_without_logical_types(parsed_json))
        except Exception as exc:
            raise DecodeError(f"schema id {schema_id} is not a usable Avro schema: {exc}") from exc
        resolve = _without_logical_types(parsed_json) != _without_logical_types(self._schema_json)
        if not resolve:
            writer = self._reader
        self._readers[schema_id] = (writer, resolve)
        self._writer_json[schema_id] = parsed_json
        return writer, resolve
