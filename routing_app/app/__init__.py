"""The Faust app: ``faust -A routing_app.app worker``.

Importing this module builds the app from the settings (config file, ``ROUTING_*`` environment)
but contacts nothing; the topic guard and the route cache start with the worker.
"""

from routing_app.app.main import app, create_app

__all__ = ["app", "create_app"]
