"""Issue #15, target 2: CPU seconds of a 1M-route rebuild against consume-only, and the Python
floor of the cache's per-record loop.

    cd "$(git rev-parse --show-toplevel)" && .venv/bin/python docs/profiles/rebuild_cpu.py --routes 1000000 --rounds 2

Writes N routes exactly as `routing-app bench rebuild` does (scratch compacted topic, one
partition), then per round runs the bench's own child processes (routing_app.bench.rebuild_child,
modes consume and cache) and reads each child's CPU (user+sys, all threads) from wait4's
rusage. Then, in this process, over the same records held in memory as confluent_kafka
Messages (batches of 10,000, as consume() returns them), times loops that do a growing part of
what RouteCache._handle does, to show the floor of any per-record Python loop:

  F0 accessors     error(), offset(), key(), value() of each Message
  F1 + dict insert F0 + routes[key] = value
  F2 + key split   F0 + key.decode().partition("/") + routes[tenant] = value
  F3 + 11-slot obj F2 + one 11-slot object (a Route's size) per record, then inserted
  real _handle     RouteCache._handle on a fresh cache (fast reader, validation, epoch checks)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

from confluent_kafka import Message

from routing_app.bench.common import Scratch, SilentReporter, write_routes
from routing_app.bench.rebuild_child import _read_all
from routing_app.client.cache import RouteCache
from routing_app.codec import registry_client
from routing_app.config import load_settings
from routing_app.routes import Route, RouteCodec


def child(settings, mode: str, topic: str) -> dict:
    args = {"mode": mode, "bootstrap": settings.bootstrap, "registry_url": settings.registry_url, "topic": topic, "timeout": 600}
    proc = subprocess.Popen(
        [sys.executable, "-m", "routing_app.bench.rebuild_child", json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(proc.stderr.read())
    res = json.loads(out.strip().splitlines()[-1])
    res["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    res["process_wall_s"] = wall
    return res


class Slots11:
    __slots__ = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k")

    def __init__(self, a, b, c, d, e, f, g, h, i, j, k):
        self.a = a
        self.b = b
        self.c = c
        self.d = d
        self.e = e
        self.f = f
        self.g = g
        self.h = h
        self.i = i
        self.j = j
        self.k = k


def f0(batches):
    for batch in batches:
        for m in batch:
            m.error()
            m.offset()
            m.key()
            m.value()


def f1(batches):
    routes = {}
    for batch in batches:
        for m in batch:
            m.error()
            m.offset()
            key, value = m.key(), m.value()
            routes[key] = value
    return routes


def f2(batches):
    routes = {}
    for batch in batches:
        for m in batch:
            m.error()
            m.offset()
            key, value = m.key(), m.value()
            topic, _, tenant = key.decode("utf-8").partition("/")
            routes[tenant] = value
    return routes


def f3(batches):
    routes = {}
    for batch in batches:
        for m in batch:
            m.error()
            m.offset()
            key, value = m.key(), m.value()
            topic, _, tenant = key.decode("utf-8").partition("/")
            routes[tenant] = Slots11(topic, tenant, value, 1, 0, 0, "", 0, (), "", None)
    return routes


def floors(settings, topic: str) -> dict:
    _, records = _read_all(settings.bootstrap, topic, True, {})
    n = len(records)
    batches = [
        [Message(topic=topic, partition=0, offset=o, key=k, value=v) for o, (k, v) in enumerate(records[s : s + 10_000], s)]
        for s in range(0, n, 10_000)
    ]
    codec = RouteCodec(registry_client(settings.registry_url), topic)
    codec.values.decode(records[0][1])  # the writer schema, off the clock
    out = {}
    for name, fn in (("F0 accessors", f0), ("F1 + dict insert", f1), ("F2 + key split", f2), ("F3 + 11-slot object", f3)):
        best = float("inf")
        for _ in range(3):
            gc.collect()
            gc.disable()
            t0 = time.thread_time()
            kept = fn(batches)
            best = min(best, time.thread_time() - t0)
            del kept
            gc.enable()
        out[name] = round(best * 1e6 / n, 3)
    best = float("inf")
    for _ in range(3):
        cache = RouteCache({"bootstrap.servers": settings.bootstrap}, codec, topic, name="floor")
        gc.collect()
        gc.disable()
        t0 = time.thread_time()
        for batch in batches:
            cache._handle(batch)
        best = min(best, time.thread_time() - t0)
        gc.enable()
        assert len(cache) == n
        del cache
    out["real RouteCache._handle"] = round(best * 1e6 / n, 3)
    return {"records": n, "us_per_record_thread_cpu": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    settings = load_settings()
    result = {"routes": args.routes, "rounds": []}
    with Scratch(settings, SilentReporter()) as scratch:
        topic = scratch.routes_topic()
        now_ms = int(time.time() * 1000)
        write_routes(
            settings,
            topic,
            (Route(f"bench.data.{scratch.suffix}", f"tenant-{i:07d}", (i % 12,), 1, updated_at_ms=now_ms, decided_by="bench") for i in range(args.routes)),
            args.routes,
            SilentReporter(),
            "routes",
        )
        for r in range(args.rounds):
            base = child(settings, "consume", topic)
            cache = child(settings, "cache", topic)
            row = {
                "uptime": open("/proc/loadavg").read().split()[:3],
                "consume_s": round(base["seconds"], 3),
                "consume_process_cpu_s": round(base["process_cpu_s"], 3),
                "cache_s": round(cache["seconds"], 3),
                "cache_process_cpu_s": round(cache["process_cpu_s"], 3),
                "cache_peak_rss_mb": round(cache["peak_kb"] / 1024, 1),
                "cache_rss_growth_mb": round((cache["peak_kb"] - cache["baseline_kb"]) / 1024, 1),
            }
            result["rounds"].append(row)
            print(f"round {r + 1}: {row}", file=sys.stderr, flush=True)
        result["floor"] = floors(settings, topic)
        print(f"floor: {result['floor']}", file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
