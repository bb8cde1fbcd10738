"""Consumer settings derived from a producer's: the ones every consumer of the client shares
(cache, hello, metrics), and the route cache's own on top.

Apart from the cache because the hello and the metrics consumer need the shared part without
the cache, and ``bench rebuild`` gives its consume-only baseline exactly the cache's settings.
"""

from __future__ import annotations

from typing import Any

from routing_app.connection import CACHE_GROUP_PREFIX, reader_group

# Settings a consumer shares with the producer it serves: where the cluster is and how to talk to it.
_SHARED_PREFIXES = (
    "bootstrap.servers",
    "security.",
    "sasl.",
    "ssl.",
    "client.",
    "socket.",
    "broker.",
    "metadata.",
    "api.version",
    "reconnect.",
    "retry.backoff",
    "connections.",
    "log_level",
    "debug",
    "resolve.",
    "client.dns",
)


def consumer_settings_from(producer_conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in producer_conf.items() if k.startswith(_SHARED_PREFIXES)}


def cache_consumer_config(consumer_conf: dict[str, Any]) -> dict[str, Any]:
    """What a RouteCache gives its consumer: ``consumer_conf`` and the cache's own settings
    (``bench rebuild`` gives its consume-only baseline the same)."""
    return {
        **consumer_conf,
        # Never committed: every cache starts from the beginning of the routes topic.
        "group.id": reader_group(CACHE_GROUP_PREFIX),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        "fetch.error.backoff.ms": 50,
        # With the default (1000 ms) the fetcher pauses a whole second whenever the local
        # queue passes queued.min.messages, which a rebuild does every 100k routes, and the
        # cache thread then idles with nothing to decode.
        "fetch.queue.backoff.ms": 10,
        # Prefetching 100k records (the default) holds ~40 MB more at the peak of a
        # rebuild; 20k, two fetches' worth, keeps the decoder as busy.
        "queued.min.messages": 20_000,
    }
