"""The project's own local stack: Kafka 4.4 (KRaft; one node, or ``brokers=3``) + Apicurio
Registry 3.3.

All run as child processes of whoever calls :meth:`LocalStack.up` and keep running after it
returns; pid files and logs live in ``settings.state_dir``, downloads in ``settings.cache_dir``.
When ``settings.uses_external_cluster`` the stack starts nothing and only checks the endpoints.

``secure=True`` (``stack up --secure``) starts Kafka with SASL/SCRAM logins and ACLs enforced
(routing_app.stack.security, routing_app.topics.acls), on data of its own.

This package's front door re-exports what its callers use; the modules hold one concern each:
``local`` (``LocalStack``), ``info`` (what ``up`` reports), ``plan`` (what ``up`` starts,
checked before any download), ``launch`` (starting and waiting), ``layout`` (the state folder's
record of the cluster's shape and ports), ``ports`` (port checks), ``status``, ``external``
(someone else's cluster); and beneath them ``kafka``, ``registry``, ``security``, ``artifacts``,
``java``, ``process``.
"""

from __future__ import annotations

from routing_app.stack.artifacts import kafka_classpath
from routing_app.stack.errors import StackError
from routing_app.stack.info import BrokerInfo, StackInfo
from routing_app.stack.java import java_for_kafka, java_for_registry
from routing_app.stack.local import LocalStack

__all__ = [
    "BrokerInfo",
    "LocalStack",
    "StackError",
    "StackInfo",
    "java_for_kafka",
    "java_for_registry",
    "kafka_classpath",
]
