"""The moves of ``bench drain``: every kind of move, made one after another through the writer,
each waited for until the producer in use sees it over.

Apart from the scenario because this is the part that talks to the control topic and watches
the producer's routes; the traffic and the figures know nothing of it.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from routing_app.bench.drain_traffic import CRASHY, PARTITIONS, RELAXED, SHARDED, STRICT, Traffic
from routing_app.client import RoutingProducer
from routing_app.control import ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import RouteMode, RouteStatus


def scenario_moves(topic: str) -> list[tuple[str, ControlCommand]]:
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


def make_moves(
    control: ControlClient,
    traffic: Traffic,
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
    """Replaces the producer in use between two traffic rounds, while its tenant drains."""
    with traffic_lock:
        old = holder[0]
        holder[0] = new_producer(1)
        # Waits for the move to end: the old producer sends what it held, in order, first.
        old.close(timeout=60)


def replace_time(command: ControlCommand) -> ControlCommand:
    """The command as issued now (it was made when the scenario started)."""
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
