"""Routes: the model, its wire codec, and the operator commands that change them."""

from routing_app.routes.codec import RouteCodec
from routing_app.routes.model import (
    Route,
    RouteError,
    RouteMode,
    RouteStatus,
    parse_route_key,
    route_key,
    validate_topic_name,
)

__all__ = [
    "Route",
    "RouteCodec",
    "RouteError",
    "RouteMode",
    "RouteStatus",
    "parse_route_key",
    "route_key",
    "validate_topic_name",
]
