"""The errors the routing producer raises itself (librdkafka's own stay KafkaException)."""

from __future__ import annotations


class RoutingProducerError(Exception):
    """Base of the errors this client raises itself."""


class ConfigurationError(RoutingProducerError, ValueError):
    pass


class UnknownTopicError(RoutingProducerError):
    pass


class PartitionOutOfRange(RoutingProducerError, ValueError):
    pass


class ProduceTimeout(RoutingProducerError, TimeoutError):
    pass


class HoldTimeout(ProduceTimeout):
    """A draining tenant's held records reached routing.hold.max.records for max.block.ms."""


class RoutesNotReady(ProduceTimeout):
    """The route cache had not read the routes topic within routing.max.block.ms: a keyed
    record would have been placed without knowing its tenant's route."""
