"""perf_cats.py PERF_DATA RECORDS: per-thread CPU µs per record from `perf record -F 2000`, by category.

Categories (main/poll threads): Python interpreter, GIL & thread sync (take/drop_gil, pthread,
futex, clock_gettime in the GIL's timed waits), malloc/free, confluent_kafka's C glue (cimpl),
librdkafka, other kernel."""
import re, subprocess, sys, collections
data, records = sys.argv[1], int(sys.argv[2])
HZ = 2000
out = subprocess.run(["perf", "report", "-i", data, "--stdio", "-n", "--sort", "pid,dso,sym"],
                     capture_output=True, text=True).stdout
line_re = re.compile(r"^\s+([\d.]+)%\s+(\d+)\s+(\d+):(\S*)\s+(\S+)\s+\[(.)\]\s+(.*)$")
SYNC = ("take_gil", "drop_gil", "PyThread_", "pthread_", "sem_", "futex", "clock_gettime", "gettimeofday",
        "PyEval_RestoreThread", "PyEval_SaveThread", "PyCOND", "_PyThread", "__lll_", "PyMUTEX",
        "schedule", "finish_task_switch", "_raw_spin_unlock_irqrestore", "PyGILState", "PyThreadState_Swap",
        "CallState_")
MEM = ("_int_malloc", "_int_free", "malloc", "cfree", "calloc", "unlink_chunk", "malloc_consolidate",
       "_PyObject_Malloc", "_PyObject_Free", "realloc", "free", "tcache")
def cat(dso, sym):
    if any(s in sym for s in SYNC):
        return "GIL & thread sync"
    if dso.startswith("libc") and any(sym.startswith(m) or m in sym for m in MEM):
        return "malloc/free"
    if dso.startswith("libpython") and sym.startswith(("_PyObject_Malloc", "_PyObject_Free", "pymalloc")):
        return "malloc/free"
    if dso.startswith("libpython"):
        return "Python interpreter"
    if dso.startswith("cimpl"):
        return "confluent_kafka C glue (cimpl)"
    if dso.startswith("librdkafka"):
        return "librdkafka"
    if dso.startswith("[kernel"):
        return "kernel (other: syscalls, net)"
    if dso == "[vdso]":
        return "GIL & thread sync"
    return "other (" + dso + ")"
by = collections.defaultdict(lambda: collections.Counter())
syms = collections.defaultdict(lambda: collections.Counter())
for line in out.splitlines():
    m = line_re.match(line)
    if not m:
        continue
    _, n, pid, comm, dso, _, sym = m.groups()
    n = int(n)
    by[pid][cat(dso, sym.strip())] += n
    syms[pid][(dso, sym.strip())] += n
tot = {pid: sum(c.values()) for pid, c in by.items()}
for pid in sorted(tot, key=tot.get, reverse=True)[:6]:
    us = tot[pid] / HZ * 1e6 / records
    print(f"thread {pid}: {us:.3f} µs/record ({tot[pid]} samples)")
    for k, v in by[pid].most_common():
        print(f"    {v / HZ * 1e6 / records:6.3f} µs  {100 * v / tot[pid]:5.1f}%  {k}")
    print("    top symbols:")
    for (dso, sym), v in syms[pid].most_common(12):
        print(f"      {100 * v / tot[pid]:5.1f}%  {dso} {sym}")
