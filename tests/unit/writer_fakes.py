"""Stand-ins the writer's unit tests share: its route cache as the writer uses it, and the
answers topic's records as Faust hands them to WriterInput."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing_app.app.writer_tables import WriterTables
from routing_app.routes import Route
from routing_app.routes.messages import MessageKind
from routing_app.routes.model import route_key


class RoutesRead:
    """The worker's route cache, as the writer uses it: a route is committed once read, and
    here everything the writer wrote is read unless ``lagging``."""

    def __init__(self, tables: WriterTables) -> None:
        self._tables = tables
        self.lagging = False
        self.ready = True

    def get(self, topic: str, tenant: str) -> Route | None:
        return None if self.lagging else self._tables.route(route_key(topic, tenant))

    def add_listener(self, _: object) -> None: ...

    def add_poison_listener(self, _: object) -> None: ...

    def poisoned(self) -> dict[str, str]:
        return {}


@dataclass
class Message:
    topic: str
    offset: int
    headers: list[tuple[str, bytes]]


@dataclass
class Event:
    message: Message
    key: bytes | None
    value: bytes | None


@dataclass
class Answers:
    """The answers topic: what producers wrote (hellos, answers), and its end offset."""

    topic: str
    written: list[Event] = field(default_factory=list)

    def write(self, kind: MessageKind, key: bytes, value: bytes) -> Event:
        event = Event(Message(self.topic, len(self.written), [kind.header]), key, value)
        self.written.append(event)
        return event

    @property
    def end(self) -> int:
        return len(self.written)
