"""The early path end to end (one real worker, 10 s windows): a tenant that turns x20 at the start
of a window is rerouted before that window closes, by an early plan; with the early path off the
same onset waits for the window. How fast is `routing-app bench reaction`'s figure, not this
test's: nothing here is timed."""

from __future__ import annotations

import pytest

from routing_app.bench.reaction import run_reaction
from routing_app.config import Settings

pytestmark = pytest.mark.integration


def test_a_flash_crowd_is_rerouted_before_its_window_closes(stack_settings: Settings) -> None:
    result = run_reaction(stack_settings.replace(early_reaction=True), window_s=10.0, rounds=1)
    assert result["early_reaction"] is True
    assert result["rerouted_before_window_closed"] == 1, result
    assert "(early:" in result["reasons"][0], result


def test_without_the_early_path_the_window_decides(stack_settings: Settings) -> None:
    """The same bench with the early path off: the route comes from the closed window (what
    makes the test above able to fail)."""
    result = run_reaction(stack_settings.replace(early_reaction=False), window_s=10.0, rounds=1)
    assert result["rerouted_before_window_closed"] == 0, result
    assert "(early:" not in result["reasons"][0], result
