"""Finds the project's .avsc files: ``schemas/`` in a checkout, ``routing_app/_schemas`` in a wheel."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_CANDIDATES = (_PACKAGE_DIR / "_schemas", _PACKAGE_DIR.parent / "schemas")


def schema_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no Avro schema folder found (looked in {', '.join(map(str, _CANDIDATES))})")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed JSON of ``<name>.avsc``."""
    path = schema_dir() / f"{name}.avsc"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema
