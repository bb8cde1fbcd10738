"""The kinds of records the route writer reads: one enum, named by a ``routing.type`` header.

The writer's input is two topics. The control topic carries operators' commands (no header) and
what workers tell the writer (window summaries, ticks, wake-ups, repairs); the answers topic
carries what producers tell it. A kind is taken only from its own topic (see the worker's
control agent), so an ACL that lets producers write answers gives them nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

HEADER = "routing.type"

Headers = Mapping[str, bytes | None] | Iterable[tuple[str, bytes | None]] | None


class MessageKind(Enum):
    # control topic: operators
    COMMAND = b""
    # control topic: workers
    WINDOW_SUMMARY = b"window-summary"
    # a tenant surging before its window closes (a WindowSummary with closed_by "early")
    EARLY_SUMMARY = b"early-summary"
    TICK = b"tick"
    DRAIN_CHECK = b"drain-check"  # a drain's consumers may have caught up: look again
    ROUTE_REASSERT = b"route-reassert"  # poison under a live route's key: write it again
    ROUTE_CHECK = b"route-check"  # a route the writer may not have written: check it
    # answers topic: producers
    PRODUCER_HELLO = b"producer-hello"  # before its first send, and every so often (control.drain)
    DRAIN_ACK = b"drain-ack"
    DRAIN_RELEASED = b"drain-released"
    PRODUCER_CLOSED = b"producer-closed"

    @property
    def header(self) -> tuple[str, bytes]:
        return (HEADER, self.value)

    @property
    def from_producers(self) -> bool:
        return self in _FROM_PRODUCERS

    @classmethod
    def of(cls, headers: Headers) -> MessageKind | None:
        """The kind a record's headers name: COMMAND without the header, None for a kind
        nobody sends (skipped by the writer, never taken for a command)."""
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        for name, value in items:
            if name == HEADER:
                try:
                    return cls(bytes(value or b""))
                except ValueError:
                    return None
        return cls.COMMAND


_FROM_PRODUCERS = frozenset(
    {
        MessageKind.PRODUCER_HELLO,
        MessageKind.DRAIN_ACK,
        MessageKind.DRAIN_RELEASED,
        MessageKind.PRODUCER_CLOSED,
    }
)
