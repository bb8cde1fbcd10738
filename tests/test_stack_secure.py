"""`stack up --secure`: Kafka with SASL/SCRAM logins and the project's ACLs, on a real broker.

One secure single-node Kafka for the module (its own state folder and ports; the session's
registry), then plain confluent-kafka clients as each principal. What each role may write and
read is the set of routing_app.topics.acls; tests/unit/test_acls.py checks that set in full.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient, ResourceType

from routing_app.client.cache import RouteCache
from routing_app.codec import registry_client
from routing_app.config import Settings, load_settings
from routing_app.connection import CACHE_GROUP_PREFIX, polled_client_settings
from routing_app.routes import RouteCodec
from routing_app.stack import LocalStack, StackError, kafka, security
from routing_app.stack.process import free_ports
from routing_app.stack.testing import SecureStack, secure_stack
from routing_app.topics import create_topic, ensure_topics, routing_topics
from routing_app.topics.acls import apply_acls, permits, routing_acls

# The tests of a running secure stack; the rest of this module needs no broker.
integration = pytest.mark.integration

DATA = "orders"


@pytest.fixture(scope="module")
def secure(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """A running secure stack with the routing topics and a data topic, each holding one
    record (written as admin)."""
    with secure_stack(
        tmp_path_factory.mktemp("secure-stack"), Settings(), registry_url=stack_settings.registry_url
    ) as running:
        admin = running.settings
        ensure_topics(admin.kafka, routing_topics(admin))
        create_topic(admin.kafka, DATA, 3)
        producer = Producer(admin.kafka.client_config(acks="all"))
        for topic in (*topics(admin), DATA):
            producer.produce(topic, b"seed", b"k")
        assert producer.flush(30) == 0
        del producer
        yield running


def topics(s: Settings) -> list[str]:
    return [s.routes_topic, s.events_topic, s.control_topic, s.usage_topic, s.answers_topic]


def env_file_settings(running: SecureStack, user: str) -> Settings:
    """Settings loaded from the stack's env file for ``user``, as a shell that sourced it."""
    path = running.info.env_files[user]
    environ = dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return load_settings(
        config_file=None,
        environ={
            **environ,
            "ROUTING_BOOTSTRAP_SERVERS": running.info.bootstrap,
            "ROUTING_SCHEMA_REGISTRY_URL": running.settings.registry_url,
        },
    )


def produce_to_each(s: Settings, targets: list[str]) -> dict[str, str]:
    """topic -> "ok" or the error name of one acks=all, idempotent record (as our clients
    send), produced as the principal of ``s``."""
    results: dict[str, str] = {}
    producer = Producer(
        s.kafka.client_config(
            **{"acks": "all", "enable.idempotence": True, "message.timeout.ms": 15000, "log_level": 0}
        )
    )

    def delivered(topic: str) -> Callable[[KafkaError | None, object], None]:
        def record(err: KafkaError | None, _msg: object) -> None:
            results[topic] = "ok" if err is None else err.name()

        return record

    for topic in targets:
        producer.produce(topic, b"v", b"k", on_delivery=delivered(topic))
    producer.flush(30)
    del producer
    return results


def read_first(s: Settings, topic: str) -> str:
    """ "ok" when ``topic`` gives the principal of ``s`` a record, else the error's name."""
    consumer = Consumer(
        s.kafka.client_config(
            **{"group.id": f"{CACHE_GROUP_PREFIX}{uuid.uuid4()}", "enable.auto.commit": False, "log_level": 0}
        )
    )
    try:
        # A topic the principal may not even describe is refused in the metadata; a fetch of
        # it would wait for nothing.
        found = consumer.list_topics(topic, timeout=10).topics[topic]
        if found.error is not None:
            return str(found.error.name())
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            return "ok" if error is None else error.name()
        return "nothing within 15 s"
    finally:
        consumer.close()


@integration
def test_a_client_without_credentials_is_refused_on_both_listeners(secure: SecureStack) -> None:
    for port in (secure.settings.kafka_port, secure.settings.controller_port):
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
        del admin


def wait_for_errors(conf: dict[str, object]) -> list[KafkaError]:
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append, "log_level": 0})
    try:
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            producer.poll(0.2)
    finally:
        del producer
    return errors


@integration
def test_a_wrong_password_is_an_authentication_error(secure: SecureStack) -> None:
    producer = secure.as_user(security.PRODUCER)
    conf = producer.replace(sasl_password="not-the-password").kafka.client_config()
    errors = wait_for_errors(conf)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert "SCRAM" in errors[0].str() or "uthentication" in errors[0].str()
    # The controller listener's static user does not log in to the client listener, nor the
    # other way round: each listener has its own mechanism.
    credentials = LocalStack(secure.settings).credentials()
    assert credentials is not None
    as_controller = {
        **conf,
        "sasl.username": credentials.controller_user,
        "sasl.password": credentials.controller_password,
    }
    assert wait_for_errors(as_controller)[0].code() == KafkaError._AUTHENTICATION


@integration
def test_each_principal_writes_only_its_own_topics(secure: SecureStack) -> None:
    s = secure.settings
    targets = [*topics(s), DATA]
    written = {
        user: produce_to_each(env_file_settings(secure, user), targets)
        for user in (security.PRODUCER, security.OPERATOR, security.WORKER)
    }
    ok, denied = "ok", "TOPIC_AUTHORIZATION_FAILED"
    assert written[security.PRODUCER] == {
        s.routes_topic: denied,
        s.events_topic: denied,
        s.control_topic: denied,
        s.usage_topic: ok,
        s.answers_topic: ok,
        DATA: ok,
    }
    assert written[security.OPERATOR] == {
        s.routes_topic: denied,
        s.events_topic: denied,
        s.control_topic: ok,
        s.usage_topic: denied,
        s.answers_topic: denied,
        DATA: denied,
    }
    assert written[security.WORKER] == {
        s.routes_topic: ok,
        s.events_topic: ok,
        s.control_topic: ok,
        s.usage_topic: denied,
        s.answers_topic: denied,
        DATA: denied,
    }
    # The broker and routing_app.topics.acls.permits (what the unit tests read) agree.
    bindings = routing_acls(
        s,
        worker=security.principal(security.WORKER),
        operator=security.principal(security.OPERATOR),
        producer=security.principal(security.PRODUCER),
    )
    for user, outcome in written.items():
        principal = security.principal(user)
        assert outcome == {
            topic: ok
            if permits(bindings, principal, AclOperation.WRITE, ResourceType.TOPIC, topic)
            else denied
            for topic in targets
        }


@integration
def test_each_principal_reads_only_what_it_needs(secure: SecureStack) -> None:
    s = secure.settings
    producer, operator = secure.as_user(security.PRODUCER), secure.as_user(security.OPERATOR)
    assert read_first(producer, s.routes_topic) == "ok"
    assert read_first(producer, s.control_topic) == "TOPIC_AUTHORIZATION_FAILED"
    assert read_first(operator, s.events_topic) == "ok"
    # `topics expand` names the producers that have not answered its hash base yet.
    assert read_first(operator, s.answers_topic) == "ok"
    assert read_first(operator, s.usage_topic) == "TOPIC_AUTHORIZATION_FAILED"


@integration
def test_a_producers_route_cache_reads_the_routes_without_a_group_error(
    secure: SecureStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Its consumer has a group id it never joins; without DESCRIBE on the group the broker
    refuses the coordinator look-up, and the cache logged that as a warning."""
    s = secure.as_user(security.PRODUCER)
    codec = RouteCodec(registry_client(s.registry_url), s.routes_topic)
    cache = RouteCache(polled_client_settings(s.kafka), codec, s.routes_topic).start()
    with caplog.at_level(logging.WARNING, logger="routing_app"):
        try:
            assert cache.wait_ready(20)
            time.sleep(1.0)  # the coordinator look-up runs beside the fetches
        finally:
            cache.stop()
    stats = cache.stats()
    # Every record read (the seed and the worker's record: poison to the cache), none refused.
    assert stats.position == stats.end_offset_at_start >= 1 and stats.undecodable >= 1
    assert not [r.getMessage() for r in caplog.records if "uthoriz" in r.getMessage()]


@integration
def test_stack_up_again_keeps_it_secure_and_reapplies_the_acls(secure: SecureStack) -> None:
    s = secure.settings.replace(
        security_protocol="", sasl_mechanism="", sasl_username="", sasl_password="", bootstrap_servers=None
    )
    info = LocalStack(s).up()  # no --secure: as the folder runs
    assert info.secure and info.started == ()
    assert info.acls_applied == len(
        routing_acls(
            s,
            worker="User:routing-worker",
            operator="User:routing-operator",
            producer="User:routing-producer",
        )
    )
    assert set(info.credentials) == {security.principal(u) for u in security.USERS}
    with pytest.raises(StackError, match=r"stack down.*--no-secure"):
        LocalStack(s, secure=False).up()
    report = LocalStack(s).status()
    assert report["running"] and report["kafka"]["secure"]


@integration
def test_only_a_super_user_may_apply_the_acls(secure: SecureStack) -> None:
    producer = secure.as_user(security.PRODUCER)
    bindings = routing_acls(
        producer,
        worker="User:routing-worker",
        operator="User:routing-operator",
        producer="User:routing-producer",
    )
    with pytest.raises(
        KafkaException,
        match="CLUSTER_AUTHORIZATION_FAILED: the principal of these settings may not create ACLs",
    ):
        apply_acls(producer.kafka, bindings)
    assert apply_acls(secure.settings.kafka, bindings) == len(bindings)  # admin; again: no error


@integration
def test_credentials_are_private_to_their_owner(secure: SecureStack) -> None:
    state = secure.settings.state_dir
    path = security.credentials_file(state)
    data = json.loads(path.read_text())
    assert set(data["users"]) == set(security.USERS)
    assert data["sasl_mechanism"] == "SCRAM-SHA-512"
    private = [
        path,
        *secure.info.env_files.values(),
        kafka.single_node(secure.settings, secure=True).properties_file,
    ]
    for file in private:
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file
    # The broker's log never shows a password (Kafka hides sasl.jaas.config).
    log = Path(secure.info.kafka_log or "").read_text()
    assert all(password not in log for password in data["users"].values())


# -- no broker: the pieces of the secure stack ------------------------------------------------


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_secure_node_properties(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=21092, controller_port=21093)
    credentials = security.load_or_create(tmp_path)
    nodes = kafka.cluster_nodes(settings, 3, [(21094, 21095), (21096, 21097)], secure=True)
    # Data of its own: an open stack never starts on the secure one's metadata, nor back.
    assert nodes[1].data_dir == tmp_path / "kafka-secure-2" / "data"
    assert kafka.single_node(settings, secure=True).data_dir == tmp_path / "kafka-secure-data"
    props = _props(kafka.server_properties(settings, nodes[1], nodes, credentials))
    # No listener without a login.
    assert props["listeners"] == "CLIENT://127.0.0.1:21094,CONTROLLER://127.0.0.1:21095"
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["inter.broker.listener.name"] == "CLIENT"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    assert credentials.password("admin") in props["listener.name.client.scram-sha-512.sasl.jaas.config"]
    # The open stack is what it always was.
    assert "authorizer.class.name" not in _props(kafka.server_properties(settings))


def test_credentials_are_made_once_and_kept(tmp_path: Path) -> None:
    first = security.load_or_create(tmp_path)
    assert set(first.users) == set(security.USERS)
    assert len({*first.users.values(), first.controller_password}) == len(security.USERS) + 1
    assert security.load_or_create(tmp_path) == first
    path = security.credentials_file(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # A user added to the stack later gets a password; the others keep theirs.
    data = json.loads(path.read_text())
    del data["users"]["routing-operator"]
    path.write_text(json.dumps(data))
    again = security.load_or_create(tmp_path)
    assert again.users["admin"] == first.users["admin"]
    assert again.users["routing-operator"] != first.users["routing-operator"]
    assert first.settings_values("routing-worker") == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "routing-worker",
        "sasl_password": first.users["routing-worker"],
        # The writer applies commands of these principals only.
        "operator_principals": "User:routing-operator,User:admin",
    }
    assert "password" not in repr(first) and first.users["admin"] not in repr(first)
    path.write_text("{not json")
    with pytest.raises(StackError, match="cannot read the secure stack's credentials"):
        security.load(tmp_path)


def test_the_folder_remembers_the_secure_stack(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert not LocalStack(settings).is_secure()
    (tmp_path / "kafka-layout.json").write_text('{"brokers": 1, "ports": [], "secure": true}')
    stack = LocalStack(settings)
    assert stack.is_secure()
    assert stack.nodes()[0].data_dir == tmp_path / "kafka-secure-data"


def test_a_secure_kafka_whose_passwords_are_gone_is_refused_before_it_starts(tmp_path: Path) -> None:
    ports = free_ports(3)
    settings = Settings(
        state_dir=tmp_path,
        kafka_port=ports[0],
        controller_port=ports[1],
        registry_port=ports[2],
        cache_dir=tmp_path / "cache",
        schema_registry_url="http://127.0.0.1:1/apis/ccompat/v7",
    )
    data = kafka.single_node(settings, secure=True).data_dir
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("cluster.id=abc\nnode.id=1\n")
    with pytest.raises(StackError, match=r"credentials.json, which is gone: nobody can log in"):
        LocalStack(settings, secure=True).up()
    # Refused before anything was downloaded or started.
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_secure_is_refused_for_an_external_cluster() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:9")
    with pytest.raises(StackError, match="external cluster"):
        LocalStack(settings, secure=True).up()
