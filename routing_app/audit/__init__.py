"""The routing history, read back: replay, past tables, one tenant's story, and consistency checks."""

from routing_app.audit.consistency import VerifyReport, verify
from routing_app.audit.discrepancies import Discrepancy
from routing_app.audit.records import EventRecord, RouteRecord, RoutesLog, Undecodable
from routing_app.audit.replay import Placement, Step, table_at, timeline

__all__ = [
    "Discrepancy",
    "EventRecord",
    "Placement",
    "RouteRecord",
    "RoutesLog",
    "Step",
    "Undecodable",
    "VerifyReport",
    "table_at",
    "timeline",
    "verify",
]
