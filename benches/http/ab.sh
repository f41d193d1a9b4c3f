#!/usr/bin/env bash
# A/B comparison of two edgeflow builds on the HTTP ingest benchmark, fair on a shared
# machine: the builds run alternately (start one, wrk for DUR, stop it, then the other), N
# rounds, so both see the same load. Prints one line per run with the load average before
# it, requests/s, p50, p99 and non-2xx answers.
#
#   cp target/release/edgeflow /tmp/edgeflow-before      # before the change
#   cargo build --release                                 # after it
#   BINS="before=/tmp/edgeflow-before after=target/release/edgeflow" benches/http/ab.sh
#   SCRIPT=batch.lua N=2 DUR=10s BINS="..." benches/http/ab.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export BENCH_HTTP_PORT=${BENCH_HTTP_PORT:-18080} BENCH_OPS_PORT=${BENCH_OPS_PORT:-19400}
one() { # bin script label
  "$1" run benches/http/pipeline.toml --no-status --workers 1 >/dev/null 2>/tmp/h_ab_srv.log &
  local pid=$!
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$BENCH_OPS_PORT/ready" 2>/dev/null && break; sleep 0.1; done
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local out; out=$(wrk -t2 -c64 -d${DUR:-10s} --latency -s "$2" "http://127.0.0.1:$BENCH_HTTP_PORT/ingest")
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$3 $(basename "$2") load=$load rps=$rps p50=$p50 p99=$p99 non2xx=${non2xx:-0}"
  kill -TERM $pid; wait $pid 2>/dev/null
}
for i in $(seq 1 ${N:-3}); do
  for spec in $BINS; do
    one "${spec#*=}" benches/http/${SCRIPT:-single.lua} "${spec%%=*}"
  done
done
