#!/bin/bash
# perf_prod.sh VARIANT: perf (cpu-clock, 2 kHz, no call graph) of prod_cpu.py's timed sections only.
v=$1; out=docs/profiles/raw; d=$(mktemp -d)
mkfifo $d/ctl $d/ack
cd "$(git rev-parse --show-toplevel)"
echo "start $(uptime)" > $out/perf_$v.meta
PERF_CTL_FIFO=$d/ctl PERF_ACK_FIFO=$d/ack perf record -e cpu-clock -F 2000 -D -1 --control=fifo:$d/ctl,$d/ack \
  -o $out/perf_$v.data -- .venv/bin/python docs/profiles/prod_cpu.py --only $v --rounds 2 --records 1000000 \
  > $out/perf_$v.out 2> $out/perf_$v.err
echo "end $(uptime)" >> $out/perf_$v.meta
perf report -i $out/perf_$v.data --stdio --sort comm,dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 > $out/perf_${v}_by_thread_dso.txt
perf report -i $out/perf_$v.data --stdio --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 > $out/perf_${v}_by_sym.txt
rm -r $d
