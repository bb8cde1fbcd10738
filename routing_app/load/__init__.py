"""Partition load as the broker sees it: end-offset growth per data partition."""

from routing_app.load.offsets import PartitionLoadSampler, consumer_lag

__all__ = ["PartitionLoadSampler", "consumer_lag"]
