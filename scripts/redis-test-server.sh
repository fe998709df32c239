#!/usr/bin/env bash
# redis-test-server.sh -- a throwaway redis-server for the integration tests (ctest fixture).
#
#   redis-test-server.sh start <dir>   pick a free loopback port, start redis-server daemonized
#                                      with its pidfile/log/data in <dir>, wait for PING, write
#                                      the port to <dir>/port
#   redis-test-server.sh stop <dir>    stop it (SHUTDOWN NOSAVE, then SIGKILL if it lingers)
#
# No persistence (--save '' --appendonly no): the data is scratch.
set -euo pipefail

die() { echo "redis-test-server: $*" >&2; exit 1; }

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

do_stop() {
    local dir=$1 pid="" port=""
    [ -f "$dir/pid" ] && pid=$(cat "$dir/pid")
    [ -f "$dir/redis.pid" ] && pid=$(cat "$dir/redis.pid")
    [ -f "$dir/port" ] && port=$(cat "$dir/port")
    if [ -n "$port" ]; then
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
    if pid_alive "$pid"; then
        for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
        if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$dir/port" "$dir/pid" "$dir/redis.pid"
}

do_start() {
    local dir=$1 port attempt
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/install-deps.sh)"
    command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/install-deps.sh)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    do_stop "$dir" # a leftover from an interrupted run
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        rm -f "$dir/redis.pid"
        if redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
            --logfile "$dir/redis.log" >/dev/null; then
            for _ in $(seq 1 100); do
                if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
                    echo "$port" >"$dir/port"
                    [ -f "$dir/redis.pid" ] && cp "$dir/redis.pid" "$dir/pid"
                    echo "redis-test-server: redis-server listening on 127.0.0.1:$port (dir $dir)"
                    return 0
                fi
                sleep 0.05
            done
        fi
        echo "redis-test-server: attempt $attempt on port $port failed; retrying" >&2
        [ -f "$dir/redis.pid" ] && kill -KILL "$(cat "$dir/redis.pid")" 2>/dev/null || true
    done
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    die "could not start redis-server"
}

[ $# -eq 2 ] || die "usage: $0 start|stop <dir>"
case "$1" in
start) do_start "$2" ;;
stop) do_stop "$2"; echo "redis-test-server: stopped" ;;
*) die "usage: $0 start|stop <dir>" ;;
esac
