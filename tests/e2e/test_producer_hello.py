"""The roll call of a strict move (control.drain, client.hello), on the real stack: a producer
known only by its hello is waited for; one whose hello comes after the move started is not, and
never sends the moving tenant's records by the routes it read before the move.

To make the races happen on cue, a producer's route cache can be stopped after its first
catch-up (it then never sees the move, so it cannot answer it), and its hello held back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.error import HTTPError

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from routing_app.client import RoutesNotReady, RoutingProducer, java_partition
from routing_app.client.cache import RouteCache
from routing_app.client.drains import DrainCoordinator
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.control import CommandOutcome, ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.topics import create_topic
from tests.e2e.support import Worker, fresh_routing_settings, start_writer, wait_for

pytestmark = pytest.mark.integration

TENANT = "acme"
PARTITIONS = 6


@pytest.fixture(scope="module")
def plane(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Worker]]:
    """A writer of its own (nobody else writes its routes). Usage reports are off in the
    producers here, so a hello is all the writer knows of them."""
    settings = fresh_routing_settings(stack_settings, "hello", drain_timeout_ms=20_000)
    worker = start_writer(settings, tmp_path_factory.mktemp("hello"))
    assert worker.alive, worker.log()[-3000:]
    try:
        yield settings, worker
    finally:
        worker.stop()


class Cues:
    """Route caches that stop after their first catch-up, and hellos held back, by producer
    id, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._tails: dict[str, threading.Event] = {}
        self._hellos: dict[str, threading.Event] = {}
        tail, say_hello = RouteCache._tail, DrainCoordinator.say_hello
        cues = self

        def paused_tail(cache: RouteCache, consumer: Consumer) -> None:
            cue = cues._tails.get(cache._name.removesuffix("-routes"))
            while cue is not None and not cue.wait(0.05):
                if cache._stop.is_set():
                    return
            tail(cache, consumer)

        def held_hello(
            drains: DrainCoordinator, on_delivery: Callable[[KafkaError | None], None] | None = None
        ) -> bool:
            cue = cues._hellos.get(drains._producer_id)
            if cue is not None and not cue.is_set() and on_delivery is None:
                return True  # a keepalive (poll thread) while held back: dropped
            while cue is not None and not cue.wait(0.05):
                if drains._producer is None:
                    return False
            return say_hello(drains, on_delivery)

        monkeypatch.setattr(RouteCache, "_tail", paused_tail)
        monkeypatch.setattr(DrainCoordinator, "say_hello", held_hello)

    def stop_routes_after_start(self, producer_id: str) -> threading.Event:
        return self._tails.setdefault(producer_id, threading.Event())

    def hold_hello(self, producer_id: str) -> threading.Event:
        return self._hellos.setdefault(producer_id, threading.Event())

    def release_all(self) -> None:
        for cue in [*self._tails.values(), *self._hellos.values()]:
            cue.set()


@pytest.fixture
def cues(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cues]:
    found = Cues(monkeypatch)
    try:
        yield found
    finally:
        found.release_all()  # nothing left waiting when the producers close


def _producer(settings: Settings, producer_id: str) -> RoutingProducer:
    return RoutingProducer(
        settings.producer_config(
            **{
                "routing.producer.id": producer_id,
                "routing.usage.enabled": False,
                "routing.max.block.ms": 500,
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
    )


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _live(worker: Worker) -> list[str]:
    return list(worker.get("/writer/stats").get("live_producers", ()))


def _draining(worker: Worker, topic: str) -> bool:
    try:
        route = worker.get(f"/routes/{topic}/{TENANT}").get("route") or {}
    except HTTPError as exc:  # 404: no route (default hashing)
        if exc.code == 404:
            return False
        raise
    return route.get("status") == "draining"


def _pin(pool: ThreadPoolExecutor, settings: Settings, topic: str, partition: int) -> Future[CommandOutcome]:
    def submit() -> CommandOutcome:
        with ControlClient(settings) as control:
            return control.submit(
                ControlCommand(
                    ControlAction.PIN,
                    topic,
                    TENANT,
                    now_ms(),
                    (partition,),
                    reason="hello test",
                    issued_by="test",
                ),
                wait_s=60,
            )

    return pool.submit(submit)


def _values(settings: Settings, topic: str, partition: int) -> list[bytes]:
    consumer = Consumer(
        client_settings(settings.bootstrap, **{"group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(found) < high and time.monotonic() < deadline:
            found += [m.value() or b"" for m in consumer.consume(500, 0.2) if m.error() is None]
        return found
    finally:
        consumer.close()


def _setup(settings: Settings) -> tuple[str, int, int]:
    topic = f"hello-{uuid.uuid4().hex[:8]}"
    create_topic(settings.bootstrap, topic, PARTITIONS)
    hashed = java_partition(TENANT.encode(), PARTITIONS)
    return topic, hashed, (hashed + 1) % PARTITIONS


def test_a_producer_known_only_by_its_hello_is_waited_for(plane: tuple[Settings, Worker], cues: Cues) -> None:
    settings, worker = plane
    topic, old, new = _setup(settings)
    early_id = _name("early")
    routes_read = cues.stop_routes_after_start(early_id)
    with _producer(settings, early_id) as early, ThreadPoolExecutor(1) as pool:
        early.wait_ready(30)  # hello acknowledged, routes read: nothing else from it
        wait_for(lambda: early.producer_id in _live(worker), what="the writer to read the hello")
        sent = 0
        for _ in range(20):
            early.produce(topic, b"%d" % sent, TENANT.encode())
            sent += 1
        moving = _pin(pool, settings, topic, new)
        wait_for(lambda: _draining(worker, topic), what="the move to start")
        # It never reads the draining route while its cache is stopped, so it cannot answer,
        # and goes on sending by the old route: the move must wait for it.
        for _ in range(20):
            early.produce(topic, b"%d" % sent, TENANT.encode())
            sent += 1
        time.sleep(1.5)
        assert not moving.done() and _draining(worker, topic), "the move did not wait for it"
        routes_read.set()
        outcome = moving.result(60)
        for _ in range(20):
            early.produce(topic, b"%d" % sent, TENANT.encode())
            sent += 1
        assert early.flush(30) == 0
    assert outcome.end is not None and outcome.end.action == "drain-complete", outcome
    assert outcome.end.observed["producers_expected"] == 1
    assert outcome.end.observed["producers_acked"] == 1
    assert outcome.end.observed["pause_ms"] >= 1500
    on_old, on_new = _values(settings, topic, old), _values(settings, topic, new)
    assert on_old + on_new == [b"%d" % i for i in range(sent)]
    assert len(on_old) >= 40, "what it sent before it saw the move stays on the old partition"


def test_a_producer_greeting_after_the_move_began_holds_and_is_not_waited_for(
    plane: tuple[Settings, Worker], cues: Cues
) -> None:
    settings, worker = plane
    topic, old, new = _setup(settings)
    keeper_id, late_id = _name("keeper"), _name("late")
    keeper_routes = cues.stop_routes_after_start(keeper_id)
    late_routes = cues.stop_routes_after_start(late_id)
    hello = cues.hold_hello(late_id)
    keeper, late = _producer(settings, keeper_id), _producer(settings, late_id)
    try:
        keeper.wait_ready(30)  # known by its hello; it keeps the move open below
        wait_for(lambda: keeper.producer_id in _live(worker), what="the writer to know keeper")
        with ThreadPoolExecutor(1) as pool:
            # ``late`` started before the move and read the routes without it (its cache then
            # stopped); its hello is held back until the move has begun.
            wait_for(lambda: late.cache is not None and late.cache.ready, what="late's routes")
            moving = _pin(pool, settings, topic, new)
            wait_for(lambda: _draining(worker, topic), what="the move to start")
            time.sleep(0.5)  # the writer read the answers topic's end offset (a few ms)
            hello.set()
            wait_for(lambda: late.producer_id in _live(worker), what="the writer to read it")
            # Its hello came after the draining route was committed: it must read that route
            # before any record goes out. Its cache is stopped, so nothing goes out.
            with pytest.raises(TimeoutError):
                late.wait_ready(1.0)
            with pytest.raises(RoutesNotReady):
                late.produce(topic, b"late-0", TENANT.encode())
            # The move waits for keeper only: once keeper answers it ends, though ``late``
            # never answered (its cache is still stopped), without a grace period for it.
            keeper_routes.set()
            outcome = moving.result(60)
        assert outcome.end is not None and outcome.end.action == "drain-complete", outcome
        assert outcome.end.observed["producers_expected"] == 1
        assert outcome.end.observed["producers_acked"] == 1
        late_routes.set()
        late.wait_ready(30)
        for seq in range(1, 11):
            late.produce(topic, b"late-%d" % seq, TENANT.encode())
        assert late.flush(30) == 0
    finally:
        keeper.close()
        late.close()
    assert not [v for v in _values(settings, topic, old) if v.startswith(b"late")]
    assert _values(settings, topic, new) == [b"late-%d" % i for i in range(1, 11)]
