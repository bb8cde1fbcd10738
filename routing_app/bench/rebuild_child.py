"""The measured side of ``bench rebuild``, run in a fresh interpreter so its memory is its own.

``python -m routing_app.bench.rebuild_child '<json>'`` with ``mode`` one of:

- ``cache``: a RouteCache, start() to wait_ready() (seconds), then to wait_settled()
  (settled_seconds: every kept record decoded); routes held, VmHWM growth at both.
- ``consume``: the baseline: the same consumer settings reading the same records, no decoding.
- ``profile``: cProfile of a real RouteCache's thread, then the per-route cost of each stage
  (consume, key parse, Avro decode and Route construction by fastavro, the same by the fast
  reader the cache uses, dict insert) timed one by one.

Prints one JSON line on stdout.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from routing_app.client.cache import RouteCache
from routing_app.client.consumer_config import cache_consumer_config
from routing_app.codec import registry_client
from routing_app.routes import Route, RouteCodec
from routing_app.routes.model import parse_route_key
from routing_app.routes.wire import RouteReader


def _kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _consumer(bootstrap: str, extra: dict[str, Any]) -> Consumer:
    # Exactly what RouteCache gives its consumer (extra: the what-if settings, as for the cache).
    # (Until issue #15 this list was copied here and lacked the cache's fetch.queue.backoff.ms
    # and queued.min.messages: librdkafka's defaults paused the baseline's fetcher a second
    # every 100k records, ~5 s of its ~6 s for a million routes.)
    return Consumer(cache_consumer_config({"bootstrap.servers": bootstrap, **extra}))


def _read_all(
    bootstrap: str, topic: str, keep: bool, extra: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Reads the partition to the end offset seen at start, like the cache's ready condition."""
    consumer = _consumer(bootstrap, extra)
    kept: list[tuple[bytes, bytes]] = []
    count = 0
    try:
        tp = TopicPartition(topic, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10.0)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        position = 0
        while position < high:
            for message in consumer.consume(num_messages=10_000, timeout=0.1):
                error = message.error()
                offset = message.offset()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and offset is not None:
                        position = max(position, offset)
                    continue
                key, value = message.key(), message.value()
                position = (offset or 0) + 1
                count += 1
                if keep and key is not None and value is not None:
                    kept.append((key, value))
    finally:
        consumer.close()
    return count, kept


def measure_cache(
    bootstrap: str, registry_url: str, topic: str, timeout: float, extra: dict[str, Any]
) -> dict[str, Any]:
    codec = RouteCodec(registry_client(registry_url), topic)
    gc.collect()
    baseline_kb = _kb("VmRSS")
    cache = RouteCache({"bootstrap.servers": bootstrap, **extra}, codec, topic, name="bench-rebuild")
    started = time.perf_counter()
    cache.start()
    ready = cache.wait_ready(timeout)
    seconds = time.perf_counter() - started
    ready_peak_kb = _kb("VmHWM")
    undecoded = cache.stats().undecoded
    # Then the rest of the work a rebuild makes: decoding what was kept as bytes (settling).
    settled = cache.wait_settled(timeout)
    settled_seconds = time.perf_counter() - started
    peak_kb, after_kb = _kb("VmHWM"), _kb("VmRSS")
    stats = cache.stats()
    cache.stop()
    return {
        "ready": ready,
        "seconds": seconds,
        "settled": settled,
        "settled_seconds": settled_seconds,
        "undecoded_at_ready": undecoded,
        "ready_peak_kb": ready_peak_kb,
        "cache_routes": stats.routes,
        "records_read": stats.position,
        "undecodable": stats.undecodable,
        "baseline_kb": baseline_kb,
        "peak_kb": peak_kb,
        "after_kb": after_kb,
    }


def measure_consume(bootstrap: str, topic: str, extra: dict[str, Any]) -> dict[str, Any]:
    gc.collect()
    baseline_kb = _kb("VmRSS")
    started = time.perf_counter()
    count, _ = _read_all(bootstrap, topic, False, extra)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "records_read": count,
        "baseline_kb": baseline_kb,
        "peak_kb": _kb("VmHWM"),
        "after_kb": _kb("VmRSS"),
    }


def _timed(label: str, results: dict[str, float], fn: Any, *args: Any) -> Any:
    started = time.perf_counter()
    out = fn(*args)
    results[label] = time.perf_counter() - started
    return out


def profile(
    bootstrap: str, registry_url: str, topic: str, timeout: float, top: int, extra: dict[str, Any]
) -> dict[str, Any]:
    profiled_seconds, cprofile = _profile_cache_thread(bootstrap, registry_url, topic, timeout, top, extra)
    gc.collect()
    n, t = _time_stages(bootstrap, registry_url, topic, extra)
    per_route = {label: seconds / n * 1e6 for label, seconds in t.items()}
    return {
        "records": n,
        "profiled_seconds": profiled_seconds,
        "stage_seconds": t,
        "us_per_route": per_route,
        "cprofile": cprofile,
    }


def _profile_cache_thread(
    bootstrap: str, registry_url: str, topic: str, timeout: float, top: int, extra: dict[str, Any]
) -> tuple[float, str]:
    """cProfile of the real cache thread (its _run wrapped on the instance, library untouched):
    seconds from start() to settled, and the ``top`` functions by own time."""
    codec = RouteCodec(registry_client(registry_url), topic)
    cache = RouteCache({"bootstrap.servers": bootstrap, **extra}, codec, topic, name="bench-profile")
    profiler = cProfile.Profile()
    run = cache._run
    setattr(cache, "_run", lambda: profiler.runcall(run))  # noqa: B010 (instance override)
    started = time.perf_counter()
    cache.start()
    cache.wait_settled(timeout)  # the whole rebuild: reading, then decoding what was kept
    profiled_seconds = time.perf_counter() - started
    cache.stop()
    del cache
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return profiled_seconds, text.getvalue()


def _time_stages(
    bootstrap: str, registry_url: str, topic: str, extra: dict[str, Any]
) -> tuple[int, dict[str, float]]:
    """Each stage alone, over the same records held in memory: (records, seconds per stage)."""
    t: dict[str, float] = {}
    _, records = _timed("consume", t, _read_all, bootstrap, topic, True, extra)
    n = len(records)
    codec = RouteCodec(registry_client(registry_url), topic)
    decode_value = codec.values.decode
    decode_value(records[0][1])  # fetch the writer schema from the registry outside the clock
    fresh = RouteCache({"bootstrap.servers": bootstrap}, codec, topic, name="bench-apply")
    batches = [
        [
            Message(topic=topic, partition=0, offset=offset, key=key, value=value)
            for offset, (key, value) in enumerate(records[start : start + 10_000], start)
        ]
        for start in range(0, n, 10_000)
    ]
    gc.collect()
    gc.disable()  # as the cache does while it catches up
    try:
        # The functions each stage calls are bound here, so no stage pays for attribute lookups.
        _timed("key_parse", t, _parse_keys, records)
        _timed("avro_decode", t, _decode_values, records, decode_value)
        _timed("avro_decode+route", t, _decode_routes, records, decode_value, Route.from_record)
        _timed("fast_read", t, _fast_reads, records, RouteReader().read)
        _timed("codec_decode", t, _decode_records, records, codec.decode)
        # The cache's own loop over the consumer's batches (what catching up runs).
        _timed("apply", t, _handle_batches, batches, fresh._handle)
        # What a rebuild runs instead: records kept as bytes until ready, then checked.
        kept = RouteCache({"bootstrap.servers": bootstrap}, codec, topic, name="bench-keep")
        kept._counts = dict(fresh._counts)  # no consumer to ask: what the first cache learnt
        kept.keeps_bytes = True
        _timed("keep", t, _handle_batches, batches, kept._keep)
        kept._ready.set()
        _timed("settle", t, kept.settle)
    finally:
        gc.enable()
    if len(fresh) != n or len(kept) != n:
        raise AssertionError(
            f"apply built {len(fresh)} routes, keep and settle {len(kept)}, from {n} records"
        )
    return n, t


def _parse_keys(records: list[tuple[bytes, bytes]]) -> None:
    for key, _ in records:
        parse_route_key(key)


def _decode_values(records: list[tuple[bytes, bytes]], decode_value: Callable[[bytes], Any]) -> None:
    for _, value in records:
        decode_value(value)


def _decode_routes(
    records: list[tuple[bytes, bytes]],
    decode_value: Callable[[bytes], Any],
    from_record: Callable[[Any], Route],
) -> None:
    for _, value in records:
        from_record(decode_value(value))


def _fast_reads(
    records: list[tuple[bytes, bytes]], read: Callable[[bytes, str, str, bytes], Route | None]
) -> None:
    """What RouteCodec.decode does with a value of the schema the cache knows: key to Route."""
    for key, value in records:
        topic, _, tenant = key.decode("utf-8").partition("/")
        if read(value, topic, tenant, key[len(topic) + 1 :]) is None:
            raise AssertionError(f"the fast reader left {key!r} to fastavro")


def _decode_records(records: list[tuple[bytes, bytes]], decode: Callable[[bytes, bytes], Any]) -> None:
    for key, value in records:
        decode(key, value)


def _handle_batches(batches: list[list[Message]], handle: Callable[[list[Message]], None]) -> None:
    for batch in batches:
        handle(batch)


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    mode = args["mode"]
    extra: dict[str, Any] = args.get("consumer_config") or {}
    if mode == "cache":
        out = measure_cache(args["bootstrap"], args["registry_url"], args["topic"], args["timeout"], extra)
    elif mode == "consume":
        out = measure_consume(args["bootstrap"], args["topic"], extra)
    elif mode == "profile":
        out = profile(
            args["bootstrap"],
            args["registry_url"],
            args["topic"],
            args["timeout"],
            args.get("top", 25),
            extra,
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
