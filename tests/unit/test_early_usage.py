"""The usage worker's early path: a tenant surging in the open window is sent to the planner as
an early summary (its own record kind on the control topic) before that window closes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from faust.windows import TumblingWindow

from routing_app.app.usage import UsageWindows
from routing_app.codec import AvroCodec
from routing_app.config import Settings
from routing_app.routes.messages import MessageKind
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports
from routing_app.usage.batch import UsageLimits
from routing_app.windows import WINDOW_SUMMARY_SCHEMA, WindowSummary
from routing_app.windows.early import EARLY

PARTITIONS = 4
SIZE_S = 10.0
SIZE = int(SIZE_S * 1000)


class _Inner:
    def __init__(self) -> None:
        self.window = TumblingWindow(SIZE_S, expires=3 * SIZE_S)
        self.data: dict[Any, Any] = {}


class _Slot:
    def __init__(self, table: _Table, key: str) -> None:
        self._table, self._key = table, key

    def __setitem__(self, window_range: Any, value: Any) -> None:
        self._table.table.data[(self._key, window_range)] = json.loads(json.dumps(value))


class _Table:
    """The windowed table's surface UsageWindows uses."""

    def __init__(self) -> None:
        self.table = _Inner()

    def __getitem__(self, key: str) -> _Slot:
        return _Slot(self, key)


class _Control:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, MessageKind | None]] = []

    async def send(self, *, value: bytes, headers: Any) -> None:
        self.sent.append((value, MessageKind.of(headers)))


def _worker(early: bool) -> tuple[UsageWindows, AvroCodec, AvroCodec, _Control]:
    registry = SchemaRegistryClient.new_client({"url": f"mock://early-{uuid.uuid4().hex}"})
    settings = Settings().replace(
        usage_partitions=PARTITIONS,
        window_s=SIZE_S,
        window_grace_ms=500,
        window_idle_ms=60_000,
        early_reaction=early,
    )
    usage = AvroCodec(registry, USAGE_SCHEMA, "usage")
    summaries = AvroCodec(registry, WINDOW_SUMMARY_SCHEMA, "control")
    control = _Control()
    # Reports stamped a little ahead of the wall clock move stream time without waiting.
    windows = UsageWindows(
        settings,
        usage,
        summaries,
        _Table(),
        control,  # type: ignore[arg-type]
        "w-1",
        limits=UsageLimits(max_future_ms=3 * SIZE, window_ms=SIZE),
    )
    return windows, usage, summaries, control


def _send(
    windows: UsageWindows, usage: AvroCodec, reports: list[UsageReport], offsets: dict[int, int]
) -> None:
    for batch in batch_reports(reports, PARTITIONS):
        offset = offsets.get(batch.usage_partition, 0)
        offsets[batch.usage_partition] = offset + 1
        asyncio.run(windows.on_report(usage.encode(batch.to_record()), batch.usage_partition, offset))


def _run(early: bool) -> tuple[list[tuple[WindowSummary, MessageKind | None]], int]:
    """Last window: tenant "hot" at 25/s. The open window: 500/s for two half-second intervals.
    Returns what went to the control topic, and the open window's start."""
    windows, usage, summaries, control = _worker(early)
    now = int(time.time() * 1000)
    start = now - now % SIZE
    offsets: dict[int, int] = {}
    hot, calm = "hot", "calm"
    for end in range(start - SIZE + 500, start + 1, 500):  # the last window, 25/s each
        _send(
            windows,
            usage,
            [UsageReport("p-1", "orders", t, 12, 1200, end - 500, end) for t in (hot, calm)],
            offsets,
        )
    end = start + 600  # past the last window's grace: it closes (stream time)
    _send(
        windows,
        usage,
        [UsageReport("p-1", "orders", t, 12, 1200, end - 600, end) for t in (hot, calm)],
        offsets,
    )
    for end in (start + 1100, start + 1600, start + 2100):
        _send(
            windows,
            usage,
            [
                UsageReport("p-1", "orders", hot, 250, 25_000, end - 500, end),
                UsageReport("p-1", "orders", calm, 12, 1200, end - 500, end),
            ],
            offsets,
        )
    decoded = [(WindowSummary.from_record(summaries.decode(v)), kind) for v, kind in control.sent]
    return decoded, start


def test_a_surge_is_sent_as_an_early_summary_before_its_window_closes() -> None:
    sent, start = _run(early=True)
    early = [s for s, kind in sent if kind is MessageKind.EARLY_SUMMARY]
    assert len(early) == 1, sent  # once: the third interval above is within the cool-down
    (summary,) = early
    assert summary.closed_by == EARLY
    assert set(summary.tenants) == {("orders", "hot")}
    (records, _) = summary.tenants[("orders", "hot")]
    span_s = (summary.window_end - summary.window_start) / 1000
    assert records / span_s == 500.0
    assert summary.window_end == start + 1600  # the second interval above confirmed it
    # The window it happened in is still open: no summary of it went out.
    closed = [s for s, kind in sent if kind is MessageKind.WINDOW_SUMMARY]
    assert closed and all(s.window_start < start for s in closed)


def test_no_early_summary_when_the_early_path_is_off() -> None:
    sent, _ = _run(early=False)
    assert [kind for _, kind in sent if kind is not MessageKind.WINDOW_SUMMARY] == []
