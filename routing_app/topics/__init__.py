"""The project's own topics: what they must look like, and making sure they do."""

from routing_app.topics.admin import (
    TopicProblem,
    TopicSettingsError,
    check_topics,
    create_topic,
    ensure_topics,
    partition_count,
)
from routing_app.topics.specs import TopicSpec, routing_topics

__all__ = [
    "TopicProblem",
    "TopicSettingsError",
    "TopicSpec",
    "check_topics",
    "create_topic",
    "ensure_topics",
    "partition_count",
    "routing_topics",
]
