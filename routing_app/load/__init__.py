"""Partition load as the broker sees it: end-offset growth per data partition."""

from routing_app.load.offsets import PartitionLoadSampler, committed_offsets, consumer_lag, end_offsets

__all__ = ["PartitionLoadSampler", "committed_offsets", "consumer_lag", "end_offsets"]
