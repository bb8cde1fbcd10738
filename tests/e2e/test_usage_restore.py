"""A worker killed (SIGKILL) in the middle of a window: the worker that takes its usage partitions
over gets the window's totals back from the table changelog, adds what arrives afterwards, and
the summaries that reach the control topic hold everything exactly once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from routing_app.app.launcher import launch_worker
from routing_app.codec import AvroCodec, registry_client
from routing_app.config import Settings
from routing_app.connection import admin_client, client_settings
from routing_app.topics import ensure_topics, routing_topics
from routing_app.usage import USAGE_SCHEMA, UsageReport, batch_reports
from routing_app.windows import WINDOW_SUMMARY_SCHEMA, WindowSummary
from tests.e2e.support import Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

WINDOW_S = 60.0
SIZE = int(WINDOW_S * 1000)
PARTITIONS = 4
TENANTS = [f"restore-{i:03d}" for i in range(60)]


def _send(settings: Settings, reports: list[UsageReport]) -> int:
    codec = AvroCodec(registry_client(settings.registry_url), USAGE_SCHEMA, settings.usage_topic)
    producer = Producer(client_settings(settings.bootstrap))
    for batch in batch_reports(reports, PARTITIONS):
        producer.produce(
            settings.usage_topic,
            codec.encode(batch.to_record()),
            batch.key,
            partition=batch.usage_partition,
            timestamp=batch.interval_end - 1,
        )
    assert producer.flush(10) == 0
    return len(reports)


def _interval(producer: str, end: int, records: int) -> list[UsageReport]:
    return [UsageReport(producer, "orders", t, records, 10 * records, end - 1000, end) for t in TENANTS]


def _usage(worker: Worker) -> dict[str, int]:
    return dict(worker.get("/writer/stats")["usage"])


def _all_committed(settings: Settings) -> bool:
    """The group committed every usage record: a new owner will not read them again."""
    consumer = Consumer(
        client_settings(settings.bootstrap, **{"group.id": settings.app_id, "enable.auto.commit": False})
    )
    try:
        tps = [TopicPartition(settings.usage_topic, p) for p in range(PARTITIONS)]
        committed = consumer.committed(tps, timeout=10)
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def _summaries(settings: Settings, window_start: int) -> list[WindowSummary]:
    codec = AvroCodec(
        registry_client(settings.registry_url),
        WINDOW_SUMMARY_SCHEMA,
        settings.control_topic,
        subject=f"{settings.control_topic}-{WINDOW_SUMMARY_SCHEMA}",
    )
    consumer = Consumer(
        client_settings(settings.bootstrap, **{"group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    )
    found = []
    try:
        # Up to the end as it is now: ticks keep landing on the control topic every second.
        _, end = consumer.get_watermark_offsets(TopicPartition(settings.control_topic, 0), timeout=10)
        consumer.assign([TopicPartition(settings.control_topic, 0, 0)])
        read = 0
        deadline = time.monotonic() + 20
        while read < end and time.monotonic() < deadline:
            for m in consumer.consume(500, 1.0):
                if m.error() is not None:
                    continue
                read = (m.offset() or 0) + 1
                headers = dict(m.headers() or [])
                if headers.get("routing.type") == b"window-summary":
                    summary = WindowSummary.from_record(codec.decode(m.value()))
                    if summary.window_start == window_start:
                        found.append(summary)
    finally:
        consumer.close()
    return found


def _close_window(settings: Settings, window_start: int) -> list[WindowSummary]:
    """A producer past the window's end + grace on every partition closes it by stream time;
    returns its summaries, one per usage partition. Its report is sent once that moment has
    come: workers refuse reports stamped ahead of their clock (by more than the grace)."""
    closing = window_start + SIZE + settings.window_grace_ms + 1
    time.sleep(max(0.0, closing / 1000 - time.time()))
    _send(settings, [UsageReport("p-3", "orders", t, 1, 1, closing - 1000, closing) for t in TENANTS])
    found: list[WindowSummary] = wait_for(
        lambda: (
            (found := _summaries(settings, window_start))
            and len({s.usage_partition for s in found}) == PARTITIONS
            and found
        ),
        timeout=60,
        what="the summaries of the window",
    )
    return found


def _delete_topics(settings: Settings) -> None:
    admin = admin_client(settings.bootstrap)
    mine = [
        t
        for t in admin.list_topics(timeout=10).topics
        if t.startswith((f"{settings.app_id}-", "ur.")) and settings.app_id[3:] in t
    ]
    for future in admin.delete_topics(mine, operation_timeout=30).values():
        future.result(60)


def _scratch_settings(stack_settings: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.replace(
        routes_topic=f"ur.routes.{suffix}",
        events_topic=f"ur.events.{suffix}",
        usage_topic=f"ur.usage.{suffix}",
        control_topic=f"ur.control.{suffix}",
        answers_topic=f"ur.answers.{suffix}",
        app_id=f"ur-{suffix}",
        usage_partitions=PARTITIONS,
        window_s=WINDOW_S,
        window_grace_ms=500,
        window_idle_ms=1000,
        worker_session_timeout_s=6.0,
    )
    ensure_topics(settings.bootstrap, routing_topics(settings))
    return settings


def _window_with_room(seconds: float) -> tuple[int, int]:
    """(now, the start of the window open now) once at least ``seconds`` of it are left."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < seconds:
        time.sleep(left + 0.1)
    now = int(time.time() * 1000)
    return now, now - now % SIZE


def test_window_totals_survive_a_killed_worker_through_the_changelog(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = _scratch_settings(stack_settings)
    # Enough of the window left for a kill, a takeover and the restore (a timer closes it
    # once its end has passed).
    now, window_start = _window_with_room(40)

    first = start_worker(settings, tmp_path / "first")
    second: Worker | None = None
    try:
        sent = _send(settings, _interval("p-1", now, 10) + _interval("p-2", now, 1))
        wait_for(
            lambda: _usage(first)["reports_aggregated"] == sent,
            timeout=30,
            what="the first worker to aggregate the first reports",
        )
        wait_for(lambda: _all_committed(settings), timeout=30, what="the offsets to be committed")
        first.kill()

        second = start_worker(settings, tmp_path / "second")
        wait_for(
            lambda: _usage(second)["windows_restored"] >= PARTITIONS,
            timeout=60,
            what="the second worker to restore the windows of every partition",
        )
        later = int(time.time() * 1000)
        assert later < window_start + SIZE, "the window ended before the takeover finished"
        more = _send(settings, _interval("p-1", later, 5))
        wait_for(
            lambda: _usage(second)["reports_aggregated"] == more,
            timeout=30,
            what="the second worker to aggregate the later reports",
        )
        summaries = _close_window(settings, window_start)
        assert _usage(second)["usage_undecodable"] == 0
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
        _delete_topics(settings)

    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for s in summaries:
        if s.worker_id.endswith(f":{second.process.pid}"):
            for key, value in s.tenants.items():
                assert key not in totals
                totals[key] = value
    assert totals == {("orders", t): (16, 160) for t in TENANTS}, summaries
    assert {p for s in summaries for p in s.producers} == {"p-1", "p-2"}


def test_reports_sent_while_a_second_worker_joins_count_exactly_once(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """faust-streaming 0.15.3 drops records it reads during a rebalance and, for a partition the
    group has not committed yet, never reads them again; records delivered as a rebalance ends
    can be cleared and committed over (faust-streaming#596); and a partition's new owner reads
    again what its old owner had counted. Traffic flows through the join: every report counts
    once (routing_app.app.rebalance, and the offsets kept with the window totals)."""
    settings = _scratch_settings(stack_settings)
    _, window_start = _window_with_room(45)

    # Both start at once: the feed starts when the first is ready, and the second joins while
    # the group has committed nothing yet.
    second = launch_worker(settings, tmp_path / "second")
    first: Worker | None = None
    sent: dict[str, int] = dict.fromkeys(TENANTS, 0)
    try:
        first = start_worker(settings, tmp_path / "first")

        def feed(seconds: float) -> None:
            """An interval from each of two producers every 50 ms, as RoutingProducers would."""
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                end = int(time.time() * 1000)
                _send(settings, _interval("p-1", end, 1) + _interval("p-2", end, 2))
                for t in TENANTS:
                    sent[t] += 3
                time.sleep(0.05)

        # From the first worker's start, through the second one's join (before the group has
        # committed anything), the recovery and the first commits.
        feed(20.0)
        assert second.wait_ready(60), second.log()[-3000:]
        feed(2.0)
        assert int(time.time() * 1000) < window_start + SIZE, "the window ended during the feed"
        summaries = _close_window(settings, window_start)
        assert _usage(first)["usage_undecodable"] == 0
        # The scenario happened: the second worker took usage partitions over.
        assert {s.worker_id.rsplit(":", 1)[1] for s in summaries} == {
            str(first.process.pid),
            str(second.process.pid),
        }
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
        _delete_topics(settings)

    # A partition that moved has a summary from its new owner only (the old one no longer
    # owns it when the window closes).
    totals: dict[str, int] = {}
    owners: dict[int, str] = {}
    for s in summaries:
        assert owners.setdefault(s.usage_partition, s.worker_id) == s.worker_id, summaries
        for (_, tenant), (records, _) in s.tenants.items():
            totals[tenant] = totals.get(tenant, 0) + records
    missing = {t: sent[t] - totals.get(t, 0) for t in TENANTS if totals.get(t, 0) != sent[t]}
    assert not missing, f"tenants whose summed records differ from those sent (sent - summed): {missing}"
