"""RoutingProducer configuration: routing.* options, librdkafka validation, required settings.

No broker: librdkafka checks its configuration when the client is constructed.
"""

from __future__ import annotations

from typing import Any

import pytest

from routing_app.client import ConfigurationError, RoutingProducer
from routing_app.client.options import split_config
from routing_app.codec import registry_client

BOOT = {"bootstrap.servers": "127.0.0.1:1"}
# For clients actually constructed: nothing listens on port 1, keep librdkafka quiet about it.
QUIET = {**BOOT, "log_level": 0}


def test_split_config_parses_routing_options() -> None:
    key_ser = object()
    value_ser = object()
    rdkafka, opts, registry_url, ks, vs = split_config(
        {
            **BOOT,
            "linger.ms": 5,
            "schema.registry.url": "http://reg:8081",
            "key.serializer": key_ser,
            "value.serializer": value_ser,
            "routing.routes.topic": "my.routes",
            "routing.usage.topic": "my.usage",
            "routing.usage.interval.ms": "250",
            "routing.usage.enabled": "false",
            "routing.metadata.refresh.ms": 1000,
            "routing.max.block.ms": "5",
            "routing.producer.id": "prod-1",
            "routing.cache.enabled": "yes",
        }
    )
    assert rdkafka == {"bootstrap.servers": "127.0.0.1:1", "linger.ms": 5, "enable.idempotence": True}
    assert registry_url == {"url": "http://reg:8081"}
    assert ks is key_ser and vs is value_ser
    assert opts.routes_topic == "my.routes" and opts.usage_topic == "my.usage"
    assert opts.usage_interval_ms == 250 and opts.metadata_refresh_ms == 1000
    assert opts.max_block_ms == 5
    assert opts.usage_enabled is False and opts.cache_enabled is True
    assert opts.producer_id == "prod-1"


def test_split_config_defaults_and_generated_producer_id() -> None:
    rdkafka, opts, registry_url, ks, vs = split_config(dict(BOOT))
    assert rdkafka == {**BOOT, "enable.idempotence": True}
    assert registry_url is None and ks is None and vs is None
    assert opts.routes_topic == "routing.routes" and opts.usage_topic == "routing.usage"
    assert opts.cache_enabled and opts.usage_enabled
    assert opts.producer_id.startswith("producer-") and len(opts.producer_id) > len("producer-")
    assert split_config(dict(BOOT))[1].producer_id != opts.producer_id


@pytest.mark.parametrize(
    ("given", "idempotent", "warned"),
    [
        ({}, True, False),
        ({"acks": "all"}, True, False),
        ({"acks": -1}, True, False),
        ({"enable.idempotence": "true"}, "true", False),
        ({"enable.idempotence": False}, False, True),
        ({"acks": 1}, None, True),  # idempotence needs acks=all: left to the user, and said
        ({"request.required.acks": "1"}, None, True),
    ],
)
def test_idempotence_is_on_unless_the_configuration_says_otherwise(
    given: dict[str, Any], idempotent: Any, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="routing_app.client.options"):
        rdkafka = split_config({**BOOT, **given})[0]
    assert rdkafka.get("enable.idempotence") == idempotent
    assert any("out of order" in r.getMessage() for r in caplog.records) is warned


def test_default_idempotent_configuration_is_accepted_by_librdkafka() -> None:
    RoutingProducer({**QUIET, "routing.cache.enabled": False, "routing.usage.enabled": False}).close(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("TRUE", True),
        ("0", False),
        (" on ", True),
        ("no", False),
        (1, True),
        (0, False),
    ],
)
def test_boolean_spellings(value: Any, expected: bool) -> None:
    assert split_config({**BOOT, "routing.usage.enabled": value})[1].usage_enabled is expected


def test_unknown_routing_key_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting 'routing\.cache\.enable'"):
        split_config({**BOOT, "routing.cache.enable": False})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("routing.usage.interval.ms", "fast"),
        ("routing.max.block.ms", None),
        ("routing.cache.enabled", "maybe"),
    ],
)
def test_bad_routing_values_are_named(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name.replace(".", r"\.")):
        split_config({**BOOT, name: value})


def test_missing_bootstrap_servers() -> None:
    with pytest.raises(ConfigurationError, match=r"'bootstrap\.servers' is required"):
        split_config({"routing.cache.enabled": False})


def test_librdkafka_rejects_unknown_property() -> None:
    with pytest.raises(ConfigurationError, match=r"not\.a\.librdkafka\.setting"):
        RoutingProducer(
            {
                **QUIET,
                "routing.cache.enabled": False,
                "routing.usage.enabled": False,
                "not.a.librdkafka.setting": 1,
            }
        )


def test_librdkafka_rejects_bad_value() -> None:
    with pytest.raises(ConfigurationError, match=r"message\.max\.bytes"):
        RoutingProducer(
            {
                **QUIET,
                "routing.cache.enabled": False,
                "routing.usage.enabled": False,
                "message.max.bytes": "huge",
            }
        )


@pytest.mark.parametrize(("cache", "usage"), [(True, False), (False, True), (True, True)])
def test_registry_url_required_when_cache_or_usage_enabled(cache: bool, usage: bool) -> None:
    with pytest.raises(ConfigurationError, match=r"'schema\.registry\.url' is required"):
        RoutingProducer({**QUIET, "routing.cache.enabled": cache, "routing.usage.enabled": usage})


def test_producer_without_cache_and_usage_needs_no_registry() -> None:
    producer = RoutingProducer(
        {
            **QUIET,
            "routing.cache.enabled": False,
            "routing.usage.enabled": False,
            "routing.producer.id": "unit-1",
        }
    )
    try:
        assert producer.producer_id == "unit-1"
        assert producer.cache is None
        assert producer.route_for("orders", "acme") is None
    finally:
        producer.close(timeout=1.0)
    producer.close()  # idempotent


def test_registry_credentials_pass_through_to_the_registry_client() -> None:
    _, _, registry, _, _ = split_config(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "schema.registry.url": "http://reg:8081",
            "schema.registry.basic.auth.user.info": "u:p",
        }
    )
    assert registry == {"url": "http://reg:8081", "basic.auth.user.info": "u:p"}
    registry_client(registry)  # confluent-kafka takes these settings (it refuses unknown ones)
    with pytest.raises(ConfigurationError, match=r"without 'schema\.registry\.url'"):
        split_config({"bootstrap.servers": "127.0.0.1:1", "schema.registry.basic.auth.user.info": "u:p"})
