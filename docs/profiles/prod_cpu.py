"""Issue #15, target 1: where a RoutingProducer's per-record CPU goes, against raw produce().

Run from the checkout (it reads the same settings as the CLI):
    cd "$(git rev-parse --show-toplevel)" && .venv/bin/python docs/profiles/prod_cpu.py --records 1000000 --rounds 3

Same records and librdkafka settings as `routing-app bench producer` (10,000 tenants as keys,
100-byte values, 12 partitions, acks=all, idempotence, linger 5 ms, 128 KiB batches), every
variant end to end (produce every record, then flush). For each round it reports the
process's CPU per record and the CPU of each thread (from /proc/self/task/*/stat), so the
main (sending) thread, the Python poll thread, librdkafka's threads and the route cache can be
told apart. Variants, from the raw bench baseline up to the RoutingProducer:

  raw          the bench's raw side: produce(topic, value, key), librdkafka's murmur2_random,
               a producer-wide delivery callback `if err is not None`, poll() only when full
  raw_part     produce(topic, value, key, parts[key]): one dict lookup + explicit partition
               (the per-record Python floor of any routing producer in Python)
  raw_part_cb  raw_part with RoutingProducer's own delivery callback (SendLedger.on_delivery_report)
  raw_part_cb_poll  raw_part_cb, plus a poll thread like RoutingProducer's (poll(0.05) loop)
  raw_part_cb_burst  what-if: raw_part_cb_poll with a poll thread that serves the reports in
               bursts, poll(0) every 10 ms
  routing      RoutingProducer.produce (the bench's routing side, usage reports on)
  routing_nopoll  what-if: routing with its poll thread standing aside during the loop (reports
               served by flush() in the sending thread, like raw); not a safe configuration

--stub measures the pure-Python cost of the produce() wrappers with librdkafka's produce
replaced by a no-op, no broker involved for the loop itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

from confluent_kafka import Producer

from routing_app.bench.common import Scratch, SilentReporter, tenant_id, write_routes
from routing_app.bench.producer import _librdkafka_settings
from routing_app.client import RoutingProducer
from routing_app.client.ledger import SendLedger
from routing_app.config import load_settings
from routing_app.connection import client_settings
from routing_app.routes import Route

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """tid -> (name, CPU seconds) for every thread of this process."""
    out = {}
    py_names = {t.native_id: t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        t = int(tid)
        name = "main" if t == os.getpid() else py_names.get(t, comm)
        out[t] = (name, cpu)
    return out


def group(name: str) -> str:
    if name == "main":
        return "main (sending)"
    if name.endswith("-poll") or name == "bench-poll":
        return "python poll thread"
    if name.endswith("-routes"):
        return "route cache thread"
    if name.startswith("rdk:"):
        return "librdkafka " + ("broker" if name.startswith("rdk:broker") else name[4:])
    return "other: " + name


PERF_CTL = os.environ.get("PERF_CTL_FIFO")
PERF_ACK = os.environ.get("PERF_ACK_FIFO")


def perf(command: str) -> None:
    """Turns `perf record --control=fifo:CTL,ACK -D -1` on/off around the timed section only."""
    if PERF_CTL:
        with open(PERF_CTL, "w") as f:
            f.write(command + "\n")
        with open(PERF_ACK) as f:
            f.readline()


class Meter:
    """Process CPU, wall and per-thread CPU between start and stop (threads of this round
    only: new threads count from 0, threads that ended are lost, so stop before closing)."""

    def __init__(self) -> None:
        self.t0 = thread_cpu()
        perf("enable")
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self, records: int) -> dict[str, Any]:
        wall, cpu = time.perf_counter() - self.wall0, time.process_time() - self.cpu0
        perf("disable")
        t1 = thread_cpu()
        groups: dict[str, float] = {}
        for tid, (name, c) in t1.items():
            d = c - self.t0.get(tid, (name, 0.0))[1]
            if d > 0:
                g = group(name)
                groups[g] = groups.get(g, 0.0) + d
        return {
            "rps": records / wall,
            "cpu_us": cpu * 1e6 / records,
            "threads_us": {g: round(v * 1e6 / records, 3) for g, v in sorted(groups.items())},
        }


def raw_like(settings, topic, keys, value, warmup, parts, callback, poll_thread):
    failures = []

    def trivial(err, _msg):
        if err is not None:
            failures.append(err)

    ledger = SendLedger(None) if callback == "ledger" else None
    on_delivery = ledger.on_delivery_report if ledger else trivial
    extra = {} if parts is not None else {"partitioner": "murmur2_random"}
    producer = Producer(
        client_settings(settings.kafka, on_delivery=on_delivery, **extra, **_librdkafka_settings(131072, 5))
    )
    produce, poll = producer.produce, producer.poll
    stop = threading.Event()
    full = [0]  # records that met a full local queue

    def poller():
        if poll_thread == "burst":
            # what-if: serve the reports every 10 ms in one go instead of as they arrive
            while not stop.is_set():
                producer.poll(0)
                stop.wait(0.01)
        while not stop.is_set():
            producer.poll(0.05)

    def send_all(batch):
        if parts is None:
            for key in batch:
                try:
                    produce(topic, value, key)
                except BufferError:
                    full[0] += 1
                    while True:
                        poll(0.05)
                        try:
                            produce(topic, value, key)
                            break
                        except BufferError:
                            pass
        else:
            for key in batch:
                try:
                    produce(topic, value, key, parts[key])
                except BufferError:
                    full[0] += 1
                    while True:
                        poll(0.05)
                        try:
                            produce(topic, value, key, parts[key])
                            break
                        except BufferError:
                            pass
        return producer.flush(120)

    assert send_all(warmup) == 0
    thread = None
    if poll_thread:
        thread = threading.Thread(target=poller, name="bench-poll", daemon=True)
        thread.start()
    meter = Meter()
    left = send_all(keys)
    result = meter.stop(len(keys))
    result["queue_full_records"] = full[0]
    stop.set()
    if thread:
        thread.join()
    assert left == 0 and not failures
    return result


def routing(settings, topic, routes_topic, usage_topic, keys, value, warmup, profiler=None, poll_thread_serves=True):
    """poll_thread_serves=False (variant routing_nopoll, a what-if): the sending thread marks
    itself as serving delivery reports (Poller.serving) for the whole loop, so the poll thread
    stops calling poll() and every report is served by flush() in the sending thread, as the
    raw baseline does."""
    import contextlib
    producer = RoutingProducer(
        {
            "bootstrap.servers": settings.bootstrap,
            "schema.registry.url": settings.registry_url,
            "routing.routes.topic": routes_topic,
            "routing.usage.topic": usage_topic,
            "routing.usage.interval.ms": int(settings.usage_interval_s * 1000),
            "logger": client_settings(settings.bootstrap)["logger"],
            **_librdkafka_settings(131072, 5),
        }
    )
    try:
        producer.wait_ready(120)
        produce = producer.produce
        for key in warmup:
            produce(topic, value, key)
        assert producer.flush(120) == 0
        general = producer._send_general  # the path a record takes after a BufferError
        full = [0]

        def counted(*a, **k):
            full[0] += 1
            return general(*a, **k)

        producer._send_general = counted
        serving = contextlib.nullcontext() if poll_thread_serves else producer._parts.poller.serving()
        meter = Meter()
        if profiler is not None:
            profiler.start()
        with serving:
            for key in keys:
                produce(topic, value, key)
        left = producer.flush(120)
        if profiler is not None:
            profiler.stop()
        result = meter.stop(len(keys))
        result["queue_full_records"] = full[0]
        counters = producer.counters
    finally:
        producer.close()
    assert left == 0 and counters["delivery_failed"] == 0
    assert counters["routed"] == len(keys) + len(warmup), counters
    return result


def stub(keys, value, routing_producer_cls) -> dict[str, float]:
    """ns per record of the Python around produce(), with librdkafka's produce a no-op."""
    from routing_app.client.memo import MemoCell

    topic = "t"
    parts = {k: i % 12 for i, k in enumerate(dict.fromkeys(keys))}

    def noop(topic, value, key, partition=None):
        return None

    def loop_noop3():
        for key in keys:
            noop(topic, value, key)

    def loop_noop_part():
        for key in keys:
            noop(topic, value, key, parts[key])

    # A RoutingProducer frame without a Kafka client: its fields, as the hot path reads them.
    rp = object.__new__(routing_producer_cls)
    lock = threading.Lock()
    rp._lock_acquire, rp._lock_release = lock.acquire, lock.release
    rp._cells = {topic: {k: MemoCell(0, p, "routed", k.decode()) for k, p in parts.items()}}
    rp._produce = noop
    rp._plain = True
    rp._closed = False
    produce = rp.produce

    def loop_routing():
        for key in keys:
            produce(topic, value, key)

    def loop_lock_only():
        acq, rel = lock.acquire, lock.release
        for key in keys:
            acq()
            try:
                noop(topic, value, key, parts[key])
            finally:
                rel()

    out = {}
    for name, fn in (
        ("noop(topic,value,key)", loop_noop3),
        ("noop(topic,value,key,parts[key])", loop_noop_part),
        ("same + send lock acquire/release", loop_lock_only),
        ("RoutingProducer.produce -> noop", loop_routing),
    ):
        best = []
        for _ in range(5):
            t0 = time.thread_time()
            fn()
            best.append(time.thread_time() - t0)
        out[name] = round(min(best) * 1e9 / len(keys), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--only", default="raw,raw_part,raw_part_cb,raw_part_cb_poll,routing")
    ap.add_argument("--pyinstrument", default="", help="write a pyinstrument profile of one routing round here")
    ap.add_argument("--stub", action="store_true")
    args = ap.parse_args()
    settings = load_settings()
    value = os.urandom(100)
    names = [tenant_id(i) for i in range(args.tenants)]
    keys = [names[i % args.tenants].encode() for i in range(args.records)]
    warmup = keys[:1000]
    partitions = 12
    parts = {n.encode(): i % partitions for i, n in enumerate(names)}
    if args.stub:
        print(json.dumps({"stub_ns_per_record": stub(keys, value, RoutingProducer)}))
        return
    kinds = args.only.split(",")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with Scratch(settings, SilentReporter()) as scratch:
        topic = scratch.topic("data", partitions)
        routes_topic = scratch.routes_topic()
        usage_topic = scratch.usage_topic()
        now_ms = int(time.time() * 1000)
        write_routes(
            settings,
            routes_topic,
            (Route(topic, n, (i % partitions,), 1, updated_at_ms=now_ms, decided_by="bench") for i, n in enumerate(names)),
            args.tenants,
            SilentReporter(),
            "routes",
        )
        for r in range(args.rounds):
            for kind in kinds:
                if kind.startswith("routing"):
                    res = routing(settings, topic, routes_topic, usage_topic, keys, value, warmup,
                                  poll_thread_serves=kind == "routing")
                else:
                    res = raw_like(
                        settings,
                        topic,
                        keys,
                        value,
                        warmup,
                        None if kind == "raw" else parts,
                        "ledger" if kind.startswith("raw_part_cb") else "trivial",
                        "burst" if kind == "raw_part_cb_burst" else kind == "raw_part_cb_poll",
                    )
                results[kind].append(res)
                print(f"round {r + 1} {kind:>17}: {res['rps']:>10,.0f} rec/s {res['cpu_us']:.3f} us CPU/rec  {res['threads_us']} queue-full {res['queue_full_records']}", file=sys.stderr, flush=True)
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            routing(settings, topic, routes_topic, usage_topic, keys, value, warmup, profiler)
            with open(args.pyinstrument, "w") as f:
                f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    summary = {}
    for kind, rs in results.items():
        groups = sorted({g for r in rs for g in r["threads_us"]})
        summary[kind] = {
            "cpu_us_median": round(statistics.median(r["cpu_us"] for r in rs), 3),
            "cpu_us_rounds": [round(r["cpu_us"], 3) for r in rs],
            "rps_rounds": [round(r["rps"]) for r in rs],
            "queue_full_records": [r["queue_full_records"] for r in rs],
            "threads_us_median": {g: round(statistics.median(r["threads_us"].get(g, 0.0) for r in rs), 3) for g in groups},
        }
    print(json.dumps({"records": args.records, "rounds": args.rounds, "results": summary}))


if __name__ == "__main__":
    main()
