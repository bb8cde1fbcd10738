"""Kafka admin connections with errors a person can act on, and librdkafka's logs in ``logging``."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

librdkafka_log = logging.getLogger("routing_app.librdkafka")


class KafkaUnreachable(ConnectionError):
    pass


def client_settings(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Settings for our own short-lived clients: librdkafka logs go to Python logging, not stderr."""
    return {"bootstrap.servers": bootstrap, "logger": librdkafka_log, **extra}


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient(client_settings(bootstrap))


def cluster_metadata(admin: AdminClient, bootstrap: str, timeout: float = 10.0) -> ClusterMetadata:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnreachable(
            f"cannot reach Kafka at {bootstrap} within {timeout:g}s ({exc.args[0].str()}); "
            f"start the local stack with `routing-app stack up`, or set ROUTING_BOOTSTRAP_SERVERS"
        ) from exc
