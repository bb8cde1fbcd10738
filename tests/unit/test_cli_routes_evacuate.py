"""``routes evacuate``, and ``routes drain``: its hidden, deprecated alias."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from routing_app.cli import main
from routing_app.cli import routes as routes_cli
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlCommand

NOTE = "`routing-app routes drain` is deprecated: use `routing-app routes evacuate`"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[ControlCommand, float]]:
    """What the command would send to the writer (no Kafka)."""
    found: list[tuple[ControlCommand, float]] = []

    def send(settings: Settings, command: ControlCommand, wait: float) -> None:
        found.append((command, wait))

    monkeypatch.setattr(routes_cli, "_send", send)
    return found


@pytest.mark.parametrize("name", ["evacuate", "drain"])
def test_evacuate_and_its_old_name_send_the_same_command(
    name: str, sent: list[tuple[ControlCommand, float]]
) -> None:
    result = CliRunner().invoke(
        main,
        ["routes", name, "orders", "-p", "3", "-p", "4", "--reason", "disk", "--wait", "2"],
        env={"ROUTING_CONFIG": None},
    )
    assert result.exit_code == 0, result.output
    ((command, wait),) = sent
    assert command.action is ControlAction.EVACUATE
    assert (command.topic, command.tenant, command.partitions) == ("orders", "", (3, 4))
    assert (command.reason, wait) == ("disk", 2.0)
    assert (NOTE in result.stderr) == (name == "drain")
    assert NOTE not in result.stdout


def test_only_evacuate_is_listed() -> None:
    result = CliRunner().invoke(main, ["routes", "--help"], env={"ROUTING_CONFIG": None})
    assert result.exit_code == 0
    listed = [
        line.split()[0] for line in result.output.splitlines() if line.startswith("  ") and line.split()
    ]
    assert "evacuate" in listed and "drain" not in listed
