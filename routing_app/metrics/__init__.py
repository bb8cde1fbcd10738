"""Prometheus metrics (text format) for workers and routing producers.

- ``WorkerCollector``: the worker's decisions, planner, usage windows, partition load and lag,
  route cache; ``routing_app.app.web`` registers it beside Faust's own Prometheus sensor.
- ``ProducerMetrics`` / ``serve_producer_metrics``: a RoutingProducer's records by path, its
  other counters, its route cache and that cache's lag behind the routes topic.
"""

from routing_app.metrics.producer import (
    ProducerMetrics,
    RoutesWatermark,
    producer_metrics,
    serve_producer_metrics,
)
from routing_app.metrics.reasons import DecisionTally, event_labels, reason_kind
from routing_app.metrics.worker import WorkerCollector

__all__ = [
    "DecisionTally",
    "ProducerMetrics",
    "RoutesWatermark",
    "WorkerCollector",
    "event_labels",
    "producer_metrics",
    "reason_kind",
    "serve_producer_metrics",
]
