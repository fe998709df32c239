#!/usr/bin/env bash
# bench/run-core.sh -- the core-path benchmarks of issue #2, run by hand:
#   1. `pipecast pipe` throughput vs `redis-benchmark -c 1 -P 64` XADD, 80-byte lines;
#   2. publish -> SSE client latency at 1,000 lines/s (one client);
#   3. N SSE clients (default 5,000) on one channel at 10 events/s: delivery, p99, gateway RSS/client.
# Everything runs on loopback on this machine (load tools included), alternating rounds; the
# medians and ratios go to stdout and, with --write, are appended to docs/benchmarks.md.
#
#   bench/run-core.sh [--rounds 5] [--clients 5000] [--write]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=5
CLIENTS=5000
WRITE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --write) WRITE=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--clients N] [--write]" >&2; exit 2 ;;
    esac
done

BUILD=build/release
cmake --preset release >/dev/null && cmake --build --preset release >/dev/null
BIN=$BUILD/bin
WORK=$(mktemp -d /tmp/pc-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --dir "$WORK" --logfile "$WORK/redis.log"
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
RURL="redis://127.0.0.1:$RPORT/0"

# ---------------------------------------------------------------- 1. pipe throughput
LINE=$(printf 'x%.0s' $(seq 80))
N=1000000
python3 -c "
import sys
with open('$WORK/lines.txt','w') as f:
    for i in range($N): f.write(('%08d ' % i) + 'x' * 71 + '\n')
"
rb=()
rb50=()
pp=()
for r in $(seq "$ROUNDS"); do
    redis-cli -p "$RPORT" del bench-rb pc:ch:bench-pipe >/dev/null
    v=$(redis-benchmark -p "$RPORT" -c 1 -P 64 -n $N -q XADD bench-rb MAXLEN '~' 100000 '*' data "$LINE" |
        tr '\r' '\n' | awk '/requests per second/ {for (i=1;i<=NF;i++) if ($(i+1)=="requests") print $i}' | tail -1)
    rb+=("$v")
    redis-cli -p "$RPORT" del bench-rb >/dev/null
    v=$(redis-benchmark -p "$RPORT" -P 64 -n $N -q XADD bench-rb MAXLEN '~' 100000 '*' data "$LINE" |
        tr '\r' '\n' | awk '/requests per second/ {for (i=1;i<=NF;i++) if ($(i+1)=="requests") print $i}' | tail -1)
    rb50+=("$v")
    s=$(date +%s.%N)
    "$BIN/pipecast" pipe --redis "$RURL" bench-pipe <"$WORK/lines.txt"
    e=$(date +%s.%N)
    n=$(redis-cli -p "$RPORT" xinfo stream pc:ch:bench-pipe | awk 'prev=="entries-added" {print; exit} {prev=$0}')
    [ "$n" = "$N" ] || { echo "pipe round $r: entries-added $n != $N" >&2; exit 1; }
    pp+=("$(python3 -c "print(round($N/($e-$s)))")")
    echo "round $r: redis-benchmark -c 1 ${rb[-1]}, -c 50 ${rb50[-1]} XADD/s, pipecast pipe ${pp[-1]} lines/s"
done
RB_MED=$(printf '%s\n' "${rb[@]}" | median)
PP_MED=$(printf '%s\n' "${pp[@]}" | median)
RB50_MED=$(printf '%s\n' "${rb50[@]}" | median)
RATIO=$(python3 -c "print(round($PP_MED/$RB_MED, 3))")
RATIO50=$(python3 -c "print(round($PP_MED/$RB50_MED, 3))")
echo "pipe: median ${PP_MED} lines/s vs redis-benchmark -c 1 ${RB_MED} XADD/s (ratio ${RATIO}), -c 50 ${RB50_MED} (ratio ${RATIO50})"

# ---------------------------------------------------------------- gateway runs
GPORT=$(free_port)
"$BIN/pipecast-gateway" --listen "127.0.0.1:$GPORT" --redis "$RURL" --max-clients $((CLIENTS + 100)) \
    --log-level warn 2>"$WORK/gateway.log" &
GPID=$!
PIDS+=("$GPID")
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$GPORT/healthz" >/dev/null && break; sleep 0.1; done

lat50=()
lat99=()
for r in $(seq "$ROUNDS"); do
    out=$("$BIN/pc-bench-sse" --port "$GPORT" --redis "$RURL" --channel bench-lat --clients 1 --rate 1000 --duration 10)
    echo "latency round $r: $out"
    lat50+=("$(sed -n 's/.*p50_us=\([0-9-]*\).*/\1/p' <<<"$out")")
    lat99+=("$(sed -n 's/.*p99_us=\([0-9-]*\).*/\1/p' <<<"$out")")
done
L50=$(printf '%s\n' "${lat50[@]}" | median)
L99=$(printf '%s\n' "${lat99[@]}" | median)
echo "latency 1 client @1000/s: p50 ${L50} us, p99 ${L99} us (medians of $ROUNDS)"

out=$("$BIN/pc-bench-sse" --port "$GPORT" --redis "$RURL" --channel bench-fan --clients "$CLIENTS" \
    --rate 10 --duration 20 --gateway-pid "$GPID")
echo "fan-out: $out"
get() { sed -n "s/.* $1=\([0-9-]*\).*/\1/p" <<<" $out"; }
PERCLIENT=$(python3 -c "print(round(($(get rss_connected_kb) - $(get rss_before_kb)) / $CLIENTS, 1))")
echo "fan-out ${CLIENTS} clients @10/s: delivered $(get delivered)/$(get expected), p99 $(get p99_us) us, RSS/client ${PERCLIENT} KB"

if [ "$WRITE" = 1 ]; then
    {
        echo
        echo "## Core path — $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo "Machine: $(nproc) cores, $(uname -sr), $(redis-server --version | awk '{print $3}'), load tools on the same cores."
        echo "Command: \`bench/run-core.sh --rounds $ROUNDS --clients $CLIENTS --write\` (release build, loopback)."
        echo
        echo "| measure | pipecast | baseline | ratio / goal |"
        echo "|---|---|---|---|"
        echo "| \`pipecast pipe\`, 1M 80-byte lines (median of $ROUNDS) | ${PP_MED} lines/s | \`redis-benchmark -c 1 -P 64\` XADD: ${RB_MED}/s | ${RATIO} (goal ≥ 0.8) |"
        echo "| same, against \`redis-benchmark -c 50 -P 64\` (50 connections) | ${PP_MED} lines/s | ${RB50_MED}/s | ${RATIO50} |"
        echo "| publish → SSE latency, 1 client, 1,000 lines/s (median of $ROUNDS runs of 10 s) | p50 ${L50} µs, p99 ${L99} µs | — | goal p50 ≤ 1 ms, p99 ≤ 5 ms |"
        echo "| ${CLIENTS} SSE clients, one channel, 10 events/s for 20 s | delivered $(get delivered) of $(get expected); p50 $(get p50_us) µs, p99 $(get p99_us) µs | — | all delivered |"
        echo "| gateway RSS with ${CLIENTS} clients | $(get rss_connected_kb) KB ($(get rss_before_kb) KB idle): ${PERCLIENT} KB/client | — | bounded |"
        echo
        echo "Rounds: pipe ${pp[*]} lines/s; redis-benchmark -c 1 ${rb[*]}, -c 50 ${rb50[*]} XADD/s; latency p50 ${lat50[*]} µs, p99 ${lat99[*]} µs."
    } >>docs/benchmarks.md
    echo "appended to docs/benchmarks.md"
fi
