"""Route values read straight into Routes: the route cache's fast path for the schema it knows.

fastavro's ``schemaless_reader`` costs ~4 us a record however small (a BytesIO, its per-call
set-up, a dict of eleven fields), and building the Route from that dict ~1.5 us more: most of a
million-route rebuild. A route value written with this project's own route schema has a fixed
layout, so it is read here field by field into the Route itself.

The fast path only ever says "this is exactly that Route" or "not mine" (None): anything
unusual (another layout, a negative block count, a varint longer than 9 bytes, bytes left over,
bad UTF-8, an enum index out of range, a value whose topic or tenant differs from its key, too
few bytes) goes to the general path, fastavro, which decides as before whether it is poison.
So, for every input, the caller gets the same Route or the same DecodeError as without it; the
unit tests check that on corrupted and random values. Validation (Route.validate) is the
caller's, after either path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from routing_app.routes.model import Route, RouteMode, RouteStatus

# The fields this reader walks, in order, with their Avro types (docs, defaults and logical
# types aside: they do not change the bytes).
ROUTE_LAYOUT: tuple[tuple[str, Any], ...] = (
    ("topic", "string"),
    ("tenant", "string"),
    ("partitions", {"type": "array", "items": "int"}),
    ("mode", {"type": "enum", "name": "RouteMode", "symbols": ["strict", "relaxed"]}),
    ("status", {"type": "enum", "name": "RouteStatus", "symbols": ["active", "draining"]}),
    ("epoch", "long"),
    ("reason", "string"),
    ("updated_at", "long"),
    ("previous_partitions", {"type": "array", "items": "int"}),
    ("decided_by", "string"),
    ("attributes", {"type": "map", "values": "string"}),
)
# What a writer schema may differ in from the reader's without changing how its bytes read.
# (Names and namespaces stay: fastavro refuses a writer whose record or enum names differ.)
_IGNORED_KEYS = frozenset({"doc", "default", "logicalType", "order", "aliases"})


def _bare(schema: Any) -> Any:
    if isinstance(schema, dict):
        bare = {k: _bare(v) for k, v in schema.items() if k not in _IGNORED_KEYS}
        # {"type": "long", "logicalType": ...} is written as a plain "long"
        return bare["type"] if list(bare) == ["type"] and isinstance(bare["type"], str) else bare
    if isinstance(schema, list):
        return [_bare(item) for item in schema]
    return schema


def has_route_layout(schema: Mapping[str, Any]) -> bool:
    """Whether records written with ``schema`` (Avro JSON) have the fields this reader walks."""
    fields = schema.get("fields")
    if schema.get("type") != "record" or not isinstance(fields, list):
        return False
    found = []
    for f in fields:
        if not isinstance(f, dict):
            return False
        kind = _bare(f.get("type"))
        if isinstance(kind, dict):
            kind = {k: v for k, v in kind.items() if k != "namespace"}
        found.append((f.get("name"), kind))
    return tuple(found) == ROUTE_LAYOUT


def reads_alike(writer: Any, reader: Mapping[str, Any]) -> bool:
    """Whether values written with ``writer`` read as they would with ``reader`` as the writer:
    the same schema but for docs, defaults, logical types, sort orders and aliases."""
    return isinstance(writer, dict) and _bare(writer) == _bare(reader)


class _NotMine(Exception):
    """Raised inside the reader for whatever the general path should judge."""


# Single-byte zigzag varints (0x00-0x7f): their values.
_ZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))
# Enum symbols by their one-byte encoding (index 0 -> 0x00, 1 -> 0x02); None: not a symbol.
_MODE_BY_BYTE: tuple[RouteMode | None, ...] = (RouteMode.STRICT, None, RouteMode.RELAXED, *(None,) * 253)
_STATUS_BY_BYTE: tuple[RouteStatus | None, ...] = (
    RouteStatus.ACTIVE,
    None,
    RouteStatus.DRAINING,
    *(None,) * 253,
)
# Distinct partition-list encodings remembered with their tuples (a million routes name a few
# hundred), and short texts with their interned str; past the bound the rest are read every
# time. Only lists of single-byte items go in, whose bytes can be read only one way.
_MAX_SHARED = 50_000
_MAX_SHARED_TEXT = 200  # longer texts are decoded each time, not remembered

# Route is frozen: its __init__ sets each slot through object.__setattr__ (~1.5 us a route).
# _UnfrozenRoute has the very same slots and plain assignments; an instance filled in turns into
# a Route by assigning its __class__, which CPython allows between classes of one layout (half
# the cost of eleven slot-descriptor calls). Route stays frozen to everyone else.
_FIELDS = (
    "topic",
    "tenant",
    "partitions",
    "epoch",
    "mode",
    "status",
    "reason",
    "updated_at_ms",
    "previous_partitions",
    "decided_by",
    "attributes",
)
if tuple(Route.__dataclass_fields__) != _FIELDS:
    raise RuntimeError(f"Route fields are {tuple(Route.__dataclass_fields__)}: update wire.py")


class _UnfrozenRoute:
    __slots__ = Route.__slots__

    def __init__(
        self,
        topic: str,
        tenant: str,
        partitions: tuple[int, ...],
        epoch: int,
        mode: RouteMode,
        status: RouteStatus,
        reason: str,
        updated_at_ms: int,
        previous_partitions: tuple[int, ...],
        decided_by: str,
        attributes: Mapping[str, str],
    ) -> None:
        self.topic = topic
        self.tenant = tenant
        self.partitions = partitions
        self.epoch = epoch
        self.mode = mode
        self.status = status
        self.reason = reason
        self.updated_at_ms = updated_at_ms
        self.previous_partitions = previous_partitions
        self.decided_by = decided_by
        self.attributes = attributes


def _new_route(*fields: Any) -> Route:
    """Route(*fields) without its frozen __init__: eleven slot descriptors, the slower way."""
    route: Route = object.__new__(Route)
    for setter, value in zip(_SLOT_SETTERS, fields, strict=True):
        setter(route, value)
    return route


_SLOT_SETTERS: tuple[Callable[[Route, Any], None], ...] = tuple(
    Route.__dict__[name].__set__ for name in _FIELDS
)
_NO_ATTRIBUTES: Mapping[str, str] = Route("t", "t", (0,), 0).attributes  # the shared empty one


def _class_switch_works() -> bool:
    probe_fields = (
        "t",
        "n",
        (1,),
        2,
        RouteMode.RELAXED,
        RouteStatus.DRAINING,
        "r",
        3,
        (4,),
        "d",
        _NO_ATTRIBUTES,
    )
    try:
        probe = _UnfrozenRoute(*probe_fields)
        probe.__class__ = Route  # type: ignore[assignment]
    except TypeError:  # the layouts differ (a Route with __weakref__, another interpreter)
        return False
    return type(probe) is Route and probe == Route(*probe_fields)  # type: ignore[comparison-overlap]


_CLASS_SWITCH = _class_switch_works()
_intern = sys.intern
_from_bytes = int.from_bytes


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at ``pos``: (value, position after it). Up to 9 bytes (63 bits)."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 56:
            raise _NotMine


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise _NotMine
    return data[pos:end].decode("utf-8"), end


def _ints(data: bytes, pos: int) -> tuple[tuple[int, ...], int]:
    """An array of int: (items, position after it)."""
    items: list[int] = []
    while True:
        count, pos = _long(data, pos)
        if count == 0:
            return tuple(items), pos
        if count < 0 or count > len(data) - pos:  # negative: sized blocks, rare; fastavro's
            raise _NotMine
        for _ in range(count):
            item, pos = _long(data, pos)
            items.append(item)


def _shared_ints(data: bytes, pos: int, shared: dict[bytes, tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    """_ints, sharing the tuple among routes that name the same list (and skipping the read)."""
    count = data[pos]
    end = pos + (count >> 1) + 2  # a one-block list of single-byte items, if it is one
    raw = data[pos:end]
    items = shared.get(raw)
    if items is not None:
        return items, end
    items, after = _ints(data, pos)
    if (
        after == end
        and len(shared) < _MAX_SHARED
        and count < 0x80
        and not count & 1
        and max(raw[1:-1], default=0) < 0x80
    ):
        shared[raw] = items
    return items, after


def _attributes(data: bytes, pos: int) -> tuple[Mapping[str, str], int]:
    entries: dict[str, str] = {}
    while True:
        count, pos = _long(data, pos)
        if count == 0:
            return MappingProxyType(entries) if entries else _NO_ATTRIBUTES, pos
        if count < 0 or count > len(data) - pos:
            raise _NotMine
        for _ in range(count):
            name, pos = _string(data, pos)
            entries[name], pos = _string(data, pos)


class RouteReader:
    """Reads route values of the layout above (after the 5-byte Confluent header)."""

    def __init__(self) -> None:
        self._shared_lists: dict[bytes, tuple[int, ...]] = {}
        # UTF-8 of short texts (decided_by, reason: a few distinct ones) -> the interned str
        self._shared_texts: dict[bytes, str] = {}
        # Data topic -> its Avro string encoding (length, UTF-8), as the value starts with it.
        self._topic_prefixes: dict[str, bytes] = {}
        self._last_time = 0

    def topic_prefix(self, topic: str) -> bytes:
        prefix = self._topic_prefixes.get(topic)
        if prefix is None:
            raw = topic.encode("utf-8")
            prefix = _zigzag_bytes(len(raw)) + raw
            if len(self._topic_prefixes) < _MAX_SHARED:  # topics named by keys: bounded too
                self._topic_prefixes[topic] = prefix
        return prefix

    def _text(self, data: bytes, pos: int) -> tuple[str, int]:
        """A string field, interned and shared by its bytes (bounded)."""
        byte = data[pos]
        if byte < 0x80:
            size, pos = _ZIGZAG[byte], pos + 1
        else:
            size, pos = _long(data, pos)
        end = pos + size
        if size < 0 or end > len(data):
            raise _NotMine
        raw = data[pos:end]
        text = self._shared_texts.get(raw)
        if text is None:
            text = _intern(raw.decode("utf-8"))
            if size <= _MAX_SHARED_TEXT and len(self._shared_texts) < _MAX_SHARED:
                self._shared_texts[raw] = text
        return text, end

    def read(self, data: bytes, topic: str, tenant: str, tenant_raw: bytes) -> Route | None:  # noqa: C901 (field by field)
        """The Route in ``data`` if it is a plain route value of this layout naming exactly
        ``topic`` and ``tenant`` (``tenant_raw``: its UTF-8, from the key); else None.

        One flat function with the common cases inline (single-byte lengths and counts): it
        runs a million times in a rebuild; the helpers take the rest."""
        texts = self._shared_texts
        try:
            prefix = self._topic_prefixes.get(topic) or self.topic_prefix(topic)
            if not data.startswith(prefix, 5):
                return None
            pos = 5 + len(prefix)
            byte = data[pos]
            if byte < 0x80:
                size, pos = _ZIGZAG[byte], pos + 1
            else:
                size, pos = _long(data, pos)
            if size != len(tenant_raw) or not data.startswith(tenant_raw, pos):
                return None
            pos += size
            # partitions, shared by their encoding (see _shared_ints)
            end = pos + (data[pos] >> 1) + 2
            partitions = self._shared_lists.get(data[pos:end])
            if partitions is None:
                partitions, end = _shared_ints(data, pos, self._shared_lists)
            mode = _MODE_BY_BYTE[data[end]]
            status = _STATUS_BY_BYTE[data[end + 1]]
            if mode is None or status is None:
                return None
            byte = data[end + 2]
            if byte < 0x80:
                epoch, pos = _ZIGZAG[byte], end + 3
            else:
                epoch, pos = _long(data, end + 2)
            if data[pos] == 0:  # the usual empty reason
                reason, pos = "", pos + 1
            else:
                reason, pos = self._text(data, pos)
            # updated_at: milliseconds since 1970 take 6 bytes (until 2109), five with the
            # continuation bit: their 7-bit groups gathered in a few operations on one int.
            raw = _from_bytes(data[pos : pos + 6], "little")
            if raw & 0x808080808080 == 0x008080808080:
                raw = (raw & 0x007F007F007F) | ((raw & 0x7F007F007F00) >> 1)
                raw = (raw & 0x3FFF) | ((raw & 0x3FFF0000) >> 2) | ((raw & 0x3FFF00000000) >> 4)
                updated_at, pos = (raw >> 1) ^ -(raw & 1), pos + 6
            else:
                updated_at, pos = _long(data, pos)
            # The routes of one decision (a planner cycle, a drain) share their time and sit
            # side by side on the topic: one int object for them all, 32 bytes a route less.
            if updated_at == self._last_time:
                updated_at = self._last_time
            else:
                self._last_time = updated_at
            if data[pos] == 0:
                previous: tuple[int, ...] = ()
                pos += 1
            else:
                previous, pos = _shared_ints(data, pos, self._shared_lists)
            # decided_by: a few distinct names, shared by their bytes (see _text)
            byte = data[pos]
            end = pos + 1 + (byte >> 1)
            decided_by = texts.get(data[pos + 1 : end]) if byte < 0x80 and not byte & 1 else None
            if decided_by is None:
                decided_by, end = self._text(data, pos)
            pos = end
            if data[pos] == 0:
                attributes, pos = _NO_ATTRIBUTES, pos + 1
            else:
                attributes, pos = _attributes(data, pos)
        except (_NotMine, IndexError, UnicodeDecodeError):
            return None
        # Bytes left over: fastavro ignores them; let it judge. Past the end: a slice above ran
        # short of a truncated value (indexing raised IndexError instead); whatever was read
        # from it is dropped here.
        if pos != len(data):
            return None
        if not _CLASS_SWITCH:
            return _new_route(
                topic,
                tenant,
                partitions,
                epoch,
                mode,
                status,
                reason,
                updated_at,
                previous,
                decided_by,
                attributes,
            )
        route = _UnfrozenRoute(
            topic,
            tenant,
            partitions,
            epoch,
            mode,
            status,
            reason,
            updated_at,
            previous,
            decided_by,
            attributes,
        )
        route.__class__ = Route  # type: ignore[assignment]
        return route  # type: ignore[return-value]


def _zigzag_bytes(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)
