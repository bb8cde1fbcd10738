"""The ordering check of ``bench drain`` (and of the live ordering tests): every record's number
per stream, counting what was duplicated, reordered or lost.

Apart from the benchmark because it is pure (no Kafka) and the e2e ordering tests use it on
their own traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        """One received record, its value ``tenant|secondary key|number``."""
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


def lost_per_tenant(sent: dict[tuple[str, str], int], checker: Checker) -> dict[str, int]:
    """Records sent but never received, by tenant (0 for a tenant that lost none)."""
    lost: dict[str, int] = {}
    for stream, count in sent.items():
        missing = count - len(checker.seen.get(stream, ()))
        lost[stream[0]] = lost.get(stream[0], 0) + max(missing, 0)
    return lost
