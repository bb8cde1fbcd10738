"""Tumbling windows of per-tenant usage: when a window is complete, and what it held."""

from routing_app.windows.closer import WindowCloser, window_start_of
from routing_app.windows.completion import CompleteWindow, WindowCompletion
from routing_app.windows.summary import (
    WINDOW_SUMMARY_SCHEMA,
    WindowAccumulator,
    WindowSummary,
    stored_totals,
)

__all__ = [
    "WINDOW_SUMMARY_SCHEMA",
    "CompleteWindow",
    "WindowAccumulator",
    "WindowCloser",
    "WindowCompletion",
    "WindowSummary",
    "stored_totals",
    "window_start_of",
]
