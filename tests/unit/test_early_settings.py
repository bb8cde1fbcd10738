"""The early path's settings: a boolean read from the environment, and its bounds."""

from __future__ import annotations

import pytest

from routing_app.app.usage import surge_rules
from routing_app.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), ("0", False), ("off", False), ("true", True), ("YES", True), ("1", True)],
)
def test_early_reaction_reads_as_a_boolean(raw: str, expected: bool) -> None:
    settings = load_settings(environ={"ROUTING_EARLY_REACTION": raw})
    assert settings.early_reaction is expected


def test_early_reaction_is_on_by_default_and_refuses_nonsense() -> None:
    assert load_settings(environ={}).early_reaction is True
    with pytest.raises(ConfigError, match="ROUTING_EARLY_REACTION"):
        load_settings(environ={"ROUTING_EARLY_REACTION": "maybe"})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("EARLY_SURGE_FACTOR", "1.0"),
        ("EARLY_CONFIRM_INTERVALS", "0"),
        ("EARLY_MIN_RATE", "-1"),
        ("EARLY_COOLDOWN_MS", "-5"),
    ],
)
def test_early_bounds(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"ROUTING_{name}"):
        load_settings(environ={f"ROUTING_{name}": raw})


def test_the_detector_takes_its_rules_from_the_settings() -> None:
    settings = load_settings(
        environ={
            "ROUTING_EARLY_SURGE_FACTOR": "3",
            "ROUTING_EARLY_MIN_RATE": "40",
            "ROUTING_EARLY_CONFIRM_INTERVALS": "3",
            "ROUTING_EARLY_COOLDOWN_MS": "5000",
        }
    )
    rules = surge_rules(settings)
    assert (rules.factor, rules.min_rate, rules.confirm, rules.cooldown_ms) == (3.0, 40.0, 3, 5000)
