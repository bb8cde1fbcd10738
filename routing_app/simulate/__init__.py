"""``routing-app simulate``: the planner over synthetic traffic, without Kafka.

The same ``routing_app.planner.plan`` the worker runs decides every simulated window; the
figures compare it with plain murmur2 hashing and with partial key grouping on the same traffic.
"""

from routing_app.simulate.run import SimConfig, SimResult, run_simulation
from routing_app.simulate.traffic import Traffic, TrafficConfig

__all__ = ["SimConfig", "SimResult", "Traffic", "TrafficConfig", "run_simulation"]
