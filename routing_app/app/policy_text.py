"""The ``planner_policy`` setting's text (``"name=value,..."``) read into the planner's Policy.

Apart from the planning loop because the simulator and the demo read the same text without a
worker; here and not in ``config`` because Policy lives in ``planner``, a layer above it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from routing_app.config import ConfigError
from routing_app.planner import Policy


def policy_from_text(text: str) -> Policy:
    """``"partition_capacity=2000,min_dwell_s=20"`` -> Policy; names the bad part on error.

    Each value is converted to its field's declared type (int, float, bool, str); ``none`` is
    accepted for Optional fields only.
    """
    hints = typing.get_type_hints(Policy)
    fields = {f.name for f in dataclasses.fields(Policy) if f.init}
    changes: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise ConfigError(
                f"planner_policy: {part!r} is not name=value with a Policy field "
                f"({', '.join(sorted(fields))})"
            )
        kind, value = hints[name], raw.strip()
        optional = False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(kind) if a is not type(None)]
            optional = len(members) < len(typing.get_args(kind))
            kind = members[0] if len(members) == 1 else kind
        try:
            changes[name] = _value(name, kind, value, optional)
        except ValueError as exc:
            raise ConfigError(f"planner_policy: {name}={raw!r}: {exc}") from exc
    return dataclasses.replace(Policy(), **changes)


def _value(name: str, kind: Any, value: str, optional: bool) -> Any:
    """``value`` as the field's type; ValueError when the text cannot be one."""
    if value.lower() == "none":
        if not optional:
            raise ValueError(f"{name} cannot be none")
        return None
    if kind is bool:
        flag = value.lower()
        if flag not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"not a boolean: {value!r}")
        return flag in ("true", "1", "yes", "on")
    if kind in (int, float, str):
        return kind(value)
    raise ValueError(f"{name} has type {kind}, which text cannot set")
