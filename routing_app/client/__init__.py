"""The routing producer and its route cache."""

from routing_app.client.cache import RouteCache
from routing_app.client.errors import (
    ConfigurationError,
    HoldTimeout,
    PartitionOutOfRange,
    ProduceTimeout,
    RoutesNotReady,
    RoutingProducerError,
    UnknownTopicError,
)
from routing_app.client.partitioner import RoutingPath, choose_partition, java_partition
from routing_app.client.producer import RoutingProducer
from routing_app.client.records import ProduceOptions, RecordMetadata

__all__ = [
    "ConfigurationError",
    "HoldTimeout",
    "PartitionOutOfRange",
    "ProduceOptions",
    "ProduceTimeout",
    "RecordMetadata",
    "RouteCache",
    "RoutesNotReady",
    "RoutingPath",
    "RoutingProducer",
    "RoutingProducerError",
    "UnknownTopicError",
    "choose_partition",
    "java_partition",
]
