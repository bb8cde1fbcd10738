"""Creating and checking topics through the Kafka admin API."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from routing_app.connection import admin_client, cluster_metadata
from routing_app.topics.specs import TopicSpec


@dataclass(frozen=True)
class TopicProblem:
    topic: str
    setting: str
    expected: str
    actual: str
    fatal: bool
    fix: str

    def __str__(self) -> str:
        return (f"topic {self.topic!r}: {self.setting} is {self.actual}, expected {self.expected}. "
                f"Fix: {self.fix}")


class TopicSettingsError(RuntimeError):
    def __init__(self, problems: list[TopicProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int | None:
    """The topic's partition count, None when it does not exist."""
    metadata = cluster_metadata(admin_client(bootstrap), bootstrap, timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None,
                 replication_factor: int = 1, timeout: float = 30.0) -> bool:
    """Creates the topic; False when it already existed."""
    admin = admin_client(bootstrap)  # must outlive the future: destroying it cancels it
    cluster_metadata(admin, bootstrap, timeout)
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor, config=config or {})],
        operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[name].result(timeout)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def check_topics(bootstrap: str, specs: list[TopicSpec], timeout: float = 15.0
                 ) -> tuple[list[str], list[TopicProblem]]:
    """(missing topic names, problems with the ones that exist)."""
    admin = admin_client(bootstrap)
    metadata = cluster_metadata(admin, bootstrap, timeout)
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
            problems.append(TopicProblem(
                spec.name, "partition count", str(spec.partitions), str(count), True,
                f"this topic must have exactly {spec.partitions} partition(s) ({spec.purpose}); "
                f"partitions cannot be removed: delete the topic and run "
                f"`routing-app topics ensure`, or configure another topic name"))
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
            problems.append(TopicProblem(
                spec.name, setting, expected, str(actual), fatal,
                f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
                f"--entity-name {spec.name} --add-config {setting}={expected}"
                + ("" if fatal else "  (tolerated: only a warning)")))
    return missing, problems


def ensure_topics(bootstrap: str, specs: list[TopicSpec], replication_factor: int = 1,
                  timeout: float = 30.0) -> tuple[list[str], list[TopicProblem]]:
    """Creates missing topics; returns (created, tolerated problems).

    Raises TopicSettingsError when a topic exists with settings the project cannot work with
    (a routes topic with cleanup.policy=delete would lose routes).
    """
    missing, problems = check_topics(bootstrap, specs, timeout)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise TopicSettingsError(fatal)
    created = []
    by_name = {s.name: s for s in specs}
    for name in missing:
        spec = by_name[name]
        config = {**spec.config, **spec.required}
        if create_topic(bootstrap, name, spec.partitions, config, replication_factor, timeout):
            created.append(name)
    return created, problems
