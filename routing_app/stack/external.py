"""Someone else's Kafka or schema registry (``ROUTING_BOOTSTRAP_SERVERS``,
``ROUTING_SCHEMA_REGISTRY_URL``): checked that it answers, never started nor reconfigured.

Apart from the local stack's lifecycle because nothing here owns a process or a state folder.
"""

from __future__ import annotations

from routing_app.config import Settings
from routing_app.stack import kafka, registry
from routing_app.stack.artifacts import Progress
from routing_app.stack.errors import StackError
from routing_app.stack.info import StackInfo


def up_external(settings: Settings, progress: Progress, secure: bool | None) -> StackInfo:
    """``stack up`` against an external cluster: only checks that it answers."""
    if secure:
        raise StackError(
            f"--secure makes the local stack's Kafka require logins; "
            f"ROUTING_BOOTSTRAP_SERVERS names an external cluster "
            f"({settings.bootstrap}), whose security is its own. Log in to it with "
            "ROUTING_SECURITY_PROTOCOL, ROUTING_SASL_MECHANISM, ROUTING_SASL_USERNAME "
            "and ROUTING_SASL_PASSWORD; `routing-app stack acls` lists the ACLs the "
            "project needs there."
        )
    progress(f"Checking Kafka at {settings.bootstrap}")
    if not kafka.answers(settings.kafka, timeout_s=10.0):
        raise StackError(
            f"The external Kafka at {settings.bootstrap} (ROUTING_BOOTSTRAP_SERVERS) does not answer."
        )
    check_external_registry(settings, progress)
    return StackInfo(bootstrap=settings.bootstrap, registry_url=settings.registry_url, external=True)


def check_external_registry(settings: Settings, progress: Progress) -> None:
    url = settings.registry_url
    progress(f"Checking the schema registry at {url}")
    if not registry.answers(url, timeout_s=10.0):
        raise StackError(
            f"The schema registry at {url} does not answer GET /subjects. Set "
            "ROUTING_SCHEMA_REGISTRY_URL to a Confluent-compatible registry's base URL."
        )
