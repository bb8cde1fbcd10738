"""Partition load as the broker sees it: end-offset growth per data partition."""

from routing_app.load.offsets import PartitionLoadSampler

__all__ = ["PartitionLoadSampler"]
