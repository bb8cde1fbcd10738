"""The producer's configuration: ``routing.*`` options, registry settings, serializers, and
the librdkafka settings that pass through untouched."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from routing_app.client.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProducerOptions:
    """The ``routing.*`` settings; everything else in the config goes to librdkafka untouched."""

    routes_topic: str = "routing.routes"
    usage_topic: str = "routing.usage"
    usage_interval_ms: int = 1000
    usage_top_k: int = 1000
    usage_enabled: bool = True
    metadata_refresh_ms: int = 30_000
    max_block_ms: int = 60_000
    producer_id: str = ""
    cache_enabled: bool = True
    answers_topic: str = "routing.answers"
    hold_max_records: int = 100_000


OPTION_KEYS = {
    "routing.routes.topic": ("routes_topic", str),
    "routing.usage.topic": ("usage_topic", str),
    "routing.usage.interval.ms": ("usage_interval_ms", int),
    "routing.usage.top.k": ("usage_top_k", int),
    "routing.usage.enabled": ("usage_enabled", bool),
    "routing.metadata.refresh.ms": ("metadata_refresh_ms", int),
    "routing.max.block.ms": ("max_block_ms", int),
    "routing.producer.id": ("producer_id", str),
    "routing.cache.enabled": ("cache_enabled", bool),
    "routing.answers.topic": ("answers_topic", str),
    "routing.hold.max.records": ("hold_max_records", int),
}

# The registry client's settings, given with this prefix (confluent-kafka's names after it).
REGISTRY_PREFIX = "schema.registry."


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{name}: {value!r} is not a boolean (true/false)")


def split_config(
    conf: dict[str, Any],
) -> tuple[dict[str, Any], ProducerOptions, dict[str, str] | None, Any, Any]:
    """(librdkafka settings, routing options, registry settings or None, key serializer,
    value serializer) from one producer configuration."""
    rdkafka: dict[str, Any] = {}
    options: dict[str, Any] = {}
    registry: dict[str, str] = {}
    key_serializer = value_serializer = None
    for name, value in conf.items():
        if name.startswith(REGISTRY_PREFIX):
            registry[name.removeprefix(REGISTRY_PREFIX)] = str(value)
        elif name == "key.serializer":
            key_serializer = value
        elif name == "value.serializer":
            value_serializer = value
        elif name.startswith("routing."):
            options.update(_routing_option(name, value))
        else:
            rdkafka[name] = value
    if "bootstrap.servers" not in rdkafka:
        raise ConfigurationError("'bootstrap.servers' is required")
    _default_idempotence(rdkafka)
    opts = ProducerOptions(**options)
    if not opts.producer_id:
        opts = ProducerOptions(**{**options, "producer_id": f"producer-{uuid.uuid4().hex[:12]}"})
    if registry and "url" not in registry:
        raise ConfigurationError(
            f"{', '.join(REGISTRY_PREFIX + k for k in sorted(registry))} given without 'schema.registry.url'"
        )
    return rdkafka, opts, registry or None, key_serializer, value_serializer


def _routing_option(name: str, value: Any) -> dict[str, Any]:
    if name not in OPTION_KEYS:
        raise ConfigurationError(
            f"unknown setting {name!r}; routing settings are: {', '.join(sorted(OPTION_KEYS))}"
        )
    field, kind = OPTION_KEYS[name]
    try:
        return {field: as_bool(name, value) if kind is bool else kind(value)}
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name}: {value!r} is not a {kind.__name__}") from exc


def _default_idempotence(rdkafka: dict[str, Any]) -> None:
    """Idempotence on unless the configuration says otherwise, as the Java client does since
    3.0: a strict move's stop-and-wait keeps a tenant's order only if a retry cannot put a
    record behind a later one. With it off, say so once, at the start."""
    acks = str(rdkafka.get("acks", rdkafka.get("request.required.acks", "all"))).lower()
    if "enable.idempotence" not in rdkafka and acks in ("all", "-1"):
        rdkafka["enable.idempotence"] = True
    elif not as_bool("enable.idempotence", rdkafka.get("enable.idempotence", False)):
        log.warning(
            "enable.idempotence is off (acks=%s): a retried send can land behind a later "
            "one, so tenants in strict mode may see records out of order around a move",
            acks,
        )
