"""The proof of ordering-safe moves, and what they cost: ``routing-app bench drain``.

Tenants send numbered records without pause through an idempotent RoutingProducer; a consumer
group checks every record's number per tenant (per secondary key for a sharded tenant) while a
real worker moves them around with every kind of move. Strict tenants must arrive with nothing
lost, duplicated or out of order; relaxed tenants report how often they arrived out of order.
The pause of each strict move is the time between its draining and active writes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from routing_app.bench.common import Reporter, Scratch, SilentReporter
from routing_app.bench.control_plane import _scratch_settings, _start_workers
from routing_app.client import RoutingProducer
from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.control import ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent
from routing_app.routes.model import RouteMode, RouteStatus

PARTITIONS = 8
STRICT = [f"strict-{i:02d}" for i in range(10)]
RELAXED = [f"relaxed-{i}" for i in range(3)]
SHARDED = "bigco"
USERS = [f"user-{i:02d}" for i in range(16)]
# Sent by a producer process that is killed (-9) just before the tenant moves; the move
# must wait for it to expire, and every record it wrote must be consumed before any record
# sent to the new partition.
CRASHY = "crashy"
_CRASHY_PRODUCER = """
import json, sys, time
from routing_app.client import RoutingProducer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
with RoutingProducer(conf) as producer:
    producer.wait_ready(30)
    print("ready", flush=True)
    seq = 0
    while True:
        producer.produce(topic, b"%s|crashed|%d" % (b"crashy", seq), b"crashy")
        seq += 1
        time.sleep(0.005)
"""


@dataclass
class Checker:
    """Per-stream sequence checks: a stream is (tenant, secondary key), "" for key-only records."""

    last: dict[tuple[str, str], int] = field(default_factory=dict)
    seen: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    received: int = 0
    # stream -> (first, last) position in the order the checker processed records
    span: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    reordered: dict[str, int] = field(default_factory=dict)

    def check(self, value: bytes) -> None:
        tenant, secondary, number = value.decode().split("|")
        stream, seq = (tenant, secondary), int(number)
        seen = self.seen.setdefault(stream, set())
        self.received += 1
        first, _ = self.span.get(stream, (self.received, 0))
        self.span[stream] = (first, self.received)
        if seq in seen:
            self.duplicated[tenant] = self.duplicated.get(tenant, 0) + 1
            return
        seen.add(seq)
        if seq < self.last.get(stream, -1):
            self.reordered[tenant] = self.reordered.get(tenant, 0) + 1
        self.last[stream] = max(seq, self.last.get(stream, -1))


def _moves(topic: str) -> list[tuple[str, ControlCommand]]:
    """(kind, command): every kind of move, spread so consecutive moves touch other tenants."""

    def pin(tenant: str, *partitions: int, mode: RouteMode | None = None) -> ControlCommand:
        return ControlCommand(
            ControlAction.PIN,
            topic,
            tenant,
            now_ms(),
            tuple(partitions),
            mode=mode,
            reason="bench drain",
            issued_by="bench",
        )

    def unpin(tenant: str) -> ControlCommand:
        return ControlCommand(
            ControlAction.UNPIN, topic, tenant, now_ms(), reason="bench drain", issued_by="bench"
        )

    moves: list[tuple[str, ControlCommand]] = []
    for i, tenant in enumerate(STRICT):
        moves.append(("isolate", pin(tenant, (i * 3 + 1) % PARTITIONS)))
    moves += [
        ("shard", pin(SHARDED, 1, 2)),
        ("grow", pin(SHARDED, 1, 2, 3, 4)),
        ("shrink", pin(SHARDED, 5, 6)),
        ("merge-back", unpin(SHARDED)),
    ]
    for i, tenant in enumerate(STRICT[:6]):
        moves.append(("move", pin(tenant, (i * 5 + 2) % PARTITIONS)))
    for tenant in STRICT[6:]:
        moves.append(("merge-back", unpin(tenant)))
    for round_ in range(2):
        for i, tenant in enumerate(RELAXED):
            moves.append(("relaxed", pin(tenant, (i + round_ * 4) % PARTITIONS, mode=RouteMode.RELAXED)))
    return moves


def run_drain(
    settings: Settings,
    *,
    rate: float = 1500.0,
    reporter: Reporter | None = None,
    restart_producer: bool = True,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """``workdir``: where the worker's log stays (a temporary folder otherwise)."""
    reporter = reporter or SilentReporter()
    with Scratch(settings, reporter) as scratch, tempfile.TemporaryDirectory() as temporary:
        tmp = str(workdir or temporary)
        group = f"bench-drain-checker-{scratch.suffix}"
        # The planner stays out of the way (no automatic moves): the moves here are the ones
        # the scenario makes, one kind after another, through the same writer.
        s = _scratch_settings(
            settings,
            scratch,
            "drain",
            lag_groups=group,
            window_s=2.0,
            drain_timeout_ms=30_000,
            planner_policy="max_moves_per_cycle=0",
        )
        data = scratch.topic("drain-data", PARTITIONS)
        workers = _start_workers(s, 1, Path(tmp), reporter)
        try:
            return _scenario(s, data, group, rate, reporter, restart_producer)
        finally:
            for w in workers:
                w.stop()


class _Traffic:
    """Every tenant's numbered records, sent without pause, and the consumer group checking
    them: each on a thread of its own, until :meth:`finish`."""

    def __init__(self, s: Settings, data: str, group: str, rate: float) -> None:
        self._s, self._data, self._group, self._rate = s, data, group, rate
        self.checker = Checker()
        self.sent: dict[tuple[str, str], int] = {}
        self.produced = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._stop_deadline = float("inf")
        self.holder: list[RoutingProducer] = [self.new_producer(0)]
        # Held by the traffic loop for each round: a producer swap happens between rounds.
        self.lock = threading.Lock()
        self.streams: list[tuple[str, str | None]] = [(t, None) for t in STRICT + RELAXED]
        # The sharded tenant also sends key-only records: its keyless stream must keep its order
        # through shard, grow, shrink and merge back too.
        self.streams += [(SHARDED, u) for u in USERS] + [(SHARDED, None)]
        self._consumer_thread = threading.Thread(target=self._consume, name="drain-checker", daemon=True)
        self._producer_thread = threading.Thread(target=self._produce, name="drain-producer", daemon=True)

    def new_producer(self, index: int) -> RoutingProducer:
        producer = RoutingProducer(
            self._s.producer_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "routing.usage.interval.ms": 500,
                    "routing.producer.id": f"drain-bench-{index}",
                }
            )
        )
        producer.wait_ready(30)
        return producer

    def start(self) -> None:
        self._consumer_thread.start()
        self._producer_thread.start()

    def raise_if_failed(self) -> None:
        if self.errors:
            raise RuntimeError(f"traffic failed: {self.errors[0]!r}") from self.errors[0]

    def finish(self) -> int:
        """Stops sending, closes the producer in use and lets the checker catch up: the records
        still unsent when the producer closed."""
        self._stop.set()
        self._producer_thread.join(10)
        left = self.holder[0].flush(30)
        self.holder[0].close()
        self._stop_deadline = time.monotonic() + 30
        self._consumer_thread.join(40)
        return left

    def _consume(self) -> None:
        consumer = Consumer(
            client_settings(
                self._s.kafka,
                **{
                    "group.id": self._group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": 100,
                    "isolation.level": "read_committed",
                },
            )
        )
        consumer.subscribe([self._data])
        try:
            while not self._stop.is_set() or self.checker.received < self.produced:
                for message in consumer.consume(500, 0.1):
                    value = message.value()
                    if message.error() is None and value:
                        self.checker.check(value)
                if self._stop.is_set() and time.monotonic() > self._stop_deadline:
                    return
        except BaseException as exc:  # reported by the caller
            self.errors.append(exc)
        finally:
            consumer.close()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                with self.lock:
                    self._send_round(self.holder[0])
                time.sleep(max(0.0, len(self.streams) / self._rate - (time.monotonic() - started)))
        except BaseException as exc:
            self.errors.append(exc)

    def _send_round(self, producer: RoutingProducer) -> None:
        """The next record of every stream."""
        for tenant, user in list(self.streams):
            stream = (tenant, user or "")
            seq = self.sent.get(stream, 0)
            value = f"{tenant}|{user or ''}|{seq}".encode()
            if user is None or tenant == CRASHY:
                producer.produce(self._data, value, tenant.encode())
            else:
                producer.produce(self._data, value, user.encode(), tenant=tenant)
            self.sent[stream] = seq + 1
            self.produced += 1


def _scenario(
    s: Settings, data: str, group: str, rate: float, reporter: Reporter, restart_producer: bool
) -> dict[str, Any]:
    traffic = _Traffic(s, data, group, rate)
    crashy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CRASHY_PRODUCER,
            json.dumps(
                s.producer_config(
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                        "routing.usage.interval.ms": 500,
                        "routing.producer.id": "drain-bench-crashy",
                    }
                )
            ),
            data,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if crashy.stdout is None or crashy.stdout.readline().strip() != "ready":
            raise RuntimeError("the crashing producer did not start")
        traffic.start()
        control = ControlClient(s)
        moves = _moves(data)
        restart_at = len(moves) // 2 if restart_producer else -1
        crash_at = restart_at + 3 if restart_producer else len(moves) // 2
        reporter.note(f"{len(moves)} moves under {rate:.0f} records/s")
        time.sleep(3.0)  # usage reports make the producers known, live ones
        try:
            applied = _make_moves(control, traffic, crashy, data, moves, restart_at, crash_at)
        finally:
            left = traffic.finish()
    finally:
        crashy.kill()
    traffic.raise_if_failed()
    return _figures(s, traffic, applied, left, restart_producer)


def _make_moves(
    control: ControlClient,
    traffic: _Traffic,
    crashy: subprocess.Popen[str],
    data: str,
    moves: list[tuple[str, ControlCommand]],
    restart_at: int,
    crash_at: int,
) -> list[tuple[str, ReassignmentEvent]]:
    """Every move, one after another, each waited for; the crashing producer is killed and its
    tenant moved before move ``crash_at``, the producer in use is replaced during move
    ``restart_at``."""
    applied: list[tuple[str, ReassignmentEvent]] = []
    for index, (kind, command) in enumerate(moves):
        traffic.raise_if_failed()
        if index == crash_at:
            crashy.kill()  # -9: no goodbye, records in its queue are lost
            crashy.wait(10)
            applied.append(
                (
                    "crash",
                    _move(
                        control,
                        traffic.holder,
                        data,
                        ControlCommand(ControlAction.PIN, data, CRASHY, now_ms(), (6,), reason="bench drain"),
                        on_start=lambda: traffic.streams.append((CRASHY, "after")),
                    ),
                )
            )
        if index == restart_at:
            # A producer restart in the middle of a drain: the new one rebuilds its
            # routes, finds the tenant draining and holds; the old one releases what
            # it held when the move ends, then closes.
            applied.append(
                (
                    kind,
                    _move(
                        control,
                        traffic.holder,
                        data,
                        command,
                        on_start=lambda: _swap(traffic.holder, traffic.lock, traffic.new_producer),
                    ),
                )
            )
        else:
            applied.append((kind, _move(control, traffic.holder, data, command)))
        time.sleep(0.3)
    return applied


def _figures(
    s: Settings,
    traffic: _Traffic,
    applied: list[tuple[str, ReassignmentEvent]],
    left: int,
    restart_producer: bool,
) -> dict[str, Any]:
    checker = traffic.checker
    timeouts: list[str] = []
    pauses = _pauses(s, {e.tenant for _, e in applied}, timeouts)
    # Without the move that waited for the killed producer to expire (producer_expiry_ms).
    answered: list[float] = []
    live_pauses = _pauses(s, {e.tenant for _, e in applied} - {CRASHY}, answered=answered)
    strict_tenants = set(STRICT) | {SHARDED, CRASHY}
    lost = {t: n for t, n in _lost(traffic.sent, checker).items() if n}
    crashed = checker.span.get((CRASHY, "crashed"))
    after = checker.span.get((CRASHY, "after"))
    return {
        "moves": len(applied),
        "strict_moves": sum(1 for _, e in applied if e.status == RouteStatus.DRAINING.value),
        "kinds": sorted({k for k, _ in applied}),
        **_pause_figures(pauses, live_pauses, answered),
        "records": traffic.produced,
        "received": checker.received,
        "unsent_at_close": left,
        "lost_strict": sum(n for t, n in lost.items() if t in strict_tenants),
        "duplicated_strict": sum(n for t, n in checker.duplicated.items() if t in strict_tenants),
        "reordered_strict": sum(n for t, n in checker.reordered.items() if t in strict_tenants),
        "lost_relaxed": sum(n for t, n in lost.items() if t not in strict_tenants),
        "reordered_relaxed": sum(n for t, n in checker.reordered.items() if t not in strict_tenants),
        "producer_restarted_mid_drain": restart_producer,
        # Every record of the killed producer was consumed before the first one sent after
        # its tenant moved (the move waited for it to expire).
        "crashed_producer_records": len(checker.seen.get((CRASHY, "crashed"), ())),
        "crashed_before_moved": bool(crashed and after and crashed[1] < after[0]),
        "drains_timed_out": len(timeouts),
        "timeouts": timeouts,
    }


def _pause_figures(pauses: list[float], live_pauses: list[float], answered: list[float]) -> dict[str, Any]:
    return {
        "pause_p50_ms": round(statistics.median(pauses), 1) if pauses else None,
        "pause_p99_ms": round(_percentile(pauses, 0.99), 1) if pauses else None,
        "pause_max_ms": round(max(pauses), 1) if pauses else None,
        "pause_p50_ms_live_producers": round(statistics.median(live_pauses), 1) if live_pauses else None,
        "pause_p99_ms_live_producers": round(_percentile(live_pauses, 0.99), 1) if live_pauses else None,
        # Of that pause, the producers' part: from the draining write to the last answer (the
        # roll call over); the rest is the consumer group's (the checker commits every 100 ms).
        "answered_p50_ms": round(statistics.median(answered), 1) if answered else None,
        "answered_p99_ms": round(_percentile(answered, 0.99), 1) if answered else None,
        # Every drain's pause in the events topic's order, for the distribution (``bench
        # report`` plots it); the second list leaves out the move that waited for the killed
        # producer to expire.
        "pauses_ms": [round(p, 1) for p in pauses],
        "pauses_ms_live_producers": [round(p, 1) for p in live_pauses],
    }


def _move(
    control: ControlClient,
    holder: list[RoutingProducer],
    topic: str,
    command: ControlCommand,
    on_start: Callable[[], None] | None = None,
) -> ReassignmentEvent:
    """Sends the command and waits until the producer in use sees the move over; ``on_start``
    runs once the move has begun (the producer holds the tenant, for a strict move)."""
    answer: list[ReassignmentEvent | None] = []
    sender = threading.Thread(target=lambda: answer.append(control.send(replace_time(command), wait_s=60)))
    sender.start()
    if on_start is not None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answer and holder[0].counters["draining_tenants"] == 0:
            time.sleep(0.005)
        on_start()
    sender.join(70)
    event = answer[0] if answer else None
    if event is None or not event.applied:
        raise RuntimeError(f"move of {command.tenant}: {'no answer' if event is None else event.reason}")
    _wait_settled(
        holder, topic, command.tenant, event.to_epoch or 0, ends_hashed=command.action is ControlAction.UNPIN
    )
    return event


def _swap(
    holder: list[RoutingProducer],
    traffic_lock: threading.Lock,
    new_producer: Callable[[int], RoutingProducer],
) -> None:
    with traffic_lock:
        old = holder[0]
        holder[0] = new_producer(1)
        # Waits for the move to end: the old producer sends what it held, in order, first.
        old.close(timeout=60)


def replace_time(command: ControlCommand) -> ControlCommand:
    from dataclasses import replace

    return replace(command, issued_at_ms=now_ms())


def _wait_settled(
    holder: list[RoutingProducer],
    topic: str,
    tenant: str,
    epoch: int,
    *,
    ends_hashed: bool,
    timeout: float = 40.0,
) -> None:
    """Until the producer sees the tenant's move over: active at the move's epoch, or back on
    default hashing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = holder[0].route_for(topic, tenant)
        if route is None and ends_hashed:
            return
        if route is not None and route.epoch >= epoch and route.status is RouteStatus.ACTIVE:
            return
        time.sleep(0.02)
    raise RuntimeError(f"move of {tenant} did not end within {timeout}s")


def _lost(sent: dict[tuple[str, str], int], checker: Checker) -> dict[str, int]:
    lost: dict[str, int] = {}
    for stream, count in sent.items():
        missing = count - len(checker.seen.get(stream, ()))
        lost[stream[0]] = lost.get(stream[0], 0) + max(missing, 0)
    return lost


def _pauses(
    s: Settings, tenants: set[str], timeouts: list[str] | None = None, answered: list[float] | None = None
) -> list[float]:
    """pause_ms of every drain's end on the events topic; the reasons of those that timed out
    go to ``timeouts``, the producers' part of each pause (answered_ms) to ``answered``."""
    codec = AvroCodec(registry_client(s.registry_config()), EVENT_SCHEMA, s.events_topic)
    consumer = Consumer(
        client_settings(s.kafka, **{"group.id": f"bench-drain-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    pauses: list[float] = []
    try:
        tp = TopicPartition(s.events_topic, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(s.events_topic, 0, 0)])
        position = 0
        while position < high:
            for message in consumer.consume(500, 1.0):
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                try:
                    event = ReassignmentEvent.from_record(codec.decode(message.value()))
                except (DecodeError, KeyError, ValueError):
                    continue
                if event.action.startswith("drain-") and event.tenant in tenants:
                    pauses.append(event.observed.get("pause_ms", 0.0))
                    if answered is not None and "answered_ms" in event.observed:
                        answered.append(event.observed["answered_ms"])
                    if event.action != "drain-complete" and timeouts is not None:
                        timeouts.append(f"{event.tenant}: {event.reason}")
    finally:
        consumer.close()
    return pauses


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
