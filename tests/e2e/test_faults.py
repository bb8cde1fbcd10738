"""Faults at the wrong moment (issue 12): the registry down when a worker or a producer starts
and in the middle of a move, a move that cannot finish, a Kafka outage, and who can reach the
worker's web server. All on the real stack; the shared registry and Kafka are never stopped:
the tests that need an outage get a registry or a Kafka of their own from the stack code."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from confluent_kafka import Producer

from routing_app.app.launcher import launch_worker
from routing_app.client import RecordMetadata, RoutesNotReady, RoutingProducer, java_partition
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.control import CommandOutcome, ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.routes import Route, RouteCodec
from routing_app.stack import LocalStack, artifacts, registry
from routing_app.stack.java import java_for_registry
from routing_app.stack.process import free_port, free_ports
from routing_app.topics import create_topic
from tests.e2e.support import Worker, cli, fresh_routing_settings, start_writer, wait_for

pytestmark = pytest.mark.integration


# -- a registry and a Kafka of our own, to stop and start ---------------------------------------
class SpareRegistry:
    """A second Apicurio (the stack's own code, its own state folder and port)."""

    def __init__(self, base: Settings, state_dir: Path) -> None:
        self.settings = base.replace(state_dir=state_dir, registry_port=free_port(), schema_registry_url=None)
        self.url = self.settings.registry_url
        self._process = registry.process(self.settings)

    @property
    def running(self) -> bool:
        return self._process.running_pid() is not None

    def start(self) -> None:
        home = artifacts.ensure_registry(self.settings)
        pid = self._process.start(registry.argv(self.settings, java_for_registry(), free_port()), cwd=home)
        registry.wait_ready(self.settings, pid)
        registry.set_global_compatibility(self.url)

    def stop(self) -> None:
        self._process.stop()
        assert not registry.answers(self.url, timeout_s=2.0)


@pytest.fixture(scope="module")
def spare(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpareRegistry]:
    spare = SpareRegistry(stack_settings, tmp_path_factory.mktemp("spare-registry"))
    spare.start()
    try:
        yield spare
    finally:
        spare.stop()


@contextlib.contextmanager
def registry_down(spare: SpareRegistry) -> Iterator[None]:
    spare.stop()
    try:
        yield
    finally:
        if not spare.running:
            spare.start()


def write_route(settings: Settings, route: Route) -> None:
    """A route record as the writer would write it, through ``settings``' registry."""
    codec = RouteCodec(registry_client(settings.registry_url), settings.routes_topic)
    producer = Producer(client_settings(settings.bootstrap, acks="all"))
    producer.produce(
        settings.routes_topic, codec.encode(route), RouteCodec.encode_key(route.topic, route.tenant)
    )
    assert producer.flush(10) == 0


def data_topic(settings: Settings, partitions: int) -> str:
    name = f"faults-{uuid.uuid4().hex[:8]}"
    create_topic(settings.bootstrap, name, partitions)
    return name


def not_hashed(tenant: str, partitions: int) -> int:
    return (java_partition(tenant.encode(), partitions) + 1) % partitions


# -- 2. the web server listens on loopback only -------------------------------------------------
def _non_loopback_addresses() -> list[str]:
    found: set[str] = set()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found.update(
            subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
        )
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
        found.add(probe.getsockname()[0])
    usable = []
    for text in found:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(text)
            if address.version == 4 and not (
                address.is_loopback or address.is_unspecified or address.is_link_local
            ):
                usable.append(text)
    return sorted(usable)


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return False
    return True


def test_worker_web_server_is_reachable_on_loopback_only(worker: Worker) -> None:
    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try the web port from")
    assert _connects("127.0.0.1", worker.web_port)
    assert worker.get("/writer/stats")["worker_id"]
    reachable = [a for a in addresses if _connects(a, worker.web_port)]
    assert not reachable, f"the worker's web port {worker.web_port} answers on {reachable}"


# -- 3. a worker started while the registry is down ----------------------------------------------
def test_worker_started_while_the_registry_is_down_becomes_ready_once_it_is_back(
    stack_settings: Settings, spare: SpareRegistry, tmp_path: Path
) -> None:
    settings = fresh_routing_settings(stack_settings, "faults.start", schema_registry_url=spare.url)
    topic = data_topic(settings, 4)
    # On the routes topic, the routes table's changelog: only this registry knows its schema.
    write_route(settings, Route(topic, "acme", (2,), 1, reason="before the outage"))
    with registry_down(spare):
        worker = launch_worker(settings, tmp_path / "worker")
        try:
            wait_for(
                lambda: spare.url in worker.log() or "[^---Recovery]" in worker.log(),
                timeout=90,
                what="the worker to start reading",
            )
            assert worker.alive and not worker.ready()
            spare.start()
            assert worker.wait_ready(120), f"never ready:\n{worker.log()[-4000:]}"
            log = worker.log()
            assert f"waiting for the schema registry at {spare.url}" in log
            assert f"schema registry at {spare.url} answered after" in log
            wait_for(
                lambda: worker.get("/writer/stats").get("planning"),
                timeout=90,
                what="the worker to own the control partition",
            )
            routes = worker.get("/routes/")["routes"]
            assert [r["key"] for r in routes] == [f"{topic}/acme"]
            # The writer's table recovered the route: the next pin bumps its epoch.
            out = cli(settings, "routes", "pin", topic, "acme", "-p", "3", "--wait", "60")
            assert out.returncode == 0, out.stderr + worker.log()[-3000:]
            assert "epoch 2" in out.stderr, out.stderr
        finally:
            worker.stop()


# -- 5. a producer started while the registry is down --------------------------------------------
def test_a_producer_started_while_the_registry_is_down_waits_for_its_routes(
    stack_settings: Settings, spare: SpareRegistry
) -> None:
    settings = fresh_routing_settings(stack_settings, "faults.cache", schema_registry_url=spare.url)
    topic = data_topic(settings, 8)
    pinned = not_hashed("acme", 8)
    write_route(settings, Route(topic, "acme", (pinned,), 1, reason="pinned before the outage"))
    conf = settings.producer_config(
        **{"routing.max.block.ms": 3000, "routing.usage.enabled": False, "linger.ms": 5}
    )
    with registry_down(spare):
        with RoutingProducer(conf) as impatient:
            with pytest.raises(TimeoutError) as waited:
                impatient.wait_ready(3)
            assert spare.url in str(waited.value), waited.value
            with pytest.raises(RoutesNotReady) as refused:
                impatient.produce(topic, b"too early", b"acme")
            message = str(refused.value)
            for name in (spare.url, repr(settings.routes_topic), settings.bootstrap):
                assert name in message, message
            counters = impatient.counters
            assert counters["hashed"] == counters["routed"] == 0, "nothing may have been sent"

        with RoutingProducer({**conf, "routing.max.block.ms": 180_000}) as producer:
            sent: list[Future[RecordMetadata]] = []
            sender = threading.Thread(target=lambda: sent.append(producer.send(topic, b"waited", b"acme")))
            sender.start()
            spare.start()
            sender.join(180)
            assert sent, "send() never returned"
            assert sent[0].result(30).partition == pinned


# -- 4, 6. strict moves: the registry down mid-move, a move that cannot end, held records --------
@pytest.fixture(scope="module")
def plane(
    stack_settings: Settings, spare: SpareRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Worker]]:
    """A writer on the spare registry with 1 s windows, so producers are known within seconds;
    producers stay live for a minute without reports (a stopped one is still waited for)."""
    settings = fresh_routing_settings(
        stack_settings,
        "faults.drain",
        schema_registry_url=spare.url,
        window_s=1.0,
        drain_timeout_ms=8000,
        producer_expiry_ms=60_000,
    )
    worker = start_writer(settings, tmp_path_factory.mktemp("plane"))
    assert worker.alive, worker.log()[-3000:]
    try:
        yield settings, worker
    finally:
        worker.stop()


class Traffic:
    """Records for one tenant every few ms from a thread, until stopped."""

    def __init__(self, producer: RoutingProducer, topic: str, tenant: str) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()

        def run() -> None:
            seq = 0
            while not self._stop.is_set():
                try:
                    producer.produce(topic, b"%d" % seq, tenant.encode())
                except Exception as exc:  # reported by the test
                    self.errors.append(exc)
                    return
                seq += 1
                time.sleep(0.004)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _known(worker: Worker, producer_id: str) -> None:
    wait_for(
        lambda: producer_id in worker.get("/writer/stats").get("live_producers", ()),
        timeout=60,
        what=f"the writer to know producer {producer_id}",
    )


def _pin(control: ControlClient, topic: str, tenant: str, partition: int) -> CommandOutcome:
    return control.submit(
        ControlCommand(
            ControlAction.PIN, topic, tenant, now_ms(), (partition,), reason="faults test", issued_by="test"
        ),
        wait_s=60,
    )


def test_a_move_completes_while_the_registry_is_down(
    plane: tuple[Settings, Worker], spare: SpareRegistry
) -> None:
    settings, worker = plane
    topic = data_topic(settings, 6)
    first_target = not_hashed("acme", 6)
    second_target = (first_target + 1) % 6
    conf = settings.producer_config(**{"routing.usage.interval.ms": 200, "linger.ms": 5})
    with ControlClient(settings) as control:
        # With the registry up and no producer yet: the writer, the CLI's client and the
        # route record's schema get known; the producer below has never answered a drain.
        first = _pin(control, topic, "acme", first_target)
        assert first.answer is not None and first.answer.applied, first
        with RoutingProducer(conf) as producer:
            producer.wait_ready(30)
            traffic = Traffic(producer, topic, "acme")
            try:
                _known(worker, producer.producer_id)
                with registry_down(spare):
                    moved = _pin(control, topic, "acme", second_target)
                    assert moved.end is not None, f"no end of the move within 60 s: {moved}"
                    assert moved.end.action == "drain-complete", moved.end.reason
                    print(
                        f"\nmove with the registry down: {moved.end.reason}, "
                        f"{moved.end.observed.get('held_records')} records held"
                    )
                    after = producer.send(topic, b"after", b"acme").result(30)
                    assert after.partition == second_target
            finally:
                traffic.stop()
            assert not traffic.errors, traffic.errors
            assert producer.flush(30) == 0


def test_drain_events_count_the_records_really_held(plane: tuple[Settings, Worker]) -> None:
    settings, worker = plane
    topic = data_topic(settings, 6)
    conf = settings.producer_config(**{"routing.usage.interval.ms": 200, "linger.ms": 5})
    with RoutingProducer(conf) as producer, ControlClient(settings) as control:
        producer.wait_ready(30)
        traffic = Traffic(producer, topic, "acme")
        try:
            _known(worker, producer.producer_id)
            before = producer.counters["held_total"]
            moved = _pin(control, topic, "acme", not_hashed("acme", 6))
            assert moved.end is not None and moved.end.action == "drain-complete", moved
            wait_for(lambda: producer.counters["draining_tenants"] == 0, what="the release")
            held = producer.counters["held_total"] - before
        finally:
            traffic.stop()
        assert not traffic.errors, traffic.errors
        observed = moved.end.observed
        assert held > 0, "the traffic should have been held during the move"
        assert observed["held_records"] == held, observed
        assert observed["held_reports"] == 1 and observed["held_unreported"] == 0, observed
        assert observed["held_at_ack"] <= held
        print(
            f"\nheld during the move: {held} (the ack said {observed['held_at_ack']:.0f}); "
            f"pause {observed['pause_ms']:.0f} ms"
        )


_STOPPABLE_PRODUCER = """
import json, sys, threading, time
from routing_app.client import RoutingProducer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
with RoutingProducer(conf) as producer:
    producer.wait_ready(30)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(producer.producer_id, flush=True)
    while not done.is_set():
        producer.produce(topic, b"x", b"acme")
        time.sleep(0.01)
"""


def test_a_move_aborted_for_a_silent_producer_says_so_and_the_cli_fails(
    plane: tuple[Settings, Worker],
) -> None:
    settings, worker = plane
    topic = data_topic(settings, 6)
    conf = settings.producer_config(**{"routing.usage.interval.ms": 200, "linger.ms": 5})
    child = subprocess.Popen(
        [sys.executable, "-c", _STOPPABLE_PRODUCER, json.dumps(conf), topic],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        producer_id = child.stdout.readline().strip()
        assert producer_id, "the producer did not start"
        _known(worker, producer_id)
        # Stopped, not dead: live for the writer (its reports are recent) but silent.
        os.kill(child.pid, signal.SIGSTOP)
        out = cli(settings, "routes", "pin", topic, "acme", "-p", str(not_hashed("acme", 6)), "--wait", "60")
        assert out.returncode == 1, out.stderr
        assert "aborted" in out.stderr and producer_id in out.stderr, out.stderr
        assert "consumer group" not in out.stderr, out.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGCONT)
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


# -- 7. a Kafka outage: one line per broker, and one for its end ---------------------------------
_TALKATIVE_PRODUCER = """
import json, sys, threading, time
from routing_app.client import RoutingProducer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
with RoutingProducer(conf) as producer:
    producer.wait_ready(30)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    while not done.is_set():
        try:
            producer.produce(topic, b"x", b"acme")
        except BufferError:
            pass
        time.sleep(0.05)
    producer.flush(30)
"""


def _lines_naming(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_a_kafka_outage_is_logged_once_per_broker_with_its_recovery(
    stack_settings: Settings, tmp_path: Path
) -> None:
    kafka_port, controller_port = free_ports(2)
    private = stack_settings.replace(
        bootstrap_servers=None,
        schema_registry_url=stack_settings.registry_url,
        state_dir=tmp_path / "kafka",
        kafka_port=kafka_port,
        controller_port=controller_port,
    )
    stack = LocalStack(private)
    stack.up()
    address = f"127.0.0.1:{kafka_port}"
    child: subprocess.Popen[str] | None = None
    worker: Worker | None = None
    try:
        settings = fresh_routing_settings(private, "faults.kafka")
        topic = data_topic(settings, 3)
        worker = launch_worker(settings, tmp_path / "worker")
        assert worker.wait_ready(120), worker.log()[-3000:]
        stderr = tmp_path / "producer.stderr"
        with stderr.open("w") as err:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _TALKATIVE_PRODUCER,
                    json.dumps(settings.producer_config(**{"linger.ms": 5})),
                    topic,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
            )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        stack.down()
        wait_for(
            lambda: f"cannot reach Kafka broker {address}" in stderr.read_text(),
            timeout=60,
            what="the producer to notice the outage",
        )
        # The CLI during the outage: one error naming the address, no raw librdkafka lines.
        pin = cli(settings, "routes", "pin", topic, "acme", "-p", "1", "--wait", "5")
        assert pin.returncode == 2, pin.stderr
        assert f"error: cannot reach Kafka at {address}" in pin.stderr, pin.stderr
        listed = cli(settings, "routes", "list", "--timeout", "3")
        assert listed.returncode == 2 and address in listed.stderr, listed.stderr
        for out in (pin, listed):
            assert "%3|" not in out.stderr and "Traceback" not in out.stderr, out.stderr
        time.sleep(10)  # the outage goes on: librdkafka and aiokafka retry all along
        stack.up()

        wait_for(
            lambda: f"reconnected to Kafka broker {address}" in stderr.read_text(),
            timeout=120,
            what="the producer to log the recovery",
        )
        wait_for(
            lambda: f"reconnected to Kafka broker {address}" in worker.log(),
            timeout=120,
            what="the worker to log the recovery",
        )
        wait_for(
            lambda: "no more " in worker.log(),
            timeout=60,
            what="the worker to sum up aiokafka's repeated errors",
        )
        child_err = stderr.read_text()
        producer_lines = _lines_naming(child_err, str(kafka_port))
        assert "%3|" not in child_err, child_err[-3000:]
        assert len(producer_lines) <= 6, "\n".join(producer_lines)
        # One line per state change: down once, back once.
        assert len(_lines_naming(child_err, f"cannot reach Kafka broker {address}")) == 1, child_err
        assert len(_lines_naming(child_err, f"reconnected to Kafka broker {address}")) == 1, child_err
        aiokafka_errors = [
            line
            for line in worker.log().splitlines()
            if "[ERROR]" in line and ("Unable" in line or "Failed fetch" in line)
        ]
        assert len(aiokafka_errors) <= 20, "\n".join(aiokafka_errors[:40])
        print(
            f"\nproducer stderr lines naming the broker: {len(producer_lines)}; "
            f"worker aiokafka ERROR lines: {len(aiokafka_errors)}"
        )
    finally:
        if child is not None:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        if worker is not None:
            worker.stop()
        stack.down()
