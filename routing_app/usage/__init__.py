"""Per-tenant usage: what producers sent, aggregated in process and reported to the usage topic."""

from routing_app.usage.accumulator import UsageAccumulator
from routing_app.usage.batch import TenantUsage, UsageBatch, batch_reports, reports_of, usage_of
from routing_app.usage.report import USAGE_SCHEMA, UsageReport

__all__ = [
    "USAGE_SCHEMA",
    "TenantUsage",
    "UsageAccumulator",
    "UsageBatch",
    "UsageReport",
    "batch_reports",
    "reports_of",
    "usage_of",
]
