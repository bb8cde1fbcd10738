"""Creating and checking topics through the Kafka admin API."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from confluent_kafka.schema_registry.error import SchemaRegistryError

from routing_app.codec import registry_client
from routing_app.connection import Kafka, admin_client, cluster_metadata
from routing_app.topics.specs import (
    AUTO_REPLICATION,
    BOTH_WAYS_COMPATIBILITY,
    SUBJECT_COMPATIBILITY,
    TopicSpec,
    min_insync_config,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicProblem:
    topic: str
    setting: str
    expected: str
    actual: str
    fatal: bool
    fix: str

    def __str__(self) -> str:
        return (
            f"topic {self.topic!r}: {self.setting} is {self.actual}, expected {self.expected}. "
            f"Fix: {self.fix}"
        )


class TopicSettingsError(RuntimeError):
    def __init__(self, problems: list[TopicProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class TopicReplicationError(RuntimeError):
    """The cluster cannot give a topic the replicas asked for (too few brokers)."""


def _default_replication(admin: AdminClient, metadata: ClusterMetadata, timeout: float) -> int | None:
    """The brokers' default.replication.factor; None when the cluster will not say (ACLs)."""
    if not metadata.brokers:
        return None
    resource = ConfigResource(ResourceType.BROKER, str(min(metadata.brokers)))
    try:
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
        return int(entries["default.replication.factor"].value)
    except (KafkaException, KeyError, ValueError, TypeError) as exc:
        log.warning(
            "cannot read default.replication.factor from the cluster (%s); topics are "
            "created with the broker default and no min.insync.replicas",
            exc,
        )
        return None


def _replicas(admin: AdminClient, metadata: ClusterMetadata, requested: int, timeout: float) -> int | None:
    """Replicas a new topic gets: ``requested``, or the cluster's default for AUTO_REPLICATION."""
    if requested > AUTO_REPLICATION:
        return requested
    return _default_replication(admin, metadata, timeout)


def replication_factor(bootstrap: Kafka, requested: int = AUTO_REPLICATION, timeout: float = 10.0) -> int:
    """The replicas topics get on this cluster for the ``replication_factor`` setting.

    For clients that create topics themselves (Faust's changelogs) and need a number."""
    if requested > AUTO_REPLICATION:
        return requested
    admin = admin_client(bootstrap)
    metadata = cluster_metadata(admin, bootstrap, timeout)
    return _replicas(admin, metadata, requested, timeout) or 1


def partition_count(bootstrap: Kafka, topic: str, timeout: float = 10.0) -> int | None:
    """The topic's partition count, None when it does not exist."""
    metadata = cluster_metadata(admin_client(bootstrap), bootstrap, timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


def add_partitions(bootstrap: Kafka, topic: str, total: int, timeout: float = 30.0) -> None:
    """Grows the topic to ``total`` partitions (Kafka never removes any). Raises KafkaException
    with the broker's reason (not allowed, fewer than it has, ...)."""
    admin = admin_client(bootstrap)
    futures = admin.create_partitions(
        [NewPartitions(topic, total)], operation_timeout=timeout, request_timeout=timeout
    )
    futures[topic].result(timeout)


def create_topic(
    bootstrap: Kafka,
    name: str,
    partitions: int,
    config: dict[str, str] | None = None,
    replication_factor: int = AUTO_REPLICATION,
    timeout: float = 30.0,
) -> bool:
    """Creates the topic; False when it already existed.

    ``replication_factor`` 0 (AUTO_REPLICATION) takes the cluster's default. With 3 or more
    replicas the topic also gets min.insync.replicas=2 unless ``config`` sets it.
    """
    admin = admin_client(bootstrap)  # must outlive the future: destroying it cancels it
    metadata = cluster_metadata(admin, bootstrap, timeout)
    replicas = _replicas(admin, metadata, replication_factor, timeout)
    return _create(
        admin,
        bootstrap,
        name,
        partitions,
        {**min_insync_config(replicas), **(config or {})},
        replicas,
        timeout,
    )


def _create(
    admin: AdminClient,
    bootstrap: Kafka,
    name: str,
    partitions: int,
    config: dict[str, str],
    replicas: int | None,
    timeout: float,
) -> bool:
    # -1: the broker's default.replication.factor (KIP-464), when it could not be read.
    futures = admin.create_topics(
        [NewTopic(name, partitions, replicas if replicas is not None else -1, config=config)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        futures[name].result(timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        if isinstance(error, KafkaError) and error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
            raise TopicReplicationError(
                f"cannot create topic {name!r} on {bootstrap} with "
                f"{replicas if replicas is not None else 'the default number of'} replicas: "
                f"{error.str().rstrip('.')}. Set replication_factor "
                f"(ROUTING_REPLICATION_FACTOR) to at most the number of live brokers"
            ) from exc
        raise
    return True


def check_topics(
    bootstrap: Kafka,
    specs: list[TopicSpec],
    timeout: float = 15.0,
    replication_factor: int = AUTO_REPLICATION,
) -> tuple[list[str], list[TopicProblem]]:
    """(missing topic names, problems with the ones that exist)."""
    admin = admin_client(bootstrap)
    metadata = cluster_metadata(admin, bootstrap, timeout)
    replicas = _replicas(admin, metadata, replication_factor, timeout)
    return _check(admin, metadata, bootstrap, [s.replicated(replicas) for s in specs], replicas, timeout)


def _check(
    admin: AdminClient,
    metadata: ClusterMetadata,
    bootstrap: Kafka,
    specs: list[TopicSpec],
    replicas: int | None,
    timeout: float,
) -> tuple[list[str], list[TopicProblem]]:
    missing: list[str] = []
    problems: list[TopicProblem] = []
    existing: list[TopicSpec] = []
    for spec in specs:
        found = metadata.topics.get(spec.name)
        if found is None or found.error is not None:
            missing.append(spec.name)
            continue
        existing.append(spec)
        count = len(found.partitions)
        if (count != spec.partitions) if spec.exact_partitions else (count < 1):
            problems.append(
                TopicProblem(
                    spec.name,
                    "partition count",
                    str(spec.partitions),
                    str(count),
                    True,
                    f"this topic must have exactly {spec.partitions} partition(s) ({spec.purpose}); "
                    f"partitions cannot be removed: delete the topic and run "
                    f"`routing-app topics ensure`, or configure another topic name",
                )
            )
        copies = min((len(p.replicas) for p in found.partitions.values()), default=0)
        if replicas is not None and copies < replicas:
            # Tolerated: the topic works, it only survives fewer broker losses than it should.
            problems.append(
                TopicProblem(
                    spec.name,
                    "replication factor",
                    str(replicas),
                    str(copies),
                    False,
                    f"add replicas with kafka-reassign-partitions.sh --bootstrap-server {bootstrap} "
                    f"(a plan listing {replicas} brokers for each partition)  "
                    f"(tolerated: only a warning)",
                )
            )
    if not existing:
        return missing, problems
    resources = [ConfigResource(ResourceType.TOPIC, spec.name) for spec in existing]
    described = admin.describe_configs(resources, request_timeout=timeout)
    for spec, resource in zip(existing, resources, strict=True):
        entries = described[resource].result(timeout)
        for setting, expected in {**spec.config, **spec.required}.items():
            entry = entries.get(setting)
            actual = entry.value if entry is not None else "(unset)"
            if actual == expected:
                continue
            fatal = setting in spec.required
            problems.append(
                TopicProblem(
                    spec.name,
                    setting,
                    expected,
                    str(actual),
                    fatal,
                    f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
                    f"--entity-name {spec.name} --add-config {setting}={expected}"
                    + ("" if fatal else "  (tolerated: only a warning)"),
                )
            )
    return missing, problems


def ensure_topics(
    bootstrap: Kafka,
    specs: list[TopicSpec],
    replication_factor: int = AUTO_REPLICATION,
    timeout: float = 30.0,
) -> tuple[list[str], list[TopicProblem]]:
    """Creates missing topics; returns (created, tolerated problems).

    Raises TopicSettingsError when a topic exists with settings the project cannot work with
    (a routes topic with cleanup.policy=delete would lose routes), TopicReplicationError when
    the cluster has too few brokers for the replicas asked for.
    """
    admin = admin_client(bootstrap)
    metadata = cluster_metadata(admin, bootstrap, timeout)
    replicas = _replicas(admin, metadata, replication_factor, timeout)
    specs = [s.replicated(replicas) for s in specs]
    missing, problems = _check(admin, metadata, bootstrap, specs, replicas, timeout)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise TopicSettingsError(fatal)
    created = []
    by_name = {s.name: s for s in specs}
    for name in missing:
        spec = by_name[name]
        config = {**spec.config, **spec.required}
        if _create(admin, bootstrap, name, spec.partitions, config, replicas, timeout):
            created.append(name)
    return created, problems


class SubjectCompatibilityError(RuntimeError):
    """A subject's compatibility level could not be read or set."""


def ensure_compatibility(
    registry_url: str, specs: list[TopicSpec], level: str = SUBJECT_COMPATIBILITY
) -> list[tuple[str, str | None]]:
    """Makes the registry check both ways every schema registered for the specs' subjects.

    A subject whose level (its own, or the registry's global one) is not FULL or
    FULL_TRANSITIVE gets ``level``; one that does not exist yet gets it too, so its first
    versions are checked as well. Returns (subject, previous level) for each subject changed.
    """
    registry = registry_client(registry_url)
    changed: list[tuple[str, str | None]] = []
    for subject in (subject for spec in specs for subject in spec.subjects):
        try:
            try:
                current: str | None = registry.get_compatibility(subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    raise
                current = None  # Confluent's registry: no level of its own, none global
            if current in BOTH_WAYS_COMPATIBILITY:
                continue
            registry.set_compatibility(subject, level)
        except Exception as exc:  # registry errors and unreachable registries alike
            raise SubjectCompatibilityError(
                f"cannot set compatibility {level} on subject {subject!r} at {registry_url}: {exc}"
            ) from exc
        changed.append((subject, current))
    return changed
