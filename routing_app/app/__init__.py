"""The Faust app: ``faust -A routing_app.app worker``.

The app is built from the settings (config file, ``ROUTING_*`` environment) the first time
``routing_app.app.app`` is read, which is what ``faust -A`` does; importing this package (the
CLI imports the launcher and the planning helpers from it) builds nothing, so a bad setting
cannot break commands that never run a worker. Building contacts nothing either: the topic
guard, the registry wait and the route cache start with the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing_app.app.main import RoutingApp, create_app

    app: RoutingApp

__all__ = ["app", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from routing_app.app.main import create_app

        return create_app
    if name == "app":
        from routing_app.app.main import default_app

        built = default_app()
        globals()["app"] = built  # faust looks the app up again by name: always this one
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
