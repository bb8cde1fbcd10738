"""The routing history, read back: replay, past tables, one tenant's story, and consistency checks."""

from routing_app.audit.history import (
    Discrepancy,
    EventRecord,
    Placement,
    RouteRecord,
    RoutesLog,
    Step,
    Undecodable,
    VerifyReport,
    table_at,
    timeline,
    verify,
)

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
