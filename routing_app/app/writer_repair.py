"""The route writer putting its own routes back: over a record it did not write (a forged route
or tombstone on the routes topic), and over poison under a live route's key.

Apart from the writer's core because these writes answer what others put on the routes topic,
not a decision: the writer's table is the truth, and what readers see is made to match it again.

A repair is a route change like any other to a writer killed half-way (its tombstone on the broker
and not the route after it would leave the tenant unrouted, with no event): it is written ahead
(writer_events) through the writer's ``write``, and a writer taking over puts it back again
(``put_back``) where the foreign record is still in its table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from routing_app.app.writer_tables import WriterTables
from routing_app.control import Decision
from routing_app.routes import Route
from routing_app.routes.events import ADOPT, REPAIR, ReassignmentEvent, WriterReasonKind

log = logging.getLogger(__name__)


class RouteRepair:
    def __init__(
        self,
        tables: WriterTables,
        counters: dict[str, int],
        write: Callable[[Decision, Callable[[], None] | None], Awaitable[None]],
        worker_id: str,
    ) -> None:
        self._tables = tables
        self._counters = counters
        # RouteWriter's: writes the change ahead, calls the put (None: the decision's route
        # as any change's), appends the event.
        self._write = write
        self._worker_id = worker_id

    async def reassert(self, key: str) -> None:
        """Writes the key's route again, unchanged (same epoch): a record under its key that
        nobody can read came after it, and compaction keeps only a key's newest record, so a
        new reader (a producer starting, a worker restoring its table) would have lost the
        route. Readers take the same epoch as nothing new."""
        current = self._tables.route(key)
        if current is None:
            log.warning("poison under %s, and no route of the writer's to write again", key)
            return
        self._tables.routes[key] = current
        self._counters["routes_reasserted"] += 1
        log.warning(
            "route %s written again (%s, epoch %d) over poison under its key",
            key,
            list(current.partitions),
            current.epoch,
        )

    def foreign_epoch(self, key: str, seen: Route | None) -> bool:
        """A route on the topic with an epoch this writer never issued for its key: somebody
        else wrote it (the routes topic's ACL is what keeps others out)."""
        return seen is not None and seen.epoch > self._tables.last_epoch(key)

    async def repair(self, key: str, seen: Route | None) -> None:
        """Puts the writer's route back over a record it did not write, as readers see it.

        A foreign route with an epoch above any the writer issued would outrank every later
        decision (readers drop lower epochs as stale): a tombstone first makes readers forget
        it, whatever its epoch, then the writer's own route (if the tenant has one) follows. A
        foreign tombstone over a live route: the route is written again."""
        mine = self._tables.route(key)
        if mine is not None and self.foreign_epoch(key, mine):
            mine = None  # the foreign route itself, restored and not adopted (yet): not ours
        if self.foreign_epoch(key, seen):
            assert seen is not None
            self._counters["foreign_routes"] += 1
            log.error(
                "routes topic: a route the writer did not write under %s (%s, epoch %d; "
                "the writer's last epoch is %d): removed%s. Only the worker's principal "
                "should be allowed to write the routes topic (README, Security)",
                key,
                list(seen.partitions),
                seen.epoch,
                self._tables.last_epoch(key),
                f", and its route {list(mine.partitions)} (epoch {mine.epoch}) written again" if mine else "",
            )
            event = repair_event(seen, mine, seen, self._worker_id, _now_ms())
            await self._write(
                Decision(event, route=mine, tombstone=mine is None), lambda: self.put_back(key, seen, mine)
            )
        elif seen is None and mine is not None:
            self._counters["foreign_routes"] += 1
            log.error(
                "routes topic: a tombstone the writer did not write under %s: its route "
                "%s (epoch %d) written again",
                key,
                list(mine.partitions),
                mine.epoch,
            )
            event = repair_event(None, mine, mine, self._worker_id, _now_ms())
            await self._write(Decision(event, route=mine), lambda: self.put_back(key, None, mine))

    def put_back(self, key: str, foreign: Route | None, mine: Route | None) -> None:
        """The writer's route (or none) over a foreign route (or tombstone), as readers must
        take it: a foreign route is deleted first, whatever its epoch."""
        routes = self._tables.routes
        if foreign is not None:
            if key not in routes:
                # The table writes a tombstone only for a key it holds: hold the record as
                # readers hold it (same epoch: nothing new to them) for the length of a delete.
                routes[key] = foreign
            del routes[key]
        if mine is not None:
            routes[key] = mine

    async def repair_table(self) -> None:
        """At takeover: a route in the restored table with an epoch the writer never issued
        (the epochs table, its own changelog) was written while no writer watched, by somebody
        else or by a writer whose epochs changelog is gone. It is all the key has left (the
        routes topic is the table's changelog, compacted), and producers follow it: removing
        it would move the tenant at once, without a drain (and, for a lost epochs table, every
        tenant). So the writer adopts it, loudly: its epoch counts as issued from now on, and
        an ``adopt`` event names it. Nothing is written to the routes topic."""
        for key, route in list(self._tables.routes.items()):
            if isinstance(route, Route) and self.foreign_epoch(key, route):
                self._counters["foreign_routes"] += 1
                last = self._tables.last_epoch(key)
                log.error(
                    "routes topic: a route the writer never issued under %s (%s, epoch %d; the "
                    "writer's last epoch is %d), written while no writer ran: adopted as found. "
                    "Only the worker's principal should be allowed to write the routes topic "
                    "(README, Security)",
                    key,
                    list(route.partitions),
                    route.epoch,
                    last,
                )
                await self._write(
                    Decision(adopt_event(route, last, self._worker_id, _now_ms()), route=route), None
                )


def adopt_event(route: Route, last_epoch: int, worker_id: str, now_ms: int) -> ReassignmentEvent:
    """The event of an adoption (repair_table): the route as found, its epoch the writer's
    from now on; ``from_epoch`` is the writer's last (its partitions are not known any more)."""
    return ReassignmentEvent(
        topic=route.topic,
        tenant=route.tenant,
        action=ADOPT,
        decided_at_ms=now_ms,
        reason=(
            f"a route the writer never issued ({list(route.partitions)}, epoch {route.epoch}) found in "
            "its restored table: adopted as found (removing it would move the tenant without a drain)"
        ),
        worker_id=worker_id,
        from_epoch=last_epoch or None,
        to_partitions=route.partitions,
        to_epoch=route.epoch,
        mode=route.mode.value,
        status=route.status.value,
        reason_kind=WriterReasonKind.REPAIR.value,
    )


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
