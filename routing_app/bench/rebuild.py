"""``bench rebuild``: how long a fresh RouteCache takes to read N routes, and the memory it needs.

N routes go to a fresh compacted routes topic (values spliced from one RouteCodec encoding, so
writing a million takes seconds). Then, in fresh interpreters so memory is not shared with this
one, rounds alternate the baseline (the cache's consumer settings reading every record without
decoding) and a real RouteCache: start() to wait_ready() (every route can be looked up; the
records are kept as bytes until used), then to wait_settled() (every route decoded by the cache
thread). Reported: median seconds of both, routes/s, and the cache process's peak RSS growth
(VmHWM minus VmRSS before the cache started) at ready and over the whole.
``profile=True`` adds a cProfile of the cache thread and a per-route cost of each stage.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from routing_app.bench.common import Reporter, Scratch, SilentReporter, rounded, write_routes
from routing_app.config import Settings
from routing_app.routes import Route


def _child(settings: Settings, mode: str, topic: str, timeout: float, **extra: Any) -> dict[str, Any]:
    args = {
        "mode": mode,
        "bootstrap": settings.bootstrap,
        "registry_url": settings.registry_url,
        "topic": topic,
        "timeout": timeout,
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-m", "routing_app.bench.rebuild_child", json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rebuild {mode} process failed ({done.returncode}):\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"rebuild {mode} process printed nothing:\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _stage_breakdown(profile: dict[str, Any]) -> dict[str, float]:
    """Microseconds per route of each stage, from the cumulative timings of the child."""
    us = profile["us_per_route"]
    return {
        "consume": rounded(us["consume"]),
        "key_parse": rounded(us["key_parse"]),
        # the general path (any writer schema): fastavro, then a Route from its dict
        "avro_decode": rounded(us["avro_decode"]),
        "route_construction": rounded(us["avro_decode+route"] - us["avro_decode"]),
        # the path the cache takes for values of its own schema (routes/wire.py): both at once
        "fast_reader": rounded(us["fast_read"]),
        # codec.decode = key parse + fast reader (else fastavro + Route) + validation
        "codec_decode_total": rounded(us["codec_decode"]),
        # apply: the cache's _handle over the consumer's batches = Message accessors +
        # codec.decode + epoch and partition-count checks + dict insert
        "dict_insert_and_bookkeeping": rounded(us["apply"] - us["codec_decode"]),
        "apply_total": rounded(us["apply"]),
        "consume_plus_apply": rounded(us["consume"] + us["apply"]),
        # what a rebuild runs: keep each record as bytes until ready (the catch-up loop) ...
        "keep": rounded(us["keep"]),
        # ... then check each once, after ready (decode + rules; plain routes stay bytes)
        "settle": rounded(us["settle"]),
    }


def run_rebuild(
    settings: Settings,
    *,
    routes: int = 1_000_000,
    rounds: int = 1,
    partitions: int = 12,
    profile: bool = False,
    timeout: float = 600.0,
    consumer_config: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """``consumer_config``: what-if librdkafka settings given to the cache (and the baseline)."""
    if routes < 1 or rounds < 1:
        raise ValueError("routes and rounds must be positive")
    say = reporter or SilentReporter()
    conf = dict(consumer_config or {})
    with Scratch(settings, say) as scratch:
        routes_topic = scratch.routes_topic()
        data_topic = f"bench.data.{scratch.suffix}"  # named by the routes; never written
        now_ms = int(time.time() * 1000)
        write_routes(
            settings,
            routes_topic,
            (
                Route(
                    data_topic,
                    f"tenant-{i:07d}",
                    (i % partitions,),
                    1,
                    updated_at_ms=now_ms,
                    decided_by="bench",
                )
                for i in range(routes)
            ),
            routes,
            say,
            f"writing {routes:,} routes",
        )
        caches: list[dict[str, Any]] = []
        baselines: list[dict[str, Any]] = []
        for round_no in range(1, rounds + 1):
            base = _child(settings, "consume", routes_topic, timeout, consumer_config=conf)
            if base["records_read"] != routes:
                raise RuntimeError(f"baseline read {base['records_read']} of {routes} records")
            baselines.append(base)
            say.note(f"round {round_no}/{rounds} consume only: {base['seconds']:.2f} s")
            cache = _child(settings, "cache", routes_topic, timeout, consumer_config=conf)
            if not cache["ready"] or not cache["settled"]:
                raise RuntimeError(f"route cache not ready and settled within {timeout} s")
            caches.append(cache)
            growth = (cache["peak_kb"] - cache["baseline_kb"]) / 1024
            say.note(
                f"round {round_no}/{rounds} route cache:  ready {cache['seconds']:.2f} s, "
                f"settled {cache['settled_seconds']:.2f} s, {cache['cache_routes']:,} routes, "
                f"+{growth:.0f} MB peak RSS"
            )
        profiled: dict[str, Any] | None = None
        if profile:
            say.note("profiling the rebuild (cProfile of the cache thread, then each stage)")
            profiled = _child(settings, "profile", routes_topic, timeout, consumer_config=conf)

    seconds = statistics.median(c["seconds"] for c in caches)
    settled_seconds = statistics.median(c["settled_seconds"] for c in caches)
    base_seconds = statistics.median(b["seconds"] for b in baselines)
    growth_mb = max((c["peak_kb"] - c["baseline_kb"]) / 1024 for c in caches)
    result: dict[str, Any] = {
        "routes": routes,
        # start() to ready: every route can be looked up (records kept as bytes until used)
        "seconds": rounded(seconds),
        # start() to settled: every route decoded, which the cache thread does after ready
        "settled_seconds": rounded(settled_seconds),
        "settled_ratio_vs_consume_only": rounded(settled_seconds / base_seconds),
        "undecoded_at_ready": min(c["undecoded_at_ready"] for c in caches),
        "ready_rss_mb": rounded(max((c["ready_peak_kb"] - c["baseline_kb"]) / 1024 for c in caches), 1),
        "rss_mb": rounded(growth_mb, 1),
        "routes_per_s": rounded(routes / seconds, 1),
        "cache_routes": min(c["cache_routes"] for c in caches),
        "peak_rss_mb": rounded(max(c["peak_kb"] for c in caches) / 1024, 1),
        "baseline_rss_mb": rounded(max(c["baseline_kb"] for c in caches) / 1024, 1),
        "consume_only_seconds": rounded(base_seconds),
        "consume_only_rss_mb": rounded(max((b["peak_kb"] - b["baseline_kb"]) / 1024 for b in baselines), 1),
        "ratio_vs_consume_only": rounded(seconds / base_seconds),
        "rounds": rounds,
    }
    if conf:
        result["consumer_config"] = conf
    if profiled is not None:
        result["us_per_route"] = _stage_breakdown(profiled)
        result["profiled_seconds"] = rounded(profiled["profiled_seconds"])
        result["cprofile"] = profiled["cprofile"]
    return result
