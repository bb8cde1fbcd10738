import cProfile, pstats, sys, io, os, time
sys.path.insert(0, "docs/profiles")
import prod_cpu as pc
from routing_app.bench.common import Scratch, SilentReporter, tenant_id, write_routes
from routing_app.routes import Route
from routing_app.config import load_settings
s = load_settings()
names = [tenant_id(i) for i in range(10000)]
keys = [names[i % 10000].encode() for i in range(200000)]
value = os.urandom(100)
with Scratch(s, SilentReporter()) as sc:
    topic = sc.topic("data", 12); rt = sc.routes_topic(); ut = sc.usage_topic()
    write_routes(s, rt, (Route(topic, n, (i % 12,), 1, updated_at_ms=int(time.time()*1000), decided_by="bench") for i, n in enumerate(names)), 10000, SilentReporter(), "r")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(pc.routing, s, topic, rt, ut, keys, value, keys[:1000])
    print("round wall s", time.perf_counter() - t0)
st = pstats.Stats(prof); st.sort_stats("tottime")
st.print_stats(8)
st.print_callers("acquire"); st.print_callers(r"threading.py:295\(wait\)"); st.print_callers(r"threading.py:.*\(wait\)")
