"""Records held back while a strict tenant's route drains (see routing_app.control.drain).

The producer keeps one TenantHold per draining (topic, tenant). New records of that tenant
queue here instead of going out; the hold knows how many records each old partition had been
sent when it began (the barrier) so the producer can tell when all of them are acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TenantHold:
    topic: str
    tenant: str
    epoch: int
    # old partition -> records sent to it (by this producer) before the hold began
    barrier: dict[int, int]
    max_records: int
    records: deque[tuple[Any, Any, dict[str, Any]]] = field(default_factory=deque)
    started: float = field(default_factory=time.monotonic)
    acked: bool = False
    ack_error_logged: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    room: threading.Condition = field(default_factory=threading.Condition)

    def offer(self, value: Any, key: Any, options: dict[str, Any]) -> bool:
        """Queues a record; False when the hold is full (the caller waits for room)."""
        if len(self.records) >= self.max_records:
            return False
        self.records.append((value, key, options))
        return True

    def wait_for_room(self, timeout: float) -> None:
        with self.room:
            self.room.wait(timeout)

    def take_all(self) -> list[tuple[Any, Any, dict[str, Any]]]:
        taken = list(self.records)
        self.records.clear()
        with self.room:
            self.room.notify_all()
        return taken

    def end(self) -> None:
        self.released.set()
        with self.room:
            self.room.notify_all()
