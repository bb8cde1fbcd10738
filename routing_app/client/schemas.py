"""The schemas the producer's poll thread encodes with, resolved off that thread."""

from __future__ import annotations

import logging
import threading
import time

from routing_app.codec import AvroCodec, RegistryUnavailable

log = logging.getLogger(__name__)


def resolve_schemas(
    pending: list[tuple[AvroCodec, bool]], stop: threading.Event, producer_id: str, registry_url: str | None
) -> None:
    """Schema thread: registers (True) or looks up (False) each codec's schema, retrying while
    the registry is down; logs the outage once and its end.

    Not on the poll thread: a registry call blocks for seconds when it is down (~7 s with the
    client's retries), and the poll thread serves delivery reports and drain acks. Until they
    are resolved, drain acks and usage reports wait; nothing else does."""
    delay, failed_at = 0.5, None
    while pending and not stop.is_set():
        codec, register = pending[0]
        try:
            if register:
                codec.schema_id  # noqa: B018 (registers it)
            else:
                codec.prefetch()
        except RegistryUnavailable as exc:
            if failed_at is None:
                failed_at = time.monotonic()
                log.warning(
                    "%s: schema registry at %s unreachable (%s); drain acks and "
                    "usage reports wait for it, records do not",
                    producer_id,
                    registry_url,
                    exc,
                )
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
            continue
        pending.pop(0)
    if failed_at is not None and not pending:
        log.warning(
            "%s: schema registry at %s reachable again after %.1f s",
            producer_id,
            registry_url,
            time.monotonic() - failed_at,
        )
