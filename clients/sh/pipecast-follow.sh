#!/bin/sh
# pipecast-follow.sh -- follow a pipecast channel through the gateway with POSIX sh and curl,
# resuming with Last-Event-ID after every dropped connection (gateway restart, network cut).
#
#   pipecast-follow.sh [options] GATEWAY_URL CHANNEL
#   pipecast-follow.sh http://127.0.0.1:8080 build-42
#
# Prints the data of every event (a multi-line payload as several lines). After the stream ends
# it waits the server's `retry:` delay (default 2 s) and reconnects with `Last-Event-ID: <the
# last id seen>`, so every entry is printed exactly once. A `gap` event (entries trimmed away
# before they could be replayed) is reported on stderr and, with --events, printed as well.
# HTTP 4xx answers (bad channel, bad id) end it with exit 1; 5xx and network errors are retried.
#
# Options:
#   -e, --events          prefix each line with "<id> <event or -> " (like `pipecast tail --events`)
#   --last-event-id ID    start after ID (exclusive)
#   --from start|end      where to start without an id (default: start, the whole history)
#   --tail N              start with the last N entries
#   --event NAME          keep only these event names (repeatable)
#   -n, --count N         exit 0 after N events
#
# Limits: lines are read with `read -r`, so the stream must use LF or CRLF line ends (the
# pipecast gateway sends LF; a server using bare CR needs the Python or Node client).
set -u

me=pipecast-follow.sh
usage() {
    sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'
}
die() { # exit-code message
    printf '%s: %s\n' "$me" "$2" >&2
    exit "$1"
}

prefix_ids=
last=
from=
tail=
filter=
count=
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -e | --events) prefix_ids=1 ;;
    --last-event-id | --from | --tail | --event | -n | --count)
        [ $# -ge 2 ] || die 2 "$1 needs a value"
        case $1 in
        --last-event-id) last=$2 ;;
        --from) from=$2 ;;
        --tail) tail=$2 ;;
        --event) filter="$filter&event=$2" ;;
        *) count=$2 ;;
        esac
        shift ;;
    --) shift; break ;;
    -?*) die 2 "unknown option $1 (see --help)" ;;
    *) break ;;
    esac
    shift
done
[ $# -eq 2 ] || die 2 "usage: $me [options] GATEWAY_URL CHANNEL (see --help)"
base=${1%/}
channel=$2

LC_ALL=C
export LC_ALL
case $channel in
'' | *[!A-Za-z0-9._:@-]*)
    die 2 "channel \"$channel\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)" ;;
esac
[ ${#channel} -le 200 ] ||
    die 2 "channel \"$channel\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)"
case $filter in *[!A-Za-z0-9_=\&-]*) die 2 "--event: invalid event name" ;; esac
case $from in '' | start | end) ;; *) die 2 "--from \"$from\": expected start or end" ;; esac
case $tail in *[!0-9]*) die 2 "--tail \"$tail\": expected a number" ;; esac
case $count in *[!0-9]*) die 2 "--count \"$count\": expected a number" ;; esac
case $last in *[!0-9a-zA-Z._:-]*) die 2 "--last-event-id \"$last\": invalid id" ;; esac
case $base in http://* | https://*) ;; *) die 2 "GATEWAY_URL \"$base\": expected http://host:port" ;; esac
command -v curl >/dev/null 2>&1 || die 1 "curl not found (Debian: apt-get install curl)"
[ "$count" != 0 ] || exit 0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipecast-follow.XXXXXX") || die 1 "cannot create a temp dir"
curl_pid=
cleanup() {
    [ -z "$curl_pid" ] || kill "$curl_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 0' PIPE
mkfifo "$tmp/body" || die 1 "cannot create a fifo in $tmp"

retry_ms=2000
seen=0
while :; do
    # where to start: the last id seen, else the options
    q=
    if [ -z "$last" ]; then
        if [ -n "$tail" ]; then q="&tail=$tail"; elif [ -n "$from" ]; then q="&from=$from"; fi
    fi
    q="$q$filter"
    url="$base/api/channels/$channel/events${q:+?${q#&}}"
    : >"$tmp/head"
    # curl's stdout is the fifo, opened by the shell before curl runs: the reader below always
    # gets its EOF, even when curl fails before writing anything
    if [ -n "$last" ]; then
        curl -sS -N -D "$tmp/head" -H "Last-Event-ID: $last" -H 'Accept: text/event-stream' \
            "$url" >"$tmp/body" 2>"$tmp/err" &
    else
        curl -sS -N -D "$tmp/head" -H 'Accept: text/event-stream' \
            "$url" >"$tmp/body" 2>"$tmp/err" &
    fi
    curl_pid=$!

    # the WHATWG event stream algorithm, for LF / CRLF line ends
    id_buf=$last
    block_id=
    ev=
    data=
    ndata=0
    other=
    line=
    while IFS= read -r line; do
        case $line in *"$(printf '\r')") line=${line%?} ;; esac
        case $line in
        '')
            last=$id_buf
            if [ "$ndata" -gt 0 ]; then
                if [ "$ev" = gap ]; then
                    printf '%s: gap: %s\n' "$me" "$data" >&2
                fi
                if [ -n "$prefix_ids" ]; then
                    printf '%s\n' "$data" | while IFS= read -r l || [ -n "$l" ]; do
                        printf '%s %s %s\n' "${block_id:--}" "${ev:--}" "$l"
                    done
                elif [ "$ev" != gap ]; then
                    printf '%s\n' "$data"
                fi
                seen=$((seen + 1))
                if [ -n "$count" ] && [ "$seen" -ge "$count" ]; then
                    exit 0
                fi
            fi
            ev=
            data=
            ndata=0
            block_id=
            ;;
        :*) ;;
        data:* | data)
            v=${line#data}
            v=${v#:}
            v=${v# }
            if [ "$ndata" -eq 0 ]; then data=$v; else data="$data
$v"; fi
            ndata=$((ndata + 1))
            ;;
        event:* | event) v=${line#event}; v=${v#:}; ev=${v# } ;;
        id:* | id) v=${line#id}; v=${v#:}; id_buf=${v# }; block_id=$id_buf ;;
        retry:*)
            v=${line#retry:}
            v=${v# }
            case $v in '' | *[!0-9]*) ;; *) retry_ms=$v ;; esac
            ;;
        *) other=$line ;; # not SSE: an error body
        esac
    done <"$tmp/body"
    [ -n "$other" ] || other=$line # an error body without a final newline
    wait "$curl_pid"
    rc=$?
    curl_pid=
    status=$(sed -n 's/^HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$tmp/head" | tail -n 1)
    case $status in
    200 | '') ;; # stream ended / network error: reconnect
    204) exit 0 ;;
    408 | 429 | 5??) printf '%s: HTTP %s %s, retrying\n' "$me" "$status" "$other" >&2 ;;
    *) die 1 "GET $url: HTTP $status $other" ;;
    esac
    # a stream that just ended (gateway restart) is normal; anything else is worth a line
    if [ "$rc" -ne 0 ] && [ -z "$status" ]; then
        printf '%s: %s, retrying\n' "$me" "$(head -n 1 "$tmp/err")" >&2
    fi
    sleep "$(awk -v ms="$retry_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
done
