"""Reading the records sent to the route writer: operators' commands and producers' answers
decoded, a schema registry outage waited out, and poison or a kind on the wrong topic counted,
logged and skipped.

Apart from the writer's core because none of this depends on what a record then does: a record
the writer cannot read is skipped before any rule sees it, and one it must wait for holds the
whole control stream (one partition, in order).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from routing_app.codec import AvroCodec, DecodeError, RegistryUnavailable
from routing_app.config import Settings
from routing_app.control import ControlCommand
from routing_app.routes.drain_ack import DrainAck
from routing_app.routes.messages import MessageKind

log = logging.getLogger(__name__)


class RecordReader:
    def __init__(
        self, settings: Settings, commands: AvroCodec, acks: AvroCodec, counters: dict[str, int]
    ) -> None:
        self._answers_topic = settings.answers_topic
        self._commands = commands
        self._acks = acks
        self._counters = counters

    async def command(self, raw: bytes | None, offset: int) -> ControlCommand | None:
        try:
            return ControlCommand.from_record(await self._decode(self._commands, raw, offset))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self._counters["control_undecodable"] += 1
            log.error("control offset %d: undecodable command skipped: %s", offset, exc)
            return None

    async def drain_ack(self, raw: bytes | None, offset: int) -> DrainAck | None:
        return await self._answer(raw, offset, "control offset %d: undecodable drain ack skipped: %s")

    async def release_report(self, raw: bytes | None, offset: int) -> DrainAck | None:
        return await self._answer(raw, offset, "control offset %d: undecodable release report skipped: %s")

    def misplaced(self, topic: str, kind: MessageKind | None, offset: int) -> None:
        """A record of a kind its topic must not carry (a producer's answer on the control topic,
        or anything but an answer on the answers topic): skipped, counted, logged."""
        self._counters["messages_misplaced"] += 1
        log.error(
            "%s offset %d: skipped a %r record: the %s topic does not carry that kind",
            topic,
            offset,
            kind.name.lower() if kind else "unknown",
            "answers" if topic == self._answers_topic else "control",
        )

    async def _answer(self, raw: bytes | None, offset: int, undecodable: str) -> DrainAck | None:
        """A producer's answer (both kinds are DrainAck records); None for poison."""
        try:
            return DrainAck.from_record(await self._decode(self._acks, raw, offset))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self._counters["control_undecodable"] += 1
            log.error(undecodable, offset, exc)
            return None

    async def _decode(self, codec: AvroCodec, raw: bytes | None, offset: int) -> dict[str, Any]:
        """The record; DecodeError for poison. A schema id we have not seen needs the registry:
        asked off the event loop, and while it is down the control stream waits for it rather
        than skip (and lose) a command or a drain's answer."""
        if not codec.needs_registry(raw):
            return codec.decode(raw)
        warned_at: float | None = None
        while True:
            try:
                return await asyncio.to_thread(codec.decode, raw)
            except RegistryUnavailable as exc:
                now = time.monotonic()
                if warned_at is None or now - warned_at >= 30.0:
                    log.warning(
                        "control offset %d: waiting for the schema registry to read a %s "
                        "record (%s); retrying every second",
                        offset,
                        codec.schema_name,
                        exc,
                    )
                    warned_at = now
                await asyncio.sleep(1.0)
