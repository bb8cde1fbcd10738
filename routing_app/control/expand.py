"""Growing a data topic without moving any key (``routing-app topics expand``).

Kafka's default partitioner puts a key at ``murmur2(key) % n``: adding partitions moves most
keys at once, and records of one key land on two partitions, read out of order. Here the
topic's *hash base* (its count before the growth) is recorded on the routes topic first, by
the single writer, as a strict write: every live producer answers it (as it answers a
drain) once it hashes unrouted keys by the base. Only then is the broker's count raised, so no
producer ever hashes by the new count; the planner then fills the new partitions with strict
moves. A producer started later reads the base from the routes topic before its first keyed
send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException

from routing_app.config import Settings
from routing_app.control.answers import unanswered
from routing_app.control.client import ControlClient, now_ms
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import HASH_BASE_TENANT
from routing_app.topics.admin import add_partitions, partition_count


class ExpansionError(RuntimeError):
    """The topic was not grown; the message says why and what to do."""


@dataclass(frozen=True)
class Expansion:
    topic: str
    before: int  # partitions before
    after: int  # partitions now
    base: int  # what unrouted keys hash by
    answer: ReassignmentEvent  # the writer's expand event
    acknowledged: ReassignmentEvent | None  # the base's drain-complete (None: known before)


def expand_topic(
    settings: Settings,
    topic: str,
    grow_to: int,
    *,
    wait_s: float,
    issued_by: str,
    reason: str = "",
    progress: Callable[[str], None] = lambda _: None,
) -> Expansion:
    """Records the hash base, waits (up to ``wait_s``) until every live producer knows it, then
    grows the topic. Raises ExpansionError, having grown nothing, when any step fails."""
    before = partition_count(settings.kafka, topic)
    if before is None:
        raise ExpansionError(f"topic {topic!r} does not exist on {settings.bootstrap}")
    if grow_to <= before:
        raise ExpansionError(
            f"{topic!r} has {before} partitions already: --to must be more (Kafka never removes any)"
        )
    progress(f"recording the hash base of {topic} ({before}) and waiting for every producer to answer")
    command = ControlCommand(
        ControlAction.EXPAND,
        topic,
        HASH_BASE_TENANT,
        now_ms(),
        (grow_to,),
        reason=reason,
        issued_by=issued_by,
    )
    with ControlClient(settings) as client:
        outcome = client.submit(command, wait_s=wait_s)
    answer, end = outcome.answer, outcome.end
    not_grown = f"{topic} was not grown (still {before} partitions)"
    if answer is None:
        raise ExpansionError(
            f"no answer from the route writer within {wait_s:g}s (is a worker running? the command "
            f"{command.command_id} is queued on {settings.control_topic!r}): {not_grown}"
        )
    if not answer.applied:
        raise ExpansionError(f"{answer.reason}: {not_grown}")
    if outcome.moving:
        try:
            silent = unanswered(settings, topic, HASH_BASE_TENANT, answer.to_epoch or 0)
            who = ", ".join(s.describe(now_ms()) for s in silent) or "none found on the answers topic"
        except Exception as exc:  # the evidence is extra: the refusal stands without it
            who = f"cannot tell ({exc})"
        raise ExpansionError(
            f"not every live producer acknowledged the hash base within {wait_s:g}s (waiting for: "
            f"{who}): {not_grown}. "
            f"The writer gives up after drain_timeout_ms ({settings.drain_timeout_ms} ms) with a "
            f"drain-abort event naming the producers that did not answer "
            f"(`routing-app audit replay --topic {topic}`); a producer that cannot be reached must "
            f"be stopped (or expire: producer_expiry_ms) before the topic can grow"
        )
    if end is not None and end.action != "drain-complete":
        raise ExpansionError(f"the hash base was not acknowledged: {end.reason}: {not_grown}")
    base = len(answer.to_partitions)
    now = partition_count(settings.kafka, topic)
    if now is not None and now != before:
        # Grown by someone else meanwhile: with a base of `before`, still no key moved.
        raise ExpansionError(
            f"{topic!r} changed from {before} to {now} partitions meanwhile; run expand again"
        )
    progress(f"every producer hashes {topic} by {base}: growing it to {grow_to} partitions")
    try:
        add_partitions(settings.kafka, topic, grow_to)
    except KafkaException as exc:
        raise ExpansionError(
            f"the broker refused to grow {topic!r} to {grow_to}: {exc}. The hash base {base} stays "
            "recorded (harmless: it equals the count); run expand again"
        ) from exc
    return Expansion(topic, before, grow_to, base, answer, end)
