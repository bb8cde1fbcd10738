"""How long RoutingProducer.wait_ready takes when the answers topic (routing.answers) does not exist."""
import time
from routing_app.bench.common import Scratch, SilentReporter
from routing_app.client import RoutingProducer
from routing_app.config import load_settings
from confluent_kafka.admin import AdminClient
s = load_settings()
print("routing.answers exists:", "routing.answers" in AdminClient({"bootstrap.servers": s.bootstrap}).list_topics(timeout=10).topics)
with Scratch(s, SilentReporter()) as sc:
    rt = sc.routes_topic()
    for i in range(2):
        t0 = time.perf_counter()
        p = RoutingProducer({"bootstrap.servers": s.bootstrap, "schema.registry.url": s.registry_url, "routing.routes.topic": rt})
        p.wait_ready(120)
        print(f"producer {i + 1}: wait_ready {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter(); p.close(); print(f"producer {i + 1}: close {time.perf_counter() - t0:.1f} s")
