"""The route writer's state: the Faust tables it alone writes, and the two reads every part of it
makes (a key's route, a key's last epoch).

Apart from the writer so that its parts (events, drains, repair, operator state) can share the
tables without importing the writer that assembles them. The tables are co-partitioned with the
control topic and move together to whichever worker takes that partition over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from routing_app.routes import Route


class Acknowledgements:
    """What the writer sent to Kafka (its tables' changelog records, its events) that the broker
    has not acknowledged yet, so that it can wait for them.

    Faust hands a table's changelog records to the producer in the background, and the producer
    batches records per partition: a worker killed at any instant leaves on the broker any
    subset of what it sent last, whatever order it was written in (seen: a finished move's
    route on the routes topic, its held closing event not in its table's changelog). Only an
    acknowledged record is known to be there (see writer_events: the write-ahead)."""

    _PRUNE_AT = 1000

    def __init__(self) -> None:
        self._sent: list[asyncio.Future[Any]] = []
        self._prune_at = self._PRUNE_AT

    def add(self, sent: Awaitable[Any]) -> None:
        self._sent.append(asyncio.ensure_future(sent))
        if len(self._sent) >= self._prune_at:
            # Tables the writer writes often (producers' heartbeats) between two waits.
            self._sent = [f for f in self._sent if not f.done()]
            self._prune_at = max(self._PRUNE_AT, 2 * len(self._sent))

    async def wait(self) -> None:
        """Returns once the broker acknowledged every record sent so far; raises if one failed."""
        while self._sent:
            sent, self._sent = self._sent, []
            await asyncio.gather(*sent)


@dataclass
class WriterTables:
    routes: Any  # route key -> Route (changelog: the routes topic)
    epochs: Any  # route key -> highest epoch ever written (survives tombstones)
    history: Any  # route key -> [last_moved_ms, cool_since_ms] (-1 = none)
    frozen: Any  # route key -> True
    evacuated: Any  # data topic -> sorted partition list (operators' evacuate commands)
    drains: Any  # route key -> Drain.to_record(): strict moves in progress
    # route key -> a route change written ahead of its route and event (see writer_events),
    # until its event is acknowledged; a finished move's closing event stays until the
    # producers' release reports (see control.drain: held records). {"event", "epoch",
    # "waiting", "reports", "until_ms", "route", "tombstone"} (the last two absent in entries
    # of versions before the write-ahead).
    releases: Any = field(default_factory=dict)
    # producer id -> when it said goodbye. In a table, not in memory: the worker that takes
    # the writer over must not bring a closed producer back to life from the summaries of its
    # last reports, and make every strict move wait for it until it expires.
    closed: Any = field(default_factory=dict)
    # producer id -> when last seen (hello, usage reports, answers; see app.producers): in a
    # table so that the worker taking the writer over knows who said hello just before.
    members: Any = field(default_factory=dict)
    # The broker's acknowledgements of the records these tables and the events topic were sent
    # (the app's tables report their changelog records here). Plain dicts (tests) send none.
    acks: Acknowledgements = field(default_factory=Acknowledgements)

    def route(self, key: str) -> Route | None:
        """The key's route; None for default hashing (no record, or a tombstone)."""
        value = self.routes.get(key)
        return value if isinstance(value, Route) else None

    def last_epoch(self, key: str) -> int:
        return int(self.epochs.get(key) or 0)
