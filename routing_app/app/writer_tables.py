"""The route writer's state: the Faust tables it alone writes, and the two reads every part of it
makes (a key's route, a key's last epoch).

Apart from the writer so that its parts (events, drains, repair, operator state) can share the
tables without importing the writer that assembles them. The tables are co-partitioned with the
control topic and move together to whichever worker takes that partition over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routing_app.routes import Route


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

    def route(self, key: str) -> Route | None:
        """The key's route; None for default hashing (no record, or a tombstone)."""
        value = self.routes.get(key)
        return value if isinstance(value, Route) else None

    def last_epoch(self, key: str) -> int:
        return int(self.epochs.get(key) or 0)
