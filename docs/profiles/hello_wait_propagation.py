import time
from routing_app.bench.common import Scratch, SilentReporter
from routing_app.client import RoutingProducer
from routing_app.config import load_settings
s = load_settings()
with Scratch(s, SilentReporter()) as sc:
    rt = sc.routes_topic()
    t0 = time.perf_counter()
    p = RoutingProducer({"bootstrap.servers": s.bootstrap, "schema.registry.url": s.registry_url, "routing.routes.topic": rt, "topic.metadata.propagation.max.ms": 1000})
    p.wait_ready(120)
    print(f"with topic.metadata.propagation.max.ms=1000: wait_ready {time.perf_counter() - t0:.1f} s")
    p.close()
