#!/usr/bin/env bash
# run.sh -- install the dependencies, build the release preset, make sure a Redis is there
# and run pipecast-gateway in the foreground (default http://127.0.0.1:8080/; Ctrl-C stops it), with a
# pipecast-runner offering the demo job templates of scripts/demo-runner.json
# (PIPECAST_RUNNER_CONFIG=FILE for your own; PIPECAST_NO_RUNNER=1 for none).
#
# Redis: $PIPECAST_REDIS_URL when set; else whatever answers on 127.0.0.1:6379; else a
# redis-server started here (data in ./.pipecast-run/, stopped again on exit).
# Extra arguments are passed to pipecast-gateway (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
cmake --preset release
cmake --build --preset release

BIN=$ROOT/build/release/bin
[ -x "$BIN/pipecast-gateway" ] || { echo "run.sh: $BIN/pipecast-gateway not built" >&2; exit 1; }

STARTED_REDIS=""
RUN_DIR=$ROOT/.pipecast-run
stop_redis() {
    if [ -n "$STARTED_REDIS" ]; then
        redis-cli -h 127.0.0.1 -p 6379 shutdown >/dev/null 2>&1 || true
        echo "run.sh: stopped the redis-server it started"
    fi
}
trap stop_redis EXIT

if [ -z "${PIPECAST_REDIS_URL:-}" ]; then
    if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; then
        echo "run.sh: using the Redis already answering on 127.0.0.1:6379"
    else
        mkdir -p "$RUN_DIR"
        redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --dir "$RUN_DIR" \
            --appendonly yes --save '' --pidfile "$RUN_DIR/redis.pid" \
            --logfile "$RUN_DIR/redis.log"
        for _ in $(seq 1 100); do
            [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] && break
            sleep 0.05
        done
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] ||
            { echo "run.sh: redis-server did not start (see $RUN_DIR/redis.log)" >&2; exit 1; }
        STARTED_REDIS=1
        echo "run.sh: started redis-server on 127.0.0.1:6379 (data in $RUN_DIR)"
    fi
    export PIPECAST_REDIS_URL=redis://127.0.0.1:6379/0
fi

# the address the gateway will listen on: --listen A / --listen=A, else $PIPECAST_LISTEN
LISTEN=${PIPECAST_LISTEN:-127.0.0.1:8080}
prev=""
for a in "$@"; do
    case "$a" in --listen=*) LISTEN=${a#--listen=} ;; esac
    [ "$prev" = "--listen" ] && LISTEN=$a
    prev=$a
done
case "$LISTEN" in
    0.0.0.0:*) URL="http://127.0.0.1:${LISTEN##*:}" ;;
    *) URL="http://$LISTEN" ;;
esac

cat <<MSG

pipecast-gateway: $URL/   (Redis: $PIPECAST_REDIS_URL)
try, in another terminal:
    seq 1 5 | build/release/bin/pipecast pipe demo
    curl -N $URL/api/channels/demo/events
    build/release/bin/pipecast jobs submit count n=5 --follow --gateway $URL

MSG
RUNNER=""
if [ -z "${PIPECAST_NO_RUNNER:-}" ]; then
    "$BIN/pipecast-runner" --config "${PIPECAST_RUNNER_CONFIG:-$ROOT/scripts/demo-runner.json}" &
    RUNNER=$!
fi
"$BIN/pipecast-gateway" --web-root "$ROOT/web" "$@" &
GW=$!
trap 'kill -TERM $GW $RUNNER 2>/dev/null || true' INT TERM
status=0
wait $GW || status=$?
# a signal interrupts the first wait; wait again for the clean stop
if kill -0 $GW 2>/dev/null; then wait $GW || status=$?; fi
if [ -n "$RUNNER" ]; then kill -TERM "$RUNNER" 2>/dev/null || true; wait "$RUNNER" 2>/dev/null || true; fi
exit $status
