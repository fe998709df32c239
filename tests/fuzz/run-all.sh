#!/bin/sh
# run-all.sh SECONDS -- build the libFuzzer targets (preset "fuzz", clang) and run
# each for SECONDS seconds on a copy of its seed corpus. Exit 1 if any target
# finds a crash, a leak or a broken invariant (the reproducer is kept and named).
set -eu

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/../.." && pwd)
targets="fuzz_splitter fuzz_sse fuzz_id fuzz_url"

cd "$root"
cmake --preset fuzz >/dev/null
# only the fuzz targets: the programs are not needed here
cmake --build --preset fuzz --target $targets

work=$(mktemp -d "${TMPDIR:-/tmp}/pipecast-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
failed=""
for t in $targets; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    cp "$root/tests/fuzz/corpus/$t/"* "$work/$t/corpus/"
    echo "== $t: ${secs}s"
    if ! "$root/build/fuzz/tests/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t/log" 2>&1; then
        failed="$failed $t"
        tail -n 40 "$work/$t/log"
        keep="$root/build/fuzz/crashes/$t"
        mkdir -p "$keep"
        cp "$work/$t/artifacts/"* "$keep/" 2>/dev/null || true
        echo "== $t: FAILED (reproducers in $keep)"
    else
        grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$t/log" || true
        echo "== $t: ok"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzzing found problems in:$failed" >&2
    exit 1
fi
echo "all fuzz targets ran ${secs}s without a crash"
