"""A guard around faust-streaming's end of a rebalance, which can otherwise lose records.

faust-streaming 0.15.3 (the newest release; faust-streaming#596 is open) loses records in two
ways when a rebalance ends, both seen here with usage reports sent while a worker joined:

- ``Recovery.on_recovery_completed`` resumes the stream partitions while the flow of records is
  on, then seeks them to their committed offsets, then clears the agents' queues: records
  fetched in between are cleared without an ack, and the consumer's gap bookkeeping later
  commits past them.
- The consumer reads records while the flow is stopped (during the rebalance) and drops them,
  counting on that seek to read them again; but aiokafka's ``seek_to_committed`` does not seek a
  partition without a committed offset (or with offset 0), so on a new group's first partitions
  those records are never read again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import faust
from faust.transport.consumer import Consumer


def hold_flow_until_seek(app: faust.App, topics: Collection[str]) -> None:
    """When recovery ends, stops the flow before faust resumes the partitions
    (``on_recovery_completed`` starts it again itself, after its seek and the queue clearing),
    and seeks the partitions of ``topics`` that have no commit yet to their first offset, as
    ``auto_offset_reset=earliest`` means. Records read again are for the agents to skip."""
    wanted = frozenset(topics)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode types receivers narrowly
    async def _stop_flow_until_seek(sender: faust.App, **_: Any) -> None:
        consumer = cast(Consumer, sender.consumer)
        consumer.stop_flow()
        sender.flow_control.suspend()
        if sender.conf.consumer_auto_offset_reset != "earliest":
            return
        mine = [tp for tp in consumer.assignment() if tp.topic in wanted]
        if not mine:
            return
        committed = await consumer.seek_to_committed()
        fresh = [tp for tp in mine if not committed.get(tp)]
        if fresh:
            earliest = await consumer.earliest_offsets(*fresh)
            await consumer.seek_wait({tp: earliest[tp] for tp in fresh if tp in earliest})
