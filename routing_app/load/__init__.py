"""Partition load as the broker sees it: records written per data partition over a window."""

from routing_app.load.offsets import PartitionLoadSampler, committed_offsets, consumer_lag, end_offsets
from routing_app.load.window import WindowRates, rates_from_edge_offsets

__all__ = [
    "PartitionLoadSampler",
    "WindowRates",
    "committed_offsets",
    "consumer_lag",
    "end_offsets",
    "rates_from_edge_offsets",
]
