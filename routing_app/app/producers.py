"""The producers a strict move waits for, as the route writer knows them (see control.drain).

ProducerRoll: a producer is live from its hello, its usage reports (window summaries) and its
answers, until it says goodbye or stays silent for ``producer_expiry_ms``. Both tables are the
writer's, so the worker that takes the writer over knows the same producers, hellos included: a
producer that said hello just before the takeover has sent nothing else yet, and a move must
wait for it.

RollCalls: when each move's roll call is over, i.e. the writer has read the answers topic up
to the end offset it had once the move's draining route was committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import OffsetSpec

from routing_app.client.cache import RouteCache
from routing_app.control.drain import Drain

log = logging.getLogger(__name__)

# "Last seen" is stored in steps of expiry / _STEPS: a changelog record per producer and step,
# not per report or hello; ``live`` allows one step more, so nobody expires early.
_STEPS = 10


class ProducerRoll:
    def __init__(self, members: Any, closed: Any, expiry_ms: int, window_ms: int) -> None:
        self._members = members  # producer id -> last seen (ms, in steps)
        self._closed = closed  # producer id -> when it said goodbye (ms)
        self._expiry_ms = expiry_ms
        self._window_ms = window_ms
        self._step_ms = max(expiry_ms // _STEPS, 1)
        self._pruned_at = -(1 << 62)

    def saw(self, producer_id: str, seen_ms: int) -> None:
        """A heartbeat: a usage report summarised for a window ending at ``seen_ms``, or an
        answer sent then."""
        closed = self._closed.get(producer_id)
        if closed is not None and seen_ms <= closed + self._window_ms:
            return  # its last reports, summarised after its goodbye: it is still gone
        self._note(producer_id, seen_ms)

    def hello(self, producer_id: str, now_ms: int) -> bool:
        """A hello (a start, or an idle producer's keepalive); True when it is news. A hello
        comes back from a goodbye: a producer restarted under the same id."""
        if producer_id in self._closed:
            del self._closed[producer_id]
        stored = self._members.get(producer_id)
        self._note(producer_id, now_ms)
        return stored is None or stored < now_ms - self._expiry_ms - self._step_ms

    def goodbye(self, producer_id: str, now_ms: int) -> bool:
        """A producer closed; True when it was live."""
        self._closed[producer_id] = now_ms
        for gone in [p for p, at in self._closed.items() if at < now_ms - self._expiry_ms]:
            del self._closed[gone]
        if producer_id not in self._members:
            return False
        del self._members[producer_id]
        return True

    def live(self, now_ms: int) -> set[str]:
        """Read only: the web views ask too, and only the writer's agent may write its tables."""
        oldest = now_ms - self._expiry_ms - self._step_ms
        return {p for p, seen in self._members.items() if seen >= oldest}

    def _note(self, producer_id: str, seen_ms: int) -> None:
        stored = self._members.get(producer_id)
        if stored is None or seen_ms >= stored + self._step_ms:
            self._members[producer_id] = seen_ms
        if seen_ms >= self._pruned_at + self._step_ms:
            self._pruned_at = seen_ms
            oldest = seen_ms - self._expiry_ms - self._step_ms
            for gone in [p for p, seen in self._members.items() if seen < oldest]:
                del self._members[gone]


class RollCalls:
    def __init__(
        self,
        answers_topic: str,
        answers_offset: Callable[[OffsetSpec], int],
        resume_offset: Callable[[], int],
    ) -> None:
        self._topic = answers_topic
        self._answers_offset = answers_offset  # the answers topic's end (or start) offset
        self._resume_offset = resume_offset  # where the writer's group resumes reading it
        # route key -> (the drain's epoch, the answers topic's end offset read once its
        # draining route was committed)
        self._ends: dict[str, tuple[int, int]] = {}
        # The next answers offset to handle here; None: not known since the last rebalance.
        self._next: int | None = None
        # The worker's route cache (set by WriterInput): it shows when a route is committed.
        self.route_cache: RouteCache | None = None

    def read(self, offset: int) -> list[str]:
        """An answers record about to be handled: the moves whose roll call it completes."""
        before = self._next
        self._next = max(offset + 1, before or 0)
        return [
            key
            for key, (_, end) in self._ends.items()
            if end <= self._next and (before is None or before < end)
        ]

    def took_over(self) -> None:
        """A rebalance: the answers partition is read again from its committed offset."""
        self._next = None

    def end(self, key: str, drain: Drain) -> int | None:
        known = self._ends.get(key)
        return known[1] if known is not None and known[0] == drain.epoch else None

    def forget(self, key: str) -> None:
        self._ends.pop(key, None)

    async def open(self, key: str, drain: Drain) -> None:
        """Reads the answers topic's end offset once the draining route is committed, which
        the worker's route cache shows by having read it (WriterInput asks for a check then)."""
        if self.end(key, drain) is not None or not self._committed(drain):
            return
        try:
            end = await asyncio.to_thread(self._answers_offset, OffsetSpec.latest())
        except Exception as exc:  # the broker's trouble: the next check asks again
            log.warning("drain of %s: cannot read the end of %s yet: %s", key, self._topic, exc)
            return
        self._ends[key] = (drain.epoch, end)

    async def done(self, key: str, drain: Drain) -> bool:
        """Whether every hello before the move's end offset has been read: by this writer, or,
        below the committed offset, by the one before it (its table has them)."""
        end = self.end(key, drain)
        if end is None:
            return False
        if self._next is None:
            try:
                position = await asyncio.to_thread(self._resume_offset)
            except Exception as exc:
                log.warning("cannot read the committed offset of %s: %s", self._topic, exc)
                return False
            self._next = max(position, self._next or 0)
        return self._next >= end

    def _committed(self, drain: Drain) -> bool:
        seen = self.route_cache.get(drain.topic, drain.tenant) if self.route_cache is not None else None
        return seen is not None and seen.epoch >= drain.epoch
