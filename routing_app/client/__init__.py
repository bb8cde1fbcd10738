"""The routing producer and its route cache."""

from routing_app.client.cache import RouteCache
from routing_app.client.partitioner import RoutingPath, choose_partition, java_partition
from routing_app.client.producer import (
    ConfigurationError,
    PartitionOutOfRange,
    ProduceTimeout,
    RecordMetadata,
    RoutingProducer,
    RoutingProducerError,
    UnknownTopicError,
)

__all__ = [
    "ConfigurationError",
    "PartitionOutOfRange",
    "ProduceTimeout",
    "RecordMetadata",
    "RouteCache",
    "RoutingPath",
    "RoutingProducer",
    "RoutingProducerError",
    "UnknownTopicError",
    "choose_partition",
    "java_partition",
]
