"""The project's ACL set (routing_app.topics.acls): least privilege per role, as Kafka reads it.

What each role may do is read with ``permits``, which applies Kafka's rules (DENY wins, ``*``
is every name, prefixes, READ/WRITE imply DESCRIBE); tests/test_stack_secure.py checks the same
set on a real broker with StandardAuthorizer.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from routing_app.cli.stack import stack
from routing_app.config import Settings
from routing_app.topics.acls import (
    CLUSTER,
    AclSetError,
    describe,
    permits,
    routing_acls,
)

WORKER, OPERATOR, PRODUCER = "User:w", "User:o", "User:p"
S = Settings(app_id="app")
ROUTES, EVENTS, CONTROL, USAGE, ANSWERS = (
    S.routes_topic,
    S.events_topic,
    S.control_topic,
    S.usage_topic,
    S.answers_topic,
)
CHANGELOG = "app-routes-changelog"  # one of Faust's own topics (<app_id>-...)
DATA = "orders"
READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
TOPIC, GROUP, CLUSTER_TYPE = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER

# (data_topics, data_prefixed): every topic, one topic, a prefix.
DATA_GRANTS = [("*", False), (DATA, False), ("ord", True)]


def acls(data: tuple[str, bool] = ("*", False)) -> list[AclBinding]:
    return routing_acls(
        S, worker=WORKER, operator=OPERATOR, producer=PRODUCER, data_topics=data[0], data_prefixed=data[1]
    )


def can(bindings: list[AclBinding], who: str, op: AclOperation, topic: str) -> bool:
    return permits(bindings, who, op, TOPIC, topic)


@pytest.mark.parametrize("data", DATA_GRANTS)
def test_only_the_worker_writes_routes_and_events_and_only_it_and_operators_write_control(
    data: tuple[str, bool],
) -> None:
    bindings = acls(data)
    writers = {
        topic: {who for who in (WORKER, OPERATOR, PRODUCER) if can(bindings, who, WRITE, topic)}
        for topic in (ROUTES, EVENTS, CONTROL, USAGE, ANSWERS, CHANGELOG, DATA)
    }
    assert writers == {
        ROUTES: {WORKER},
        EVENTS: {WORKER},
        CONTROL: {WORKER, OPERATOR},
        USAGE: {PRODUCER},
        ANSWERS: {PRODUCER},
        CHANGELOG: {WORKER},
        DATA: {PRODUCER},
    }


@pytest.mark.parametrize("data", DATA_GRANTS)
def test_readers_of_each_topic(data: tuple[str, bool]) -> None:
    bindings = acls(data)
    readers = {
        topic: {who for who in (WORKER, OPERATOR, PRODUCER) if can(bindings, who, READ, topic)}
        for topic in (ROUTES, EVENTS, CONTROL, USAGE, ANSWERS, CHANGELOG, DATA)
    }
    assert readers == {
        # The producers' route caches, the operators' `routes list|show` and `audit`, the
        # worker's cache and table recovery.
        ROUTES: {WORKER, OPERATOR, PRODUCER},
        EVENTS: {OPERATOR},  # the CLI waits for the writer's answer there; audit
        CONTROL: {WORKER},  # nobody else sees operators' commands or the workers' summaries
        USAGE: {WORKER},
        # `topics expand` names the producers that did not answer the hash base yet.
        ANSWERS: {WORKER, OPERATOR},
        CHANGELOG: {WORKER},
        DATA: set(),  # the project reads end offsets (DESCRIBE), never the records
    }


def test_a_wildcard_data_grant_comes_with_denies_on_what_only_the_writer_may_write() -> None:
    bindings = acls(("*", False))
    # The producer's WRITE on "*" covers any topic; the DENYs are what keeps it off these.
    assert can(bindings, PRODUCER, WRITE, "anything-else")
    without_denies = [b for b in bindings if b.permission_type != AclPermissionType.DENY]
    for topic in (ROUTES, EVENTS, CONTROL, CHANGELOG):
        assert can(without_denies, PRODUCER, WRITE, topic)
        assert not can(bindings, PRODUCER, WRITE, topic)
        # A DENY of WRITE leaves what the producer may read and describe alone.
    assert can(bindings, PRODUCER, READ, ROUTES)
    assert can(bindings, PRODUCER, DESCRIBE, ROUTES)


def test_a_named_data_topic_needs_no_deny_and_grants_nothing_else() -> None:
    bindings = acls((DATA, False))
    assert not [b for b in bindings if b.permission_type == AclPermissionType.DENY]
    assert not can(bindings, PRODUCER, WRITE, "other-topic")
    assert not can(bindings, PRODUCER, DESCRIBE, "other-topic")
    assert can(bindings, WORKER, DESCRIBE, DATA)
    assert not can(bindings, WORKER, DESCRIBE, "other-topic")


def test_a_prefix_that_covers_routing_topics_gets_the_denies() -> None:
    bindings = acls(("routing.", True))  # the routing topics' own prefix: a mistake, but safe
    assert can(bindings, PRODUCER, WRITE, "routing.orders")
    for topic in (ROUTES, EVENTS, CONTROL):
        assert not can(bindings, PRODUCER, WRITE, topic)
    assert can(bindings, PRODUCER, WRITE, USAGE) and can(bindings, PRODUCER, WRITE, ANSWERS)
    # A prefix inside the worker's own topics is denied there as a whole.
    inside = acls(("app-x", True))
    assert not can(inside, PRODUCER, WRITE, "app-x-changelog")


def test_groups_and_cluster() -> None:
    bindings = acls()

    def group(who: str, op: AclOperation, name: str) -> bool:
        return permits(bindings, who, op, GROUP, name)

    assert group(WORKER, READ, "app") and not group(WORKER, READ, "someone-elses-group")
    # The lag of lag_groups: committed offsets of any group.
    assert group(WORKER, DESCRIBE, "consumers-of-orders")
    # assign()-only consumers find their group's coordinator: DESCRIBE on their prefixes only.
    assert group(PRODUCER, DESCRIBE, "routing-app-cache-1234")
    assert group(OPERATOR, DESCRIBE, "routing-app-cli-1234")
    assert group(OPERATOR, DESCRIBE, "routing-app-audit-1234")
    for who in (OPERATOR, PRODUCER):
        assert not group(who, READ, "routing-app-cache-1234")  # never a member, never commits
        assert not group(who, DESCRIBE, "app")
    cluster = [
        (who, op)
        for who in (WORKER, OPERATOR, PRODUCER)
        for op in AclOperation
        if op not in (AclOperation.UNKNOWN, AclOperation.ANY)
        and permits(bindings, who, op, CLUSTER_TYPE, CLUSTER)
    ]
    # default.replication.factor, read by the worker; nobody may alter the cluster, create ACLs,
    # or act as a broker.
    assert cluster == [(WORKER, AclOperation.DESCRIBE_CONFIGS)]


def test_no_role_is_granted_everything_anywhere_but_the_worker_on_its_own_topics() -> None:
    everything = [b for b in acls() if b.operation == AclOperation.ALL]
    assert [(b.principal, b.name, b.resource_pattern_type) for b in everything] == [
        (WORKER, "app-", ResourcePatternType.PREFIXED)
    ]
    assert all(b.principal in (WORKER, OPERATOR, PRODUCER) and b.host == "*" for b in acls())


def test_permits_follows_kafkas_rules() -> None:
    def binding(
        name: str, op: AclOperation, permission: AclPermissionType, prefixed: bool = False
    ) -> AclBinding:
        return AclBinding(TOPIC, name, "PREFIXED" if prefixed else "LITERAL", "User:a", "*", op, permission)

    allow, deny = AclPermissionType.ALLOW, AclPermissionType.DENY
    assert permits([binding("t", WRITE, allow)], "User:a", DESCRIBE, TOPIC, "t")  # implied
    assert not permits([binding("t", DESCRIBE, allow)], "User:a", WRITE, TOPIC, "t")
    assert not permits([binding("t", WRITE, allow)], "User:b", WRITE, TOPIC, "t")
    assert permits([binding("*", WRITE, allow)], "User:a", WRITE, TOPIC, "x")
    assert not permits([binding("*", WRITE, allow), binding("x", WRITE, deny)], "User:a", WRITE, TOPIC, "x")
    assert permits([binding("*", WRITE, allow), binding("x", WRITE, deny)], "User:a", DESCRIBE, TOPIC, "x")
    assert permits([binding("ab", READ, allow, prefixed=True)], "User:a", READ, TOPIC, "abc")
    assert not permits([binding("abc", READ, allow, prefixed=True)], "User:a", READ, TOPIC, "ab")
    assert describe(binding("ab", READ, allow, prefixed=True)) == "ALLOW User:a READ topic ab (prefix)"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"producer": WORKER}, "also the worker"),
        ({"producer": OPERATOR}, "also the operator"),
        ({"data_topics": S.routes_topic}, "one of the routing topics"),
        ({"data_topics": "*", "data_prefixed": True}, "'*' is every topic"),
        ({"data_topics": ""}, "give a topic name"),
        ({"worker": "routing-worker"}, "not a principal"),
        ({"operator": "User:*"}, "wildcard"),
    ],
)
def test_sets_that_cannot_work_are_refused_with_the_reason(kwargs: dict[str, object], words: str) -> None:
    given: dict[str, object] = {"worker": WORKER, "operator": OPERATOR, "producer": PRODUCER, **kwargs}
    with pytest.raises(AclSetError, match=words):
        routing_acls(S, **given)  # type: ignore[arg-type]


def test_a_shared_principal_is_fine_when_no_deny_is_needed() -> None:
    bindings = routing_acls(S, worker=WORKER, operator=OPERATOR, producer=OPERATOR, data_topics=DATA)
    assert can(bindings, OPERATOR, WRITE, CONTROL) and can(bindings, OPERATOR, WRITE, DATA)


def test_stack_acls_command_lists_the_set_for_the_settings_topics() -> None:
    settings = Settings(routes_topic="t.routes", app_id="my-app")
    result = CliRunner().invoke(
        stack,
        [
            "acls",
            "--worker",
            "User:w",
            "--operator",
            "User:o",
            "--producer",
            "User:p",
            "--data-prefix",
            "orders.",
        ],
        obj=settings,
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    expected = routing_acls(
        settings,
        worker="User:w",
        operator="User:o",
        producer="User:p",
        data_topics="orders.",
        data_prefixed=True,
    )
    assert f"{len(expected)} bindings" in result.output
    assert "t.routes" in result.output and "my-app-" in result.output and "orders." in result.output
    both = CliRunner().invoke(stack, ["acls", "--data-topics", "a", "--data-prefix", "b"], obj=settings)
    assert both.exit_code == 2 and "not both" in both.output
    bad = CliRunner().invoke(stack, ["acls", "--producer", "User:routing-worker"], obj=settings)
    assert bad.exit_code == 2 and "also the worker" in bad.output


@pytest.mark.parametrize("data", DATA_GRANTS)
def test_only_operators_may_add_partitions_to_data_topics(data: tuple[str, bool]) -> None:
    bindings = acls(data)
    alter = {who for who in (WORKER, OPERATOR, PRODUCER) if can(bindings, who, AclOperation.ALTER, DATA)}
    assert alter == {OPERATOR}  # routing-app topics expand
