"""Settings shared by the CLI, the workers, the producer helpers and the local stack.

Precedence, lowest to highest: defaults, the TOML config file, ``ROUTING_*`` environment
variables, explicit overrides passed by the caller (the CLI's flags).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "ROUTING_"
CONFIG_FILE_ENV = "ROUTING_CONFIG"
DEFAULT_CONFIG_FILE = "routing-app.toml"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting, and where its
    value came from (the ``ROUTING_*`` variable or the config file's key) when it was given."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "routing-app"


@dataclass(frozen=True)
class KafkaAccess:
    """A Kafka cluster's address and the security settings to reach it (librdkafka names)."""

    bootstrap: str
    security: tuple[tuple[str, str], ...] = ()

    def client_config(self, **extra: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, **dict(self.security), **extra}

    def __str__(self) -> str:  # in messages: where, never the password
        return self.bootstrap


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The ones the worker's client (aiokafka, through Faust) can use too.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    # Where Kafka and the registry are. Unset means "the local stack on the ports below".
    bootstrap_servers: str | None = None
    schema_registry_url: str | None = None

    # How every client of ours (producers, route caches, the worker, the CLI, admin clients)
    # authenticates to Kafka: confluent-kafka's settings of the same names (security.protocol,
    # sasl.mechanism, ...). Empty: not set. Each process runs as one principal: the worker's, an
    # operator's or a producer's (README, "Security").
    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: str = field(default="", repr=False)
    # The registry's HTTP basic auth, "user:password" (confluent-kafka's basic.auth.user.info).
    registry_basic_auth: str = field(default="", repr=False)
    # Principals whose commands the writer applies ("User:alice,User:ops"): the issued_by of a
    # command must be one of them. Empty: any (a cluster without authentication cannot tell).
    operator_principals: str = ""

    # The local stack (`routing-app stack up`).
    state_dir: Path = Path(".routing-stack")
    cache_dir: Path = field(default_factory=_default_cache_dir)
    kafka_port: int = 19092
    controller_port: int = 19093
    registry_port: int = 18081
    kafka_heap: str = "768m"
    registry_heap: str = "384m"

    # Topics.
    routes_topic: str = "routing.routes"
    events_topic: str = "routing.events"
    usage_topic: str = "routing.usage"
    control_topic: str = "routing.control"
    # Producers' answers to the writer (drain acks, releases, goodbyes): a topic of their own, so
    # that producers need no write access to the operators' control topic.
    answers_topic: str = "routing.answers"
    usage_partitions: int = 6
    # 0: the cluster's default (default.replication.factor: 1 on the local stack, 3 with
    # `stack up --brokers 3`); with 3 or more, routes, events and control get
    # min.insync.replicas=2.
    replication_factor: int = 0
    # Keeps recent route history replayable (audit) before compaction may drop it.
    min_compaction_lag_ms: int = 3_600_000
    events_retention_ms: int = -1

    # Worker.
    app_id: str = "routing-app"
    web_port: int = 6066
    # The interface the worker's web server listens on. Its views (routes, stats, metrics,
    # Faust's table and router views) have no authentication: loopback only unless an
    # operator opens them on purpose (a container publishing the port sets 0.0.0.0).
    web_bind: str = "127.0.0.1"
    # Producers flush usage reports this often.
    usage_interval_s: float = 1.0
    # Bounds of one usage report (0: the default): records and bytes per second over its
    # interval, the longest interval, and how far past the worker's clock it may end (default
    # window_grace_ms). A report outside them is refused and counted (rejected_* counters).
    usage_max_records_per_s: int = 0
    usage_max_bytes_per_s: int = 0
    usage_max_interval_ms: int = 0
    usage_max_clock_skew_ms: int = 0

    # Control plane.
    window_s: float = 10.0
    # A window closes once a report stamped this much past its end arrived on the partition. A
    # report counts in the window of its interval's end, and producers send it at that end, so
    # this covers delivery delays and clock skew between producers; without the early path
    # the reaction to a hotspot waits for it (bench reaction, median of 3: window + 1.8 s
    # with 1 s, + 2.2 s with 1.5 s).
    window_grace_ms: int = 1000
    # ... or once its usage partition has been quiet this long past grace.
    window_idle_ms: int = 2000
    # The planner waits this long past a window's end for missing usage partitions.
    planner_max_wait_ms: int = 5000
    # Policy overrides, "name=value,name=value" (fields of routing_app.planner.Policy).
    planner_policy: str = ""
    # Consumer groups whose lag the planner weighs, comma-separated.
    lag_groups: str = ""
    # How fast the group notices a worker that died without leaving (kill -9, lost host).
    worker_session_timeout_s: float = 10.0
    # The early path (README, "Reacting within seconds"): a tenant whose rate, summed over its
    # producers' latest usage reports, stays for early_confirm_intervals report intervals in a
    # row at or above max(early_surge_factor x its last window's rate, early_min_rate) is
    # planned at once (isolate or shard it, and move others off a partition it makes hot),
    # without waiting for its window to close; again within early_cooldown_ms only if it grows
    # by early_surge_factor once more.
    early_reaction: bool = True
    early_surge_factor: float = 2.0
    early_min_rate: float = 100.0
    early_confirm_intervals: int = 2
    early_cooldown_ms: int = 30_000

    # Ordering-safe (strict) moves: the writer holds a move until live producers acknowledge
    # and the lag_groups consumed past what they wrote, at most this long...
    drain_timeout_ms: int = 60_000
    # ... then "abort" (back to the old placement) or "force" (to the new one; order may break).
    drain_on_timeout: str = "abort"
    # A drain waits this long at least, for producers unknown to the writer. Producers say
    # hello before their first send, so none is (control.drain); only producers of versions
    # without hellos need it (500 did for them).
    drain_ack_grace_ms: int = 0
    # A producer without usage reports for this long is gone (0: three windows).
    producer_expiry_ms: int = 0

    @property
    def producer_expiry(self) -> int:
        return self.producer_expiry_ms or int(3 * self.window_s * 1000)

    @property
    def uses_external_cluster(self) -> bool:
        return self.bootstrap_servers is not None

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        return self.schema_registry_url or f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"

    def kafka_security(self) -> dict[str, str]:
        """The librdkafka security settings given (security.protocol, sasl.*, ssl.*)."""
        return {
            name: value
            for name, value in (
                ("security.protocol", self.security_protocol),
                ("sasl.mechanism", self.sasl_mechanism),
                ("sasl.username", self.sasl_username),
                ("sasl.password", self.sasl_password),
                ("ssl.ca.location", self.ssl_ca_location),
                ("ssl.certificate.location", self.ssl_certificate_location),
                ("ssl.key.location", self.ssl_key_location),
                ("ssl.key.password", self.ssl_key_password),
            )
            if value
        }

    @property
    def kafka(self) -> KafkaAccess:
        """Where Kafka is and how to log in: what every client of ours is built from."""
        return KafkaAccess(self.bootstrap, tuple(sorted(self.kafka_security().items())))

    def registry_config(self) -> dict[str, str]:
        """confluent-kafka's SchemaRegistryClient settings for this deployment."""
        conf = {"url": self.registry_url}
        if self.registry_basic_auth:
            conf["basic.auth.user.info"] = self.registry_basic_auth
        return conf

    @property
    def principal(self) -> str:
        """Who this process is to Kafka ("User:<sasl_username>"), or "" without SASL."""
        return f"User:{self.sasl_username}" if self.sasl_username else ""

    def operators(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.operator_principals.split(",") if p.strip())

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """A RoutingProducer's configuration for this deployment (plus any librdkafka setting)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "schema.registry.url": self.registry_url,
            "routing.routes.topic": self.routes_topic,
            "routing.usage.topic": self.usage_topic,
            "routing.answers.topic": self.answers_topic,
            **self.kafka_security(),
        }
        if self.registry_basic_auth:
            conf["schema.registry.basic.auth.user.info"] = self.registry_basic_auth
        return {**conf, **extra}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, declared: Any, raw: Any) -> Any:
    """Turns a raw env/TOML value into the field's type, or raises ConfigError naming it."""
    kind = declared if isinstance(declared, str) else getattr(declared, "__name__", str(declared))
    try:
        if "Path" in kind:
            return Path(str(raw)).expanduser()
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            flag = str(raw).strip().lower()
            if flag not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError("not a boolean (true/false, 1/0, yes/no, on/off)")
            return flag in ("true", "1", "yes", "on")
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError("a boolean is not a number")
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if raw is None or raw == "":
            return None if "None" in kind else ""
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} ({kind} expected): {exc}", name) from exc


def _config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    from_env = env.get(CONFIG_FILE_ENV)
    if from_env:
        return Path(from_env)
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    env = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    # Where each value came from, so an error names what the user has to change.
    sources: dict[str, str] = {}

    path = _config_file(config_file, env)
    if path is not None:
        _read_file(path, known, values, sources)

    for name, f in known.items():
        variable = ENV_PREFIX + name.upper()
        raw_env = env.get(variable)
        if raw_env is not None and raw_env != "":
            sources[name] = f"environment variable {variable}={raw_env!r}"
            values[name] = _coerce_from(sources[name], name, f.type, raw_env)

    for name, raw in overrides.items():
        if raw is None:
            continue
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}")
        sources[name] = f"option {name.replace('_', '-')}={raw!r}"
        values[name] = _coerce_from(sources[name], name, known[name].type, raw)

    settings = Settings(**values)
    try:
        _validate(settings)
    except ConfigError as exc:
        if exc.setting in sources:
            raise ConfigError(f"{sources[exc.setting]}: {exc}", exc.setting) from None
        raise
    return settings


def _read_file(path: Path, known: Mapping[str, Any], values: dict[str, Any], sources: dict[str, str]) -> None:
    """The settings of a TOML file (top level or a [routing] table) into ``values``."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for key, raw in data.get("routing", data).items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(
                f"config file {path}: unknown setting {key!r}; known: {', '.join(sorted(known))}"
            )
        sources[name] = f"config file {path}, key {key!r}"
        values[name] = _coerce_from(sources[name], name, known[name].type, raw)


def _coerce_from(source: str, name: str, declared: Any, raw: Any) -> Any:
    try:
        return _coerce(name, declared, raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", name) from None


def _validate(s: Settings) -> None:
    _validate_places(s)
    _validate_security(s)
    _validate_bounds(s)


def _validate_places(s: Settings) -> None:
    """Ports, topic names, the web server's address."""
    for name in ("kafka_port", "controller_port", "registry_port", "web_port"):
        port = getattr(s, name)
        if not 0 < port < 65536:
            raise ConfigError(f"setting {name!r}: {port} is not a TCP port (1-65535)", name)
    for name in ("routes_topic", "events_topic", "usage_topic", "control_topic", "answers_topic"):
        topic = getattr(s, name)
        if not topic or "/" in topic:
            raise ConfigError(f"setting {name!r}: {topic!r} is not a valid topic name", name)
    if not s.web_bind or any(c.isspace() for c in s.web_bind):
        raise ConfigError(
            f"setting 'web_bind': {s.web_bind!r} is not an address to listen on "
            "(e.g. 127.0.0.1, or 0.0.0.0 for every interface)",
            "web_bind",
        )


# Settings that must not be negative, with what their 0 means where it means something.
_NOT_NEGATIVE = {
    "replication_factor": " (0: the cluster's default)",
    "usage_max_records_per_s": " (0: the default)",
    "usage_max_bytes_per_s": " (0: the default)",
    "usage_max_interval_ms": " (0: the default)",
    "usage_max_clock_skew_ms": " (0: the default)",
    "window_grace_ms": "",
    "planner_max_wait_ms": "",
    "drain_ack_grace_ms": "",
    "producer_expiry_ms": "",
    "min_compaction_lag_ms": "",
    "early_min_rate": "",
    "early_cooldown_ms": "",
}
_POSITIVE = (
    "usage_interval_s",
    "worker_session_timeout_s",
    "window_idle_ms",
    "drain_timeout_ms",
    "early_confirm_intervals",
)


def _validate_bounds(s: Settings) -> None:
    """Counts, durations and choices."""
    if s.usage_partitions < 1:
        raise ConfigError("setting 'usage_partitions' must be at least 1", "usage_partitions")
    for name, zero in _NOT_NEGATIVE.items():
        if getattr(s, name) < 0:
            raise ConfigError(f"setting {name!r} must not be negative{zero}", name)
    for name in _POSITIVE:
        if getattr(s, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive", name)
    if s.window_s <= 0 or s.window_s * 1000 != int(s.window_s * 1000):
        raise ConfigError("setting 'window_s' must be a positive whole number of milliseconds", "window_s")
    if not s.early_surge_factor > 1:
        raise ConfigError(
            "setting 'early_surge_factor' must be above 1 (a surge is a rise)", "early_surge_factor"
        )
    if s.events_retention_ms < -1:
        raise ConfigError(
            "setting 'events_retention_ms' must be -1 (forever) or a duration", "events_retention_ms"
        )
    if s.drain_on_timeout not in ("abort", "force"):
        raise ConfigError(
            f"setting 'drain_on_timeout': {s.drain_on_timeout!r} is not abort or force", "drain_on_timeout"
        )


def _validate_security(s: Settings) -> None:
    protocol = s.security_protocol.upper()
    if protocol and protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"setting 'security_protocol': {s.security_protocol!r} is not one of "
            f"{', '.join(SECURITY_PROTOCOLS)}",
            "security_protocol",
        )
    sasl = protocol.startswith("SASL_")
    if s.sasl_mechanism and s.sasl_mechanism.upper() not in SASL_MECHANISMS:
        raise ConfigError(
            f"setting 'sasl_mechanism': {s.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}",
            "sasl_mechanism",
        )
    if sasl and not (s.sasl_username and s.sasl_password):
        raise ConfigError(
            f"setting 'sasl_username': security_protocol {protocol} needs sasl_username and sasl_password",
            "sasl_username",
        )
    if not sasl and (s.sasl_username or s.sasl_mechanism):
        raise ConfigError(
            "setting 'security_protocol': sasl_username/sasl_mechanism are set but "
            f"security_protocol is {protocol or 'unset (PLAINTEXT)'}; use "
            "SASL_PLAINTEXT or SASL_SSL",
            "security_protocol",
        )
    if s.registry_basic_auth and ":" not in s.registry_basic_auth:
        raise ConfigError("setting 'registry_basic_auth' must be \"user:password\"", "registry_basic_auth")
    for principal in s.operators():
        if ":" not in principal:
            raise ConfigError(
                f"setting 'operator_principals': {principal!r} is not a principal (e.g. User:alice)",
                "operator_principals",
            )
