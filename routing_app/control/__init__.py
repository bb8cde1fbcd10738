"""Operator commands to the single route writer, and the pure rules that apply them."""

from routing_app.control.client import CommandOutcome, ControlClient
from routing_app.control.commands import CONTROL_SCHEMA, ControlAction, ControlCommand
from routing_app.control.decide import apply_command, decide_planned
from routing_app.control.decision import Decision

__all__ = [
    "CONTROL_SCHEMA",
    "CommandOutcome",
    "ControlAction",
    "ControlClient",
    "ControlCommand",
    "Decision",
    "apply_command",
    "decide_planned",
]
