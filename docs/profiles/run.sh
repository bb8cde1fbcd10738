#!/bin/bash
# run.sh NAME CMD...: runs CMD in the checkout, keeps stdout/stderr, the load before/after and
# the process tree's CPU (GNU time) in docs/profiles/raw/NAME.*
name=$1; shift
out=docs/profiles/raw; mkdir -p $out
cd "$(git rev-parse --show-toplevel)"
{ echo "cmd: $*"; echo "start: $(date -u +%FT%TZ) $(uptime)"; } > $out/$name.meta
/usr/bin/time -v -o $out/$name.time "$@" > $out/$name.out 2> $out/$name.err
rc=$?
{ echo "end: $(date -u +%FT%TZ) $(uptime)"; echo "rc: $rc"; } >> $out/$name.meta
cat $out/$name.meta; grep -E 'User time|System time|Elapsed|Maximum resident' $out/$name.time
