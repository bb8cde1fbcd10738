"""The single route writer: turns decisions into routes-table writes and events. Worker-side I/O.

Only the control agent calls it, and the control topic has one partition, so exactly one worker
writes routes at a time. Its tables (routes, epochs, planner state) are co-partitioned with the
control topic and move together to whichever worker takes that partition over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faust
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec
from confluent_kafka.schema_registry import SchemaRegistryClient

from routing_app.app.producers import ProducerRoll, RollCalls
from routing_app.client.partitioner import java_partition
from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable
from routing_app.config import Settings
from routing_app.connection import admin_client
from routing_app.control import (
    CONTROL_SCHEMA,
    ControlAction,
    ControlCommand,
    Decision,
    apply_command,
)
from routing_app.control import drain as drains
from routing_app.control.decide import rejected
from routing_app.control.drain import (
    DRAIN_ACK_SCHEMA,
    Drain,
    DrainAck,
    OnTimeout,
    Phase,
    drain_ack_subject,
)
from routing_app.load import committed_offsets, end_offsets
from routing_app.planner import PartitionKey, TenantHistory, TenantKey
from routing_app.routes import Route
from routing_app.routes.events import EVENT_SCHEMA, REPAIR, ReassignmentEvent, WriterReasonKind
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import RouteStatus, route_key
from routing_app.topics import partition_count

log = logging.getLogger(__name__)

_PARTITION_COUNT_TTL_S = 30.0
# How often a drain waiting for the consumer groups asks for their commits: most of a pause is
# this wait (a group commits every 100 ms or so), so the wake-up follows the commit closely.
CONSUMER_POLL_S = 0.02
RECENT_EVENTS = 200


@dataclass
class WriterTables:
    routes: Any  # route key -> Route (changelog: the routes topic)
    epochs: Any  # route key -> highest epoch ever written (survives tombstones)
    history: Any  # route key -> [last_moved_ms, cool_since_ms] (-1 = none)
    frozen: Any  # route key -> True
    evacuated: Any  # data topic -> sorted partition list (operators' evacuate commands)
    drains: Any  # route key -> Drain.to_record(): strict moves in progress
    # route key -> a finished move's closing event, waiting for the producers' release reports
    # (see control.drain: held records); {"event", "epoch", "waiting", "reports", "until_ms"}
    releases: Any = field(default_factory=dict)
    # producer id -> when it said goodbye. In a table, not in memory: the worker that takes
    # the writer over must not bring a closed producer back to life from the summaries of its
    # last reports, and make every strict move wait for it until it expires.
    closed: Any = field(default_factory=dict)
    # producer id -> when last seen (hello, usage reports, answers; see app.producers): in a
    # table so that the worker taking the writer over knows who said hello just before.
    members: Any = field(default_factory=dict)


class RouteWriter:
    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistryClient,
        tables: WriterTables,
        events_topic: faust.TopicT,
        worker_id: str,
    ) -> None:
        self._settings = settings
        self.tables = tables
        self._events_topic = events_topic
        self.worker_id = worker_id
        self._commands = AvroCodec(registry, CONTROL_SCHEMA, settings.control_topic)
        self._events = AvroCodec(registry, EVENT_SCHEMA, settings.events_topic)
        self._acks = AvroCodec(
            registry,
            DRAIN_ACK_SCHEMA,
            settings.answers_topic,
            subject=drain_ack_subject(settings.answers_topic),
        )
        self._partition_counts: dict[str, tuple[float, int | None]] = {}
        self.counters: dict[str, int] = {
            "commands_applied": 0,
            "commands_rejected": 0,
            "control_undecodable": 0,
            "decisions": 0,
            "commands_unauthorized": 0,
            "messages_misplaced": 0,
            "foreign_routes": 0,
            "handler_errors": 0,
            "drains_started": 0,
            "drains_completed": 0,
            "drains_aborted": 0,
            "drains_forced": 0,
            "drain_acks": 0,
            "drain_acks_stale": 0,
            "routes_reasserted": 0,
            "release_reports": 0,
            "release_reports_late": 0,
        }
        self._window_ms = int(settings.window_s * 1000)
        # Who strict moves wait for: hellos, usage reports and answers (see control.drain).
        self.roll = ProducerRoll(tables.members, tables.closed, settings.producer_expiry, self._window_ms)
        # When each drain's roll call is over (see control.drain). Late-bound: tests stub them.
        self.roll_calls = RollCalls(
            settings.answers_topic,
            lambda spec: self._answers_offsets(spec),
            lambda: self._answers_committed(),
        )
        self._lag_groups = [g.strip() for g in settings.lag_groups.split(",") if g.strip()]
        self._on_timeout = OnTimeout(settings.drain_on_timeout)
        self._admin: Any = None
        self._wakers: dict[str, asyncio.Task[None]] = {}
        # route key -> (drain epoch, end offsets read when a producer was found silent)
        self._silent_targets: dict[str, tuple[int, dict[int, int]]] = {}
        self.control_topic: faust.TopicT | None = None  # for drain wake-ups; set by the app
        self.decisions_by_action: dict[str, int] = {}
        # The newest events this writer appended, newest last: for the live page and metrics.
        self.recent: deque[ReassignmentEvent] = deque(maxlen=RECENT_EVENTS)
        # Called with each event once the events topic took it (metrics count them).
        self.listeners: list[Callable[[ReassignmentEvent], None]] = []

    def codecs(self) -> tuple[AvroCodec, ...]:
        """The schemas this writer reads and writes (the worker resolves them at start)."""
        return self._commands, self._events, self._acks

    # -- reading the writer's view -------------------------------------------------------------
    def current(self, topic: str, tenant: str) -> Route | None:
        value = self.tables.routes.get(route_key(topic, tenant))
        return value if isinstance(value, Route) else None

    def last_epoch(self, key: str) -> int:
        return int(self.tables.epochs.get(key) or 0)

    def routes(self) -> dict[TenantKey, Route]:
        return {(r.topic, r.tenant): r for r in self.tables.routes.values() if isinstance(r, Route)}

    def history(self) -> dict[TenantKey, TenantHistory]:
        found: dict[TenantKey, TenantHistory] = {}
        for key, (moved, cool) in self.tables.history.items():
            found[_split_key(key)] = TenantHistory(None if moved < 0 else moved, None if cool < 0 else cool)
        return found

    def save_history(self, history: dict[TenantKey, TenantHistory] | Any) -> None:
        keep = {route_key(t, n): h for (t, n), h in history.items()}
        for key in [k for k in self.tables.history if k not in keep]:
            del self.tables.history[key]
        for key, h in keep.items():
            value = [
                -1 if h.last_moved_ms is None else h.last_moved_ms,
                -1 if h.cool_since_ms is None else h.cool_since_ms,
            ]
            if self.tables.history.get(key) != value:
                self.tables.history[key] = value

    def frozen(self) -> frozenset[TenantKey]:
        return frozenset(_split_key(k) for k in self.tables.frozen)

    def evacuated(self) -> frozenset[PartitionKey]:
        return frozenset((topic, int(p)) for topic, parts in self.tables.evacuated.items() for p in parts)

    async def partition_count(self, topic: str) -> int | None:
        cached = self._partition_counts.get(topic)
        if cached is not None and time.monotonic() - cached[0] < _PARTITION_COUNT_TTL_S:
            return cached[1]
        count = await asyncio.to_thread(partition_count, self._settings.kafka, topic)
        self._partition_counts[topic] = (time.monotonic(), count)
        return count

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        counts = {}
        for topic in sorted(set(topics)):
            count = await self.partition_count(topic)
            if count is not None:
                counts[topic] = count
        return counts

    # -- writing -------------------------------------------------------------------------------
    async def _decode(self, codec: AvroCodec, raw: bytes | None, offset: int) -> dict[str, Any]:
        """The record; DecodeError for poison. A schema id we have not seen needs the registry:
        asked off the event loop, and while it is down the control stream waits for it rather
        than skip (and lose) a command or a drain's answer."""
        if not codec.needs_registry(raw):
            return codec.decode(raw)
        warned_at: float | None = None
        while True:
            try:
                return await asyncio.to_thread(codec.decode, raw)
            except RegistryUnavailable as exc:
                now = time.monotonic()
                if warned_at is None or now - warned_at >= 30.0:
                    log.warning(
                        "control offset %d: waiting for the schema registry to read a %s "
                        "record (%s); retrying every second",
                        offset,
                        codec.schema_name,
                        exc,
                    )
                    warned_at = now
                await asyncio.sleep(1.0)

    def misplaced(self, topic: str, kind: MessageKind | None, offset: int) -> None:
        """A record of a kind its topic must not carry (a producer's answer on the control topic,
        or anything but an answer on the answers topic): skipped, counted, logged."""
        self.counters["messages_misplaced"] += 1
        log.error(
            "%s offset %d: skipped a %r record: the %s topic does not carry that kind",
            topic,
            offset,
            kind.name.lower() if kind else "unknown",
            "answers" if topic == self._settings.answers_topic else "control",
        )

    async def handle_command_bytes(self, raw: bytes | None, offset: int) -> None:
        try:
            command = ControlCommand.from_record(await self._decode(self._commands, raw, offset))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable command skipped: %s", offset, exc)
            return
        operators = self._settings.operators()
        if operators and command.issued_by not in operators:
            # The control topic's ACL is what keeps others out; this catches an operator tool
            # of another principal, or anyone where the ACLs are missing.
            self.counters["commands_unauthorized"] += 1
            log.error(
                "control offset %d: %s command for %s/%s refused: issued_by %r is not one "
                "of operator_principals (%s)",
                offset,
                command.action.value,
                command.topic,
                command.tenant,
                command.issued_by,
                ", ".join(sorted(operators)),
            )
            await self._write(
                rejected(
                    command,
                    f"issued_by {command.issued_by!r} is not an operator principal",
                    self.worker_id,
                    _now_ms(),
                )
            )
            return
        count = await self.partition_count(command.topic)
        key = route_key(command.topic, command.tenant)
        current = self.current(command.topic, command.tenant)
        if (
            current is not None
            and current.status is RouteStatus.DRAINING
            and command.action in (ControlAction.PIN, ControlAction.UNPIN)
        ):
            # One move at a time per tenant: the drain ends (done or aborted) within its limit.
            await self._write(
                rejected(
                    command,
                    f"tenant is moving {list(current.previous_partitions)} -> "
                    f"{list(current.partitions)} (draining, epoch {current.epoch}); retry once the "
                    f"move ends",
                    self.worker_id,
                    _now_ms(),
                )
            )
            return
        decision = apply_command(
            command, current, self.last_epoch(key), count, worker_id=self.worker_id, now_ms=_now_ms()
        )
        if decision.event.applied:
            self._apply_operator_state(command)
        await self.apply(decision)

    def _apply_operator_state(self, command: ControlCommand) -> None:
        key = route_key(command.topic, command.tenant)
        if command.action is ControlAction.FREEZE:
            self.tables.frozen[key] = True
        elif command.action is ControlAction.UNFREEZE and key in self.tables.frozen:
            del self.tables.frozen[key]
        elif command.action is ControlAction.EVACUATE:
            if command.partitions:
                self.tables.evacuated[command.topic] = sorted(set(command.partitions))
            elif command.topic in self.tables.evacuated:
                del self.tables.evacuated[command.topic]

    async def apply(self, decision: Decision) -> None:
        """Writes the decision; a move of a strict tenant starts as a drain (see control.drain)."""
        event = decision.event
        current = self.current(event.topic, event.tenant)
        if drains.needs_drain(decision, current):
            count = await self.partition_count(event.topic)
            if count is not None:
                hashed = java_partition(event.tenant.encode("utf-8", "surrogateescape"), count)
                draining, drain = drains.start(
                    decision,
                    current,
                    hashed,
                    now_ms=_now_ms(),
                    timeout_ms=self._settings.drain_timeout_ms,
                    live_producers=self.live_producers(),
                )
                if drain.from_partitions != drain.to_partitions:
                    key = route_key(event.topic, event.tenant)
                    self.tables.drains[key] = drain.to_record()
                    self.counters["drains_started"] += 1
                    # Its roll call opens once the route cache reads it (WriterInput).
                    await self._write(draining)
                    return
        await self._write(decision)

    async def _write(self, decision: Decision, *, release_from: Sequence[str] = ()) -> None:
        """Writes the route change (if any) and appends its event; with ``release_from`` (the
        end of a move) the event waits for those producers' release reports (see
        control.drain: held records)."""
        event = decision.event
        key = route_key(event.topic, event.tenant)
        # The previous move's closing event first: per key, events stay in decision order.
        await self._flush_release(key)
        if decision.route is not None:
            self.tables.epochs[key] = decision.route.epoch
            self.tables.routes[key] = decision.route
        elif decision.tombstone:
            if event.to_epoch is not None:
                self.tables.epochs[key] = event.to_epoch
            if key in self.tables.routes:
                del self.tables.routes[key]
        if release_from:
            self.tables.releases[key] = {
                "event": event.to_record(),
                "epoch": event.to_epoch,
                "waiting": sorted(release_from),
                "reports": {},
                "until_ms": _now_ms() + max(self._settings.drain_ack_grace_ms, 1000),
            }
            return
        await self._append(event)

    async def _append(self, event: ReassignmentEvent) -> None:
        key = route_key(event.topic, event.tenant)
        await self._events_topic.send(key=key.encode("utf-8"), value=self._events.encode(event.to_record()))
        self.recent.append(event)
        for listener in self.listeners:
            listener(event)
        if event.command_id is None:
            self.counters["decisions"] += 1
            self.decisions_by_action[event.action] = self.decisions_by_action.get(event.action, 0) + 1
        elif event.applied:
            self.counters["commands_applied"] += 1
        else:
            self.counters["commands_rejected"] += 1
        log_at = logging.INFO if event.applied else logging.WARNING
        log.log(
            log_at,
            "%s %s -> %s (epoch %s): %s",
            event.action,
            key,
            list(event.to_partitions),
            event.to_epoch,
            event.reason,
        )

    async def handle_release(self, raw: bytes | None, offset: int) -> None:
        """A producer released a moved tenant: how many records it held during the move."""
        try:
            report = DrainAck.from_record(await self._decode(self._acks, raw, offset))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable release report skipped: %s", offset, exc)
            return
        key = route_key(report.topic, report.tenant)
        pending = self.tables.releases.get(key)
        if pending is None or pending["epoch"] != report.epoch or report.producer_id in pending["reports"]:
            # After the bound, or for a move this writer did not finish.
            self.counters["release_reports_late"] += 1
            return
        self.counters["release_reports"] += 1
        reports = {**pending["reports"], report.producer_id: report.held}
        self.tables.releases[key] = {**pending, "reports": reports}
        if set(pending["waiting"]) <= set(reports):
            await self._flush_release(key)

    async def _flush_release(self, key: str) -> None:
        pending = self.tables.releases.get(key)
        if pending is None:
            return
        del self.tables.releases[key]
        event = ReassignmentEvent.from_record(pending["event"])
        reports: dict[str, int] = pending["reports"]
        observed = {
            **event.observed,
            "held_records": float(sum(reports.values())),
            "held_reports": float(len(reports)),
            "held_unreported": float(len(set(pending["waiting"]) - set(reports))),
        }
        await self._append(replace(event, observed=observed))

    async def flush_releases(self, now_ms: int | None = None) -> None:
        """Appends the closing events whose producers did not all report in time."""
        now = now_ms or _now_ms()
        for key in [k for k, v in self.tables.releases.items() if v["until_ms"] <= now]:
            await self._flush_release(key)

    async def reassert(self, key: str) -> None:
        """Writes the key's route again, unchanged (same epoch): a record under its key that
        nobody can read came after it, and compaction keeps only a key's newest record, so a
        new reader (a producer starting, a worker restoring its table) would have lost the
        route. Readers take the same epoch as nothing new."""
        current = self.tables.routes.get(key)
        if not isinstance(current, Route):
            log.warning("poison under %s, and no route of the writer's to write again", key)
            return
        self.tables.routes[key] = current
        self.counters["routes_reasserted"] += 1
        log.warning(
            "route %s written again (%s, epoch %d) over poison under its key",
            key,
            list(current.partitions),
            current.epoch,
        )

    # -- routes the writer did not write ---------------------------------------------------------
    def foreign_epoch(self, key: str, seen: Route | None) -> bool:
        """A route on the topic with an epoch this writer never issued for its key: somebody
        else wrote it (the routes topic's ACL is what keeps others out)."""
        return seen is not None and seen.epoch > self.last_epoch(key)

    async def repair(self, key: str, seen: Route | None) -> None:
        """Puts the writer's route back over a record it did not write, as readers see it.

        A foreign route with an epoch above any the writer issued would outrank every later
        decision (readers drop lower epochs as stale): a tombstone first makes readers forget
        it, whatever its epoch, then the writer's own route (if the tenant has one) follows. A
        foreign tombstone over a live route: the route is written again."""
        current = self.tables.routes.get(key)
        mine = current if isinstance(current, Route) else None
        if self.foreign_epoch(key, seen):
            assert seen is not None
            self.counters["foreign_routes"] += 1
            log.error(
                "routes topic: a route the writer did not write under %s (%s, epoch %d; "
                "the writer's last epoch is %d): removed%s. Only the worker's principal "
                "should be allowed to write the routes topic (README, Security)",
                key,
                list(seen.partitions),
                seen.epoch,
                self.last_epoch(key),
                f", and its route {list(mine.partitions)} (epoch {mine.epoch}) written again" if mine else "",
            )
            if key not in self.tables.routes:
                # The table writes a tombstone only for a key it holds: hold the record as
                # readers hold it (same epoch: nothing new to them) for the length of a delete.
                self.tables.routes[key] = seen
            del self.tables.routes[key]
            if mine is not None:
                self.tables.routes[key] = mine
            await self._append(repair_event(seen, mine, seen, self.worker_id, _now_ms()))
        elif seen is None and mine is not None:
            self.counters["foreign_routes"] += 1
            log.error(
                "routes topic: a tombstone the writer did not write under %s: its route "
                "%s (epoch %d) written again",
                key,
                list(mine.partitions),
                mine.epoch,
            )
            self.tables.routes[key] = mine
            await self._append(repair_event(None, mine, mine, self.worker_id, _now_ms()))

    async def repair_table(self) -> None:
        """At takeover: routes in the restored table (the routes topic) with epochs the writer
        never issued (the epochs table, its own changelog) were written by somebody else while
        no writer watched. The writer's own route under such a key is gone with compaction:
        the tenant goes back to default hashing, said loudly; `audit verify` shows the record."""
        for key, route in list(self.tables.routes.items()):
            if isinstance(route, Route) and self.foreign_epoch(key, route):
                await self.repair(key, route)

    # -- drains --------------------------------------------------------------------------------
    def saw_producers(self, producer_ids: Iterable[str], seen_ms: int) -> None:
        for pid in producer_ids:
            self.roll.saw(pid, seen_ms)

    def producer_closed(self, raw: bytes | None) -> None:
        pid = (raw or b"").decode("utf-8", "replace")
        if self.roll.goodbye(pid, _now_ms()):
            log.info("producer %s closed; drains no longer wait for it", pid)

    def producer_hello(self, raw: bytes | None, offset: int) -> None:
        """A producer starting (or an idle one still there): live from now on, and a drain
        whose roll call it belongs to waits for it (see control.drain)."""
        pid = (raw or b"").decode("utf-8", "replace")
        if not pid:
            return
        if self.roll.hello(pid, _now_ms()):
            log.info("producer %s said hello; strict moves wait for it", pid)
        for key, drain in self.pending_drains().items():
            if pid in drain.expected or pid in drain.acks:
                continue
            if drains.hello_joins(self.roll_calls.end(key, drain), offset):
                self.tables.drains[key] = drain.with_expected(pid).to_record()
                log.info(
                    "drain of %s waits for producer %s too (its hello came before the "
                    "draining route was committed)",
                    key,
                    pid,
                )

    def live_producers(self, now_ms: int | None = None) -> set[str]:
        return self.roll.live(now_ms or _now_ms())

    def _answers_committed(self) -> int:
        """Where this worker's group resumes reading the answers topic: its committed offset,
        or the topic's first offset (hold_flow_until_seek: no commit means from the start)."""
        if self._admin is None:
            self._admin = admin_client(self._settings.kafka)
        topic = self._settings.answers_topic
        found = committed_offsets(self._admin, [self._settings.app_id], topic, [0])
        if found is not None and found.get(0, -1) >= 0:
            return found[0]
        return self._answers_offsets(OffsetSpec.earliest())

    def _answers_offsets(self, spec: OffsetSpec) -> int:
        if self._admin is None:
            self._admin = admin_client(self._settings.kafka)
        request = {TopicPartition(self._settings.answers_topic, 0): spec}
        results = self._admin.list_offsets(request, request_timeout=10.0)
        return int(next(iter(results.values())).result(10.0).offset)

    def pending_drains(self) -> dict[str, Drain]:
        return {key: Drain.from_record(value) for key, value in self.tables.drains.items()}

    async def handle_drain_ack(self, raw: bytes | None, offset: int) -> None:
        try:
            ack = DrainAck.from_record(await self._decode(self._acks, raw, offset))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable drain ack skipped: %s", offset, exc)
            return
        key = route_key(ack.topic, ack.tenant)
        record = self.tables.drains.get(key)
        drain = Drain.from_record(record) if record is not None else None
        if drain is None or drain.epoch != ack.epoch:
            # A late answer to a drain that already ended, or a producer behind on routes.
            self.counters["drain_acks_stale"] += 1
            return
        self.counters["drain_acks"] += 1
        # A producer's answer is also its heartbeat.
        self.saw_producers([ack.producer_id], ack.acked_at_ms)
        self.tables.drains[key] = drain.with_ack(ack).to_record()
        await self.check_drains([key])

    async def check_drains(self, keys: Iterable[str] | None = None) -> None:
        """Ends the drains that are done or out of time; wakes itself for consumer waits."""
        pending = self.pending_drains()
        now = _now_ms()
        live = self.live_producers(now)
        grace = self._settings.drain_ack_grace_ms
        if keys is None:
            await self.flush_releases(now)
            if self._admin is None:
                # Connected ahead (a tick): the first drain's roll call would pay for it.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._answers_offsets, OffsetSpec.latest())
        for key in pending if keys is None else [k for k in keys if k in pending]:
            drain = pending[key]
            await self.roll_calls.open(key, drain)
            step = drains.progress(
                drain, now, live, ack_grace_ms=grace, roll_call_done=await self.roll_calls.done(key, drain)
            )
            if step.phase in (Phase.CONSUMERS, Phase.DONE) and drain.answered_ms is None:
                drain = replace(drain, answered_ms=now)
                self.tables.drains[key] = drain.to_record()
            if step.phase is Phase.CONSUMERS or (step.phase is Phase.DONE and self._lag_groups):
                # The producers are done: now the broker's view (commits, end offsets) decides.
                step = await asyncio.to_thread(self._consumer_progress, drain, now, live)
            if step.phase is Phase.CONSUMERS:
                self._wake_when_consumed(key, drain)
            if step.phase in (Phase.DONE, Phase.TIMED_OUT):
                waited_for = (
                    drains.describe_wait(drain, step, self._lag_groups)
                    if step.phase is Phase.TIMED_OUT
                    else ()
                )
                await self._finish(key, drain, step.phase, waited_for)

    def _consumer_progress(self, drain: Drain, now: int, live: set[str]) -> drains.Progress:
        if self._admin is None:
            self._admin = admin_client(self._settings.kafka)
        partitions = list(drain.from_partitions)
        committed = committed_offsets(self._admin, self._lag_groups, drain.topic, partitions)
        # Only called once the producers' phase is over, roll call included.
        first = drains.progress(
            drain,
            now,
            live,
            ack_grace_ms=self._settings.drain_ack_grace_ms,
            roll_call_done=True,
            committed=committed,
        )
        if not first.needs_end_offsets:
            return first
        # Read once per drain: the end moves on with other tenants' records, and a target
        # that moves with it might never be reached while traffic flows.
        ends = self._silent_targets.get(route_key(drain.topic, drain.tenant))
        if ends is None or ends[0] != drain.epoch:
            ends = (drain.epoch, end_offsets(self._admin, drain.topic, partitions))
            self._silent_targets[route_key(drain.topic, drain.tenant)] = ends
        return drains.progress(
            drain,
            now,
            live,
            ack_grace_ms=self._settings.drain_ack_grace_ms,
            roll_call_done=True,
            committed=committed,
            end_offsets=ends[1],
        )

    def _wake_when_consumed(self, key: str, drain: Drain) -> None:
        """Polls the groups' commits off the agent and sends a wake-up once they passed (ticks
        would add up to a second to every pause)."""
        if key in self._wakers or self.control_topic is None:
            return
        topic = self.control_topic

        async def wake() -> None:
            try:
                while True:
                    now = _now_ms()
                    step = await asyncio.to_thread(
                        self._consumer_progress, drain, now, self.live_producers(now)
                    )
                    if step.phase is not Phase.CONSUMERS:
                        await topic.send(
                            key=key.encode("utf-8"), value=b"", headers=[MessageKind.DRAIN_CHECK.header]
                        )
                        return
                    await asyncio.sleep(CONSUMER_POLL_S)
            except Exception:
                log.exception("drain of %s: waiting for consumer groups failed; ticks go on", key)
            finally:
                self._wakers.pop(key, None)

        self._wakers[key] = asyncio.ensure_future(wake())

    async def _finish(self, key: str, drain: Drain, outcome: Phase, waiting_for: tuple[str, ...]) -> None:
        draining = self.tables.routes.get(key)
        draining = draining if isinstance(draining, Route) else None
        decision = drains.finish(
            drain,
            draining,
            outcome,
            self._on_timeout,
            now_ms=_now_ms(),
            worker_id=self.worker_id,
            waiting_for=waiting_for,
        )
        del self.tables.drains[key]
        self._silent_targets.pop(key, None)
        self.roll_calls.forget(key)
        self.counters[
            {
                "drain-complete": "drains_completed",
                "drain-forced": "drains_forced",
                "drain-abort": "drains_aborted",
            }[decision.event.action]
        ] += 1
        # Whoever holds the tenant releases it on this write, and reports what it held.
        holders = set(drain.acks) | (set(drain.expected) & self.live_producers())
        await self._write(decision, release_from=sorted(holders))


def repair_event(
    removed: Route | None, restored: Route | None, subject: Route, worker_id: str, now_ms: int
) -> ReassignmentEvent:
    """The event of a repair, so the audit can tell the writer's repair records from the
    foreign record they answer: ``from_epoch`` is the removed foreign route's (a tombstone was
    written), None for a foreign tombstone; ``to_*`` is the writer's route written again."""
    what = (
        f"a route the writer did not write ({list(removed.partitions)}, epoch {removed.epoch}) removed"
        if removed
        else "a tombstone the writer did not write"
    )
    return ReassignmentEvent(
        topic=subject.topic,
        tenant=subject.tenant,
        action=REPAIR,
        decided_at_ms=now_ms,
        reason=what
        + (
            f"; route {list(restored.partitions)} (epoch {restored.epoch}) written again"
            if restored
            else "; default hashing"
        ),
        worker_id=worker_id,
        from_partitions=removed.partitions if removed else (),
        from_epoch=removed.epoch if removed else None,
        to_partitions=restored.partitions if restored else (),
        to_epoch=restored.epoch if restored else None,
        mode=(restored or subject).mode.value,
        status=restored.status.value if restored else "",
        reason_kind=WriterReasonKind.REPAIR.value,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_key(key: str) -> TenantKey:
    topic, _, tenant = key.partition("/")
    return topic, tenant
