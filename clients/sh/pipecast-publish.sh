#!/bin/sh
# pipecast-publish.sh -- publish stdin lines to a pipecast channel with nothing but POSIX sh,
# awk and redis-cli.
#
#   some-command | pipecast-publish.sh [options] CHANNEL
#
# Each line of stdin (without its \n; one trailing \r removed, like `pipecast pipe`) becomes one
# `XADD <prefix>:ch:CHANNEL MAXLEN ~ N * [event E] data <line>`. awk writes the commands in the
# Redis protocol and one `redis-cli --pipe` sends them all at once: binary safe (any bytes,
# invalid UTF-8, quotes, leading dashes) and fast (no process per line). Exit 0 only when every
# line got an id back; otherwise exit 1 with how many were not published.
#
# Limits: stdin is read to its end before the result is known (this is a batch tool, not a live
# follower: use `pipecast pipe` for long-running streams); NUL bytes pass with mawk and gawk,
# other awks may cut a line at a NUL.
#
# Options:
#   -r, --redis URL    redis://[user:pass@]host[:port][/db] or unix:///path.sock[?db=N]
#                      (default $PIPECAST_REDIS_URL, else redis://127.0.0.1:6379/0)
#   -e, --event NAME   event name for every entry ([A-Za-z0-9_-]{1,64})
#   -m, --maxlen N     approximate trimming MAXLEN ~ N (default 100000; 0 = none)
#   -p, --prefix P     key prefix (default $PIPECAST_PREFIX, else pc)
#   -q, --quiet        print nothing on success (default: "published N lines to KEY" on stderr)
set -u
LC_ALL=C
export LC_ALL

me=pipecast-publish.sh
usage() {
    sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'
}
die() { # exit-code message
    printf '%s: %s\n' "$me" "$2" >&2
    exit "$1"
}

redis=${PIPECAST_REDIS_URL:-redis://127.0.0.1:6379/0}
prefix=${PIPECAST_PREFIX:-pc}
event=
maxlen=100000
quiet=
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -r | --redis) [ $# -ge 2 ] || die 2 "$1 needs a value"; redis=$2; shift ;;
    --redis=*) redis=${1#*=} ;;
    -e | --event) [ $# -ge 2 ] || die 2 "$1 needs a value"; event=$2; shift ;;
    --event=*) event=${1#*=} ;;
    -m | --maxlen) [ $# -ge 2 ] || die 2 "$1 needs a value"; maxlen=$2; shift ;;
    --maxlen=*) maxlen=${1#*=} ;;
    -p | --prefix) [ $# -ge 2 ] || die 2 "$1 needs a value"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    -q | --quiet) quiet=1 ;;
    --) shift; break ;;
    -?*) die 2 "unknown option $1 (see --help)" ;;
    *) break ;;
    esac
    shift
done
[ $# -eq 1 ] || die 2 "usage: $me [options] CHANNEL < lines (see --help)"
channel=$1

case $channel in
'' | *[!A-Za-z0-9._:@-]*)
    die 2 "channel \"$channel\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)" ;;
esac
[ ${#channel} -le 200 ] ||
    die 2 "channel \"$channel\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)"
if [ -n "$event" ]; then
    case $event in
    *[!A-Za-z0-9_-]*) die 2 "event \"$event\": invalid event name (allowed: 1-64 bytes of A-Z a-z 0-9 _ -)" ;;
    esac
    [ ${#event} -le 64 ] || die 2 "event \"$event\": invalid event name (allowed: 1-64 bytes of A-Z a-z 0-9 _ -)"
fi
case $maxlen in '' | *[!0-9]*) die 2 "--maxlen \"$maxlen\": expected a number" ;; esac
case $prefix in '' | *[!A-Za-z0-9._:@-]*) die 2 "--prefix \"$prefix\": invalid prefix" ;; esac
command -v redis-cli >/dev/null 2>&1 || die 1 "redis-cli not found (Debian: apt-get install redis-tools)"

# redis-cli connection arguments
case $redis in
unix://*)
    path=${redis#unix://}
    db=0
    case $path in *\?db=*) db=${path##*\?db=}; path=${path%%\?*} ;; esac
    set -- -s "$path" -n "$db" ;;
redis://*) set -- -u "$redis" ;;
*) die 2 "--redis \"$redis\": expected redis://host[:port][/db] or unix:///path" ;;
esac

key="$prefix:ch:$channel"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipecast-publish.XXXXXX") || die 1 "cannot create a temp dir"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stdin -> Redis protocol on stdout; the line count in $tmp/n
awk -v key="$key" -v ev="$event" -v maxlen="$maxlen" -v nfile="$tmp/n" '
function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
{
    sub(/\r$/, "")
    printf "*%d\r\n", 5 + (maxlen > 0 ? 3 : 0) + (ev != "" ? 2 : 0)
    bulk("XADD"); bulk(key)
    if (maxlen > 0) { bulk("MAXLEN"); bulk("~"); bulk(maxlen) }
    bulk("*")
    if (ev != "") { bulk("event"); bulk(ev) }
    bulk("data"); bulk($0)
}
END { print NR > nfile }' | redis-cli "$@" --pipe >"$tmp/out" 2>&1
rc=$?

n=$(cat "$tmp/n" 2>/dev/null) || n=
[ -n "$n" ] || die 1 "could not read stdin"
# redis-cli --pipe ends with "errors: E, replies: R"
summary=$(grep '^errors: [0-9]*, replies: [0-9]*' "$tmp/out" | tail -n 1)
errors=$(printf '%s\n' "$summary" | sed -n 's/^errors: \([0-9]*\),.*/\1/p')
replies=$(printf '%s\n' "$summary" | sed -n 's/.*replies: \([0-9]*\).*/\1/p')
if [ "$rc" -ne 0 ] || [ -z "$summary" ] || [ "$errors" -ne 0 ] || [ "$replies" -ne "$n" ]; then
    ok=$((${replies:-0} - ${errors:-0}))
    [ "$ok" -ge 0 ] || ok=0
    printf '%s: redis %s: XADD to %s failed: %s\n' "$me" "$redis" "$key" \
        "$(grep -v '^All data transferred\|^Last reply received\|^errors:' "$tmp/out" | head -n 3 | tr '\n' ' ')" >&2
    die 1 "$((n - ok)) of $n lines not published"
fi
[ -n "$quiet" ] || printf '%s: published %s lines to %s\n' "$me" "$n" "$key" >&2
exit 0
