"""Access control on a real secure cluster (issue 12, item 1): SASL/SCRAM logins and the
project's ACLs (``routing_app.topics.acls``) on a private ``stack up --secure``.

Each role runs as its own principal: the worker, an operator (the CLI) and producers. A producer
may write data, usage and its answers; it may not write routes or commands, and routing keeps
working for everyone while it tries. The writer also refuses a command whose ``issued_by`` is
not an operator principal, which ACLs cannot check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from routing_app.client import RoutingProducer, java_partition
from routing_app.config import Settings
from routing_app.connection import KafkaUnreachable, admin_client, client_settings, cluster_metadata
from routing_app.control.client import ControlClient
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.stack import security
from routing_app.stack.testing import SecureStack, secure_stack
from routing_app.topics import create_topic
from tests.e2e.support import Worker, cli, start_writer, wait_for

pytestmark = pytest.mark.integration

OPERATOR = security.principal(security.OPERATOR)


@pytest.fixture(scope="module")
def secure(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    # Only Kafka starts: the session's registry serves this cluster too.
    with secure_stack(
        tmp_path_factory.mktemp("secure-stack"), stack_settings, registry_url=stack_settings.registry_url
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def secure_worker(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    settings = secure.as_user(security.WORKER).replace(operator_principals=OPERATOR)
    worker = start_writer(settings, tmp_path_factory.mktemp("secure-worker"))
    assert worker.alive, worker.log()[-3000:]
    yield worker
    worker.stop()


def try_write(settings: Settings, topic: str, key: bytes = b"k") -> KafkaError | None:
    """Writes one record as ``settings``' principal: None if the broker took it, else why not."""
    outcome: list[KafkaError | None] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        outcome.append(error)

    producer = Producer(client_settings(settings.kafka, **{"message.timeout.ms": 10_000}))
    producer.produce(topic, b"forged", key, on_delivery=delivered)
    producer.flush(15)
    assert outcome, "no delivery report"
    return outcome[0]


def read_partition(admin: Settings, topic: str, partition: int) -> list[bytes]:
    consumer = Consumer(
        client_settings(admin.kafka, **{"group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    try:
        tp = TopicPartition(topic, partition)
        _, end = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(found) < end and time.monotonic() < deadline:
            found += [m.value() or b"" for m in consumer.consume(1000, 0.5) if m.error() is None]
        return found
    finally:
        consumer.close()


def test_logins_are_checked(secure: SecureStack) -> None:
    admin = secure.settings
    nobody = secure.settings.replace(
        security_protocol="", sasl_mechanism="", sasl_username="", sasl_password=""
    )
    wrong = secure.as_user(security.PRODUCER).replace(sasl_password="not-the-password")
    messages = []
    for settings in (nobody, wrong):
        try:
            cluster_metadata(admin_client(settings.kafka), settings.kafka, timeout=5)
        except KafkaUnreachable as exc:
            messages.append(str(exc))
    assert len(messages) == 2 and all(admin.bootstrap in m for m in messages)
    # Both say what to check: the login settings, not "is the broker up".
    # Both say what to check: the login settings, not "is the broker up".
    assert "set ROUTING_SECURITY_PROTOCOL and the credentials" in messages[0], messages[0]
    assert "refused our credentials" in messages[1] and "invalid credentials" in messages[1]


def test_only_the_writer_changes_routes_and_routing_goes_on_meanwhile(
    secure: SecureStack, secure_worker: Worker
) -> None:
    admin = secure.settings
    operator = secure.as_user(security.OPERATOR)
    producer_settings = secure.as_user(security.PRODUCER)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(admin.kafka, topic, 6)
    tenant = "acme"
    hashed = java_partition(tenant.encode(), 6)
    target, later = (hashed + 1) % 6, (hashed + 2) % 6
    sent: list[bytes] = []

    out = cli(operator, "routes", "pin", topic, tenant, "-p", str(target))
    assert out.returncode == 0, out.stderr + secure_worker.log()[-3000:]

    with RoutingProducer(producer_settings.producer_config(acks="all", **{"linger.ms": 5})) as producer:
        producer.wait_ready(30)
        pinned = wait_for(lambda: producer.route_for(topic, tenant), what="the pinned route")
        assert pinned.partitions == (target,)

        def send(count: int) -> None:
            # key=tenant only: the tenant's one ordered stream.
            for _ in range(count):
                value = str(len(sent)).encode()
                sent.append(value)
                producer.produce(topic, value, tenant.encode())
            producer.flush(30)

        send(500)
        # The producer's principal against the routes, events and control topics: refused by
        # the broker, whatever the record says.
        denied = {
            name: try_write(producer_settings, name)
            for name in (admin.routes_topic, admin.events_topic, admin.control_topic)
        }
        assert {name: e and e.code() for name, e in denied.items()} == {
            name: KafkaError.TOPIC_AUTHORIZATION_FAILED for name in denied
        }, denied
        # ... and the CLI run as a producer: one clear line, exit 2, nothing applied.
        out = cli(producer_settings, "routes", "pin", topic, tenant, "-p", str(later))
        assert out.returncode == 2, out.stdout + out.stderr
        assert "refused the command" in out.stderr and "may not write it" in out.stderr
        # An operator may command, not write routes; nobody else may write answers' neighbours.
        assert try_write(operator, admin.routes_topic) is not None
        assert try_write(operator, admin.answers_topic) is not None
        # What producers may write: data, usage, answers.
        assert try_write(producer_settings, topic) is None
        send(500)
        assert producer.route_for(topic, tenant) == pinned

        # An operator principal's tool that claims to be someone else: ACLs cannot tell,
        # the writer can (operator_principals).
        with ControlClient(operator) as client:
            outcome = client.submit(
                ControlCommand(
                    ControlAction.PIN,
                    topic,
                    tenant,
                    int(time.time() * 1000),
                    (later,),
                    issued_by="User:mallory",
                ),
                wait_s=30,
            )
        assert outcome.answer is not None and not outcome.answer.applied
        assert "not an operator principal" in outcome.answer.reason

        # A strict move through it all: the producer answers the drain on the answers topic
        # under its own principal, and the move completes.
        out = cli(operator, "routes", "pin", topic, tenant, "-p", str(later))
        assert out.returncode == 0, out.stderr + secure_worker.log()[-3000:]
        wait_for(
            lambda: (r := producer.route_for(topic, tenant)) is not None and r.partitions == (later,),
            what="the move",
        )
        send(500)

    # (The one record try_write put on the data topic is not the tenant's.)
    before, after = ([v for v in read_partition(admin, topic, p) if v != b"forged"] for p in (target, later))
    assert before + after == sent, "lost, duplicated or reordered records"
    assert len(before) == 1000 and len(after) == 500
    stats = secure_worker.get("/writer/stats")
    assert stats["commands_unauthorized"] == 1
    assert stats["foreign_routes"] == 0 and stats["messages_misplaced"] == 0
