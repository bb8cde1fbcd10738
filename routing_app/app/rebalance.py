"""A guard around faust-streaming's end of a rebalance, which can otherwise lose records.

faust-streaming 0.15.3 (the newest release; faust-streaming#596 is open) resumes the stream
partitions in ``Recovery.on_recovery_completed`` while the flow of records is already on, then
seeks them to their committed offsets, then clears the agents' queues. Records fetched in
between reach an agent's queue, are cleared without an ack, and the consumer's gap bookkeeping
later commits past them: a usage report sent while a worker joins or leaves is never counted.
"""

from __future__ import annotations

from typing import Any

import faust


def hold_flow_until_seek(app: faust.App) -> None:
    """Stops the flow of records when recovery ends, before faust resumes the partitions:
    ``on_recovery_completed`` starts it again itself, after the seek and the queue clearing, so
    the agents start from the committed offsets. Records read again are the usage agent's to
    skip (its totals keep the offset of the last record they hold)."""

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode types the receiver too narrowly
    async def _stop_flow_until_seek(sender: faust.App, **_: Any) -> None:
        sender.consumer.stop_flow()
        sender.flow_control.suspend()
