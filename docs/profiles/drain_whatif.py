"""Issue #15, target 3: `bench drain` with every drain's pause split into the producers' part
(answered_ms) and the rest, and a what-if on the lag group's cadence.

    cd "$(git rev-parse --show-toplevel)" && .venv/bin/python docs/profiles/drain_whatif.py --commit-ms 100 --consume-s 0.1
    cd "$(git rev-parse --show-toplevel)" && .venv/bin/python docs/profiles/drain_whatif.py --commit-ms 20 --consume-s 0.02

Runs routing_app.bench.drain.run_drain unchanged except, in this process only:
- the checker (the lag group the writer waits for) commits every --commit-ms
  (the bench: auto.commit.interval.ms=100) and returns from consume() after --consume-s
  (the bench: consume(500, 0.1), i.e. every 100 ms at 1,500 records/s);
- the events are read once more to keep each drain's (pause_ms, answered_ms) pair.
Prints one JSON line: the bench's figures plus "drains": [[tenant, pause_ms, answered_ms], ...].
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

import routing_app.bench.drain_figures as figures
import routing_app.bench.drain_traffic as traffic_mod
from routing_app.bench.drain import run_drain
from routing_app.codec import AvroCodec, DecodeError, registry_client
from routing_app.config import load_settings
from routing_app.connection import client_settings
from routing_app.routes.events import EVENT_SCHEMA, ReassignmentEvent

PAIRS: list[list] = []


def patched_consume(commit_ms: int, consume_s: float):
    def _consume(self) -> None:
        consumer = Consumer(
            client_settings(
                self._s.kafka,
                **{
                    "group.id": self._group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": True,
                    "auto.commit.interval.ms": commit_ms,
                    "isolation.level": "read_committed",
                },
            )
        )
        consumer.subscribe([self._data])
        try:
            while not self._stop.is_set() or self.checker.received < self.produced:
                for message in consumer.consume(500, consume_s):
                    value = message.value()
                    if message.error() is None and value:
                        self.checker.check(value)
                if self._stop.is_set() and time.monotonic() > self._stop_deadline:
                    return
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            consumer.close()

    return _consume


original_pauses = figures._pauses


def pauses_with_pairs(s, tenants, timeouts=None, answered=None):
    if answered is not None and not PAIRS:  # once: the call that has every drain
        codec = AvroCodec(registry_client(s.registry_config()), EVENT_SCHEMA, s.events_topic)
        consumer = Consumer(client_settings(s.kafka, **{"group.id": f"pairs-{uuid.uuid4()}", "enable.auto.commit": False}))
        try:
            tp = TopicPartition(s.events_topic, 0)
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            consumer.assign([TopicPartition(s.events_topic, 0, 0)])
            position = 0
            while position < high:
                for m in consumer.consume(500, 1.0):
                    if m.error() is not None:
                        continue
                    position = (m.offset() or 0) + 1
                    try:
                        e = ReassignmentEvent.from_record(codec.decode(m.value()))
                    except (DecodeError, KeyError, ValueError):
                        continue
                    if e.action.startswith("drain-"):
                        PAIRS.append([e.tenant, e.action, e.observed.get("pause_ms"), e.observed.get("answered_ms")])
        finally:
            consumer.close()
    return original_pauses(s, tenants, timeouts, answered)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit-ms", type=int, default=100)
    ap.add_argument("--consume-s", type=float, default=0.1)
    args = ap.parse_args()
    traffic_mod.Traffic._consume = patched_consume(args.commit_ms, args.consume_s)
    figures._pauses = pauses_with_pairs
    load_before = open("/proc/loadavg").read().split()[:3]
    out = run_drain(load_settings())
    out.pop("pauses_ms", None)
    out.pop("pauses_ms_live_producers", None)
    live = [p for p in PAIRS if p[3] is not None and p[2] is not None and p[2] < 5000]
    rest = [p[2] - p[3] for p in live]
    out["checker_commit_ms"] = args.commit_ms
    out["checker_consume_timeout_s"] = args.consume_s
    out["load_before"] = load_before
    out["load_after"] = open("/proc/loadavg").read().split()[:3]
    out["after_answered_p50_ms"] = round(statistics.median(rest), 1) if rest else None
    out["drains"] = PAIRS
    print(json.dumps(out))


if __name__ == "__main__":
    main()
