"""The ACLs the project needs on a cluster with an authorizer: least privilege per role.

Three roles, each one principal (``User:<name>``):

- **worker** (``faust -A routing_app.app worker``): the only writer of the routes and events
  topics; writes ticks, window summaries and repairs to the control topic; reads usage reports
  and producers' answers; owns Faust's own topics (``<app_id>-*``: table changelogs, the
  assignor's leader topic) and its consumer group ``<app_id>``. It reads the end offsets of
  data topics and the committed offsets of ``lag_groups``, so it may describe the data topics
  and every group. At start it creates missing routing topics and checks their settings
  (``ensure_topics``), and reads the brokers' ``default.replication.factor``.
- **operator** (the CLI: ``routes pin|unpin|freeze|evacuate|list|show``, ``audit``,
  ``topics expand|rebase``): writes commands to the control topic, reads the routes, events
  and answers topics, and may add partitions to (ALTER) the data topics. Nothing else.
- **producer** (RoutingProducer): writes data topics, usage reports and answers; reads the
  routes topic (its route cache). Nothing it sends can change a route except through the
  writer, which takes from the answers topic only producers' answers.

Every reader of ours that is not the worker assigns partitions (no group membership, no
commits), yet librdkafka still looks up its ``group.id``'s coordinator, which needs DESCRIBE on
the group; without it each such consumer reports one "Group authorization failed" error (and
the route cache logs it as a warning). Those group ids start with the prefixes below.

Kafka rules these bindings rely on: DENY wins over ALLOW; READ, WRITE, DELETE and ALTER imply
DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS; the literal name ``*`` is every resource.
Idempotent producers (RoutingProducer and the CLI enable it) need no IDEMPOTENT_WRITE on the
cluster: since Kafka 3.0 WRITE on any topic allows it (checked on the secure local stack).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from routing_app.config import Settings
from routing_app.connection import (
    AUDIT_GROUP_PREFIX,
    CACHE_GROUP_PREFIX,
    CLI_GROUP_PREFIX,
    METRICS_GROUP_PREFIX,
    Kafka,
    admin_client,
)

# Kafka's one cluster resource (confluent-kafka calls its type BROKER; on the wire: CLUSTER).
CLUSTER = "kafka-cluster"
ANY_NAME = "*"
ANY_HOST = "*"


R, W, C, D = AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE
DC = AclOperation.DESCRIBE_CONFIGS
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
TOPIC, GROUP, CLUSTER_TYPE = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY


class AclSetError(ValueError):
    """The roles or data topics given cannot make a working least-privilege set."""


def _allow(
    principal: str,
    kind: ResourceType,
    name: str,
    ops: Iterable[AclOperation],
    pattern: ResourcePatternType = LITERAL,
) -> list[AclBinding]:
    return [AclBinding(kind, name, pattern, principal, ANY_HOST, op, ALLOW) for op in ops]


def _deny(
    principal: str,
    kind: ResourceType,
    name: str,
    ops: Iterable[AclOperation],
    pattern: ResourcePatternType = LITERAL,
) -> list[AclBinding]:
    return [AclBinding(kind, name, pattern, principal, ANY_HOST, op, DENY) for op in ops]


def _check_principal(role: str, principal: str) -> None:
    kind, sep, name = principal.partition(":")
    if not sep or not kind or not name or name == ANY_NAME:
        raise AclSetError(
            f"{role} principal {principal!r} is not a principal such as "
            "User:routing-worker (a wildcard would grant everyone)"
        )


def worker_acls(
    s: Settings, worker: str, data_topics: str = ANY_NAME, data_prefixed: bool = False
) -> list[AclBinding]:
    """What ``faust -A routing_app.app worker`` with ``ROUTING_APP_ID=<s.app_id>`` needs."""
    own = (s.routes_topic, s.events_topic, s.control_topic, s.usage_topic, s.answers_topic)
    out: list[AclBinding] = []
    for topic in own:
        # ensure_topics at start: create what is missing, check the settings of what exists.
        out += _allow(worker, TOPIC, topic, (C, D, DC))
    for topic in (s.routes_topic, s.control_topic, s.usage_topic, s.answers_topic):
        out += _allow(worker, TOPIC, topic, (R,))
    for topic in (s.routes_topic, s.events_topic, s.control_topic):
        out += _allow(worker, TOPIC, topic, (W,))
    # Faust's own topics: table changelogs (<app_id>-<table>-changelog) and the assignor's
    # <app_id>-__assignor-__leader, created, written and read by the worker alone.
    out += _allow(worker, TOPIC, f"{s.app_id}-", (AclOperation.ALL,), PREFIXED)
    out += _allow(worker, GROUP, s.app_id, (R, D))
    # Data partitions' end offsets and timestamps (write rates) and the committed offsets of
    # lag_groups (drains, lag), wherever they are.
    pattern = PREFIXED if data_prefixed else LITERAL
    out += _allow(worker, TOPIC, data_topics, (D,), pattern)
    out += _allow(worker, GROUP, ANY_NAME, (D,))
    # default.replication.factor (the replicas of routing topics and Faust's changelogs).
    out += _allow(worker, CLUSTER_TYPE, CLUSTER, (DC,))
    return out


def operator_acls(
    s: Settings, operator: str, data_topics: str = ANY_NAME, data_prefixed: bool = False
) -> list[AclBinding]:
    """What the CLI needs to command the writer, read the routes and the decisions, and grow a
    data topic (``topics expand``: ALTER adds partitions; the answers name the producers an
    expansion waits for)."""
    out = _allow(operator, TOPIC, s.control_topic, (W, D))
    for topic in (s.routes_topic, s.events_topic, s.answers_topic):
        out += _allow(operator, TOPIC, topic, (R, D))
    out += _allow(operator, TOPIC, data_topics, (AclOperation.ALTER,), PREFIXED if data_prefixed else LITERAL)
    for prefix in (CLI_GROUP_PREFIX, AUDIT_GROUP_PREFIX, CACHE_GROUP_PREFIX):
        out += _allow(operator, GROUP, prefix, (D,), PREFIXED)
    return out


def producer_acls(
    s: Settings, producer: str, data_topics: str = ANY_NAME, data_prefixed: bool = False
) -> list[AclBinding]:
    """What a RoutingProducer needs: its data topics, usage, answers, and the routes to read.

    ``data_topics``: one topic's name, a prefix (``data_prefixed``) or ``*`` (every topic). A
    grant that covers the routing topics (``*``, or a prefix they start with) comes with DENY
    WRITE on the routes, events and control topics and on the worker's own topics: only the
    writer may change a route, only operators (and the worker) may command it."""
    pattern = PREFIXED if data_prefixed else LITERAL
    out = _allow(producer, TOPIC, data_topics, (W, D), pattern)
    for topic in (s.usage_topic, s.answers_topic):
        out += _allow(producer, TOPIC, topic, (W, D))
    out += _allow(producer, TOPIC, s.routes_topic, (R, D))
    for prefix in (CACHE_GROUP_PREFIX, METRICS_GROUP_PREFIX):
        out += _allow(producer, GROUP, prefix, (D,), PREFIXED)
    for topic in (s.routes_topic, s.events_topic, s.control_topic):
        if _covers(data_topics, data_prefixed, topic):
            out += _deny(producer, TOPIC, topic, (W,))
    internal = f"{s.app_id}-"
    if _covers(data_topics, data_prefixed, internal) or (data_prefixed and data_topics.startswith(internal)):
        out += _deny(producer, TOPIC, internal, (W,), PREFIXED)
    return out


def _covers(data_topics: str, data_prefixed: bool, name: str) -> bool:
    """Whether the producer's data grant reaches topic ``name`` (or names starting with it)."""
    if data_topics == ANY_NAME and not data_prefixed:
        return True
    return name.startswith(data_topics) if data_prefixed else name == data_topics


def routing_acls(
    settings: Settings,
    *,
    worker: str,
    operator: str,
    producer: str,
    data_topics: str = ANY_NAME,
    data_prefixed: bool = False,
) -> list[AclBinding]:
    """Every binding the three roles need, for the topics and app id of ``settings``.

    ``data_topics``: the data topics producers write and the worker watches: a name, a prefix
    (``data_prefixed``), or ``*`` for every topic. Raises AclSetError for a set that could not
    work (a data topic that is a routing topic, a producer that is also the worker, ...)."""
    for role, principal in (("worker", worker), ("operator", operator), ("producer", producer)):
        _check_principal(role, principal)
    if not data_topics:
        raise AclSetError("data topics: give a topic name, a prefix, or * for every topic")
    if data_prefixed and data_topics == ANY_NAME:
        raise AclSetError(
            "data topics: '*' is every topic already; a prefix of '*' would be "
            "the topics whose names start with a star"
        )
    own = {
        settings.routes_topic,
        settings.events_topic,
        settings.control_topic,
        settings.usage_topic,
        settings.answers_topic,
    }
    if not data_prefixed and data_topics in own:
        raise AclSetError(f"data topics: {data_topics!r} is one of the routing topics, not a data topic")
    denies = [
        b for b in producer_acls(settings, producer, data_topics, data_prefixed) if b.permission_type == DENY
    ]
    if denies and producer in (worker, operator):
        raise AclSetError(
            f"producer principal {producer} is also the "
            f"{'worker' if producer == worker else 'operator'}: a grant of data topics "
            f"{data_topics!r}{' (prefix)' if data_prefixed else ''} covers routing topics, and "
            "the DENY that keeps producers from writing them would lock that role out too. "
            "Give producers a principal of their own, or name their data topics"
        )
    return [
        *worker_acls(settings, worker, data_topics, data_prefixed),
        *operator_acls(settings, operator, data_topics, data_prefixed),
        *producer_acls(settings, producer, data_topics, data_prefixed),
    ]


# -- what a set of bindings allows (Kafka's rules, for tests and for reading a set) ----------

_E = TypeVar("_E", bound=Enum)


def _enum(kind: type[_E], value: _E | str | int) -> _E:
    """AclBinding's fields as enums (confluent-kafka converts them; its types allow str/int)."""
    if isinstance(value, kind):
        return value
    return kind[value.upper()] if isinstance(value, str) else kind(value)


_IMPLIES_DESCRIBE = frozenset({R, W, AclOperation.DELETE, AclOperation.ALTER, D})
_IMPLIES_DESCRIBE_CONFIGS = frozenset({AclOperation.ALTER_CONFIGS, DC})


def _op_matches(granted: AclOperation, wanted: AclOperation, permission: AclPermissionType) -> bool:
    if granted in (AclOperation.ALL, wanted):
        return True
    # Implications hold for ALLOW only: a DENY of WRITE does not deny DESCRIBE.
    if permission == ALLOW and wanted == D:
        return granted in _IMPLIES_DESCRIBE
    if permission == ALLOW and wanted == DC:
        return granted in _IMPLIES_DESCRIBE_CONFIGS
    return False


def _resource_matches(binding: AclBinding, kind: ResourceType, name: str) -> bool:
    if binding.restype != kind:
        return False
    if binding.resource_pattern_type == PREFIXED:
        return name.startswith(binding.name)
    return binding.name in (ANY_NAME, name)


def permits(
    bindings: Sequence[AclBinding], principal: str, operation: AclOperation, kind: ResourceType, name: str
) -> bool:
    """Whether StandardAuthorizer (without super users, allow.everyone.if.no.acl.found=false)
    lets ``principal`` do ``operation`` on the resource, given only ``bindings``."""
    matching = [
        b for b in bindings if b.principal in (principal, "User:*") and _resource_matches(b, kind, name)
    ]
    if any(
        b.permission_type == DENY and _op_matches(_enum(AclOperation, b.operation), operation, DENY)
        for b in matching
    ):
        return False
    return any(
        b.permission_type == ALLOW and _op_matches(_enum(AclOperation, b.operation), operation, ALLOW)
        for b in matching
    )


# -- applying ---------------------------------------------------------------------------------


def apply_acls(kafka: Kafka, bindings: Sequence[AclBinding], timeout: float = 30.0) -> int:
    """Creates the bindings (as a principal allowed to: a super user, or ALTER on the cluster).

    Creating a binding that exists already is not an error, so this is safe to repeat. Returns
    how many were sent; raises KafkaException with the broker's reason for the first refused."""
    if not bindings:
        return 0
    admin = admin_client(kafka)
    futures = admin.create_acls(list(bindings), request_timeout=timeout)
    refused: tuple[AclBinding, KafkaException] | None = None
    for binding, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            refused = (binding, exc)
            break
    # Gone before raising: the exception's traceback would keep the client (and its threads)
    # alive for as long as someone holds the exception.
    del admin, futures
    if refused is not None:
        binding, failure = refused
        error = failure.args[0] if failure.args else None
        if isinstance(error, KafkaError) and error.code() in (
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            KafkaError.SASL_AUTHENTICATION_FAILED,
        ):
            # The broker's own text here is a dump of the request: the cause is who we are.
            reason = (
                f"{error.name()}: the principal of these settings may not create ACLs "
                "(a super user, or ALTER on the cluster, may)"
            )
        else:
            reason = str(error.str() if isinstance(error, KafkaError) else failure)[:300]
        raise KafkaException(f"cannot create ACL {describe(binding)} on {kafka}: {reason}") from failure
    return len(bindings)


def describe(binding: AclBinding) -> str:
    """One line: "ALLOW User:x WRITE topic routing.control"."""
    pattern = " (prefix)" if binding.resource_pattern_type == PREFIXED else ""
    restype = _enum(ResourceType, binding.restype)
    kind = "cluster" if restype == CLUSTER_TYPE else restype.name.lower()
    return (
        f"{_enum(AclPermissionType, binding.permission_type).name} {binding.principal} "
        f"{_enum(AclOperation, binding.operation).name} {kind} {binding.name}{pattern}"
    )
