"""What every command receives: the Settings the ``routing-app`` group loaded."""

from __future__ import annotations

import click

from routing_app.config import Settings

pass_settings = click.make_pass_decorator(Settings)
