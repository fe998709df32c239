#!/usr/bin/env bash
# test.sh -- install the dependencies, then build and run every test layer:
#   1. debug preset: unit + integration + browser tests (ctest -j2)
#   2. asan preset (ASan + UBSan): unit + integration tests again (the browser layer
#      left out: it tests the page, not the C code, and would only add minutes)
#   3. release preset build (what scripts/run.sh builds; -O2 warns where -O0 does not), and the
#      clang-format check of src/ include/ tests/
#   4. tests/fuzz/run-all.sh 20 (20 s of fuzzing per target), when present
# Runs every step even when an earlier one fails; exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

JOBS=${PIPECAST_TEST_JOBS:-2}
declare -a PASSED=() FAILED=() SKIPPED=()

step() { # step <name> <command...>
    local name=$1
    shift
    echo
    echo "=== test.sh: $name"
    local t0=$SECONDS
    if "$@"; then
        PASSED+=("$name")
        echo "=== test.sh: $name: ok ($((SECONDS - t0)) s)"
    else
        FAILED+=("$name")
        echo "=== test.sh: $name: FAILED ($((SECONDS - t0)) s)"
        return 1
    fi
}

build() { cmake --preset "$1" && cmake --build --preset "$1"; }

format_check() {
    local files
    files=$(find src include tests -type f \( -name '*.c' -o -name '*.h' \) | sort)
    [ -n "$files" ] || return 0
    # shellcheck disable=SC2086
    clang-format --dry-run -Werror $files
}

if ! step "install deps" scripts/install-deps.sh; then
    echo "test.sh: FAIL (could not install dependencies)"
    exit 1
fi

if step "build debug" build debug; then
    step "ctest debug" ctest --preset debug -j"$JOBS" --output-on-failure
else
    SKIPPED+=("ctest debug")
fi

if step "build asan" build asan; then
    step "ctest asan" ctest --preset asan -j"$JOBS" --output-on-failure -LE browser
else
    SKIPPED+=("ctest asan")
fi

# the preset scripts/run.sh builds: -O2 finds warnings (format-truncation) -O0 does not
step "build release" build release

step "clang-format" format_check

if [ -x tests/fuzz/run-all.sh ]; then
    step "fuzz (20 s per target)" tests/fuzz/run-all.sh 20
elif [ -f tests/fuzz/run-all.sh ]; then
    step "fuzz (20 s per target)" bash tests/fuzz/run-all.sh 20
else
    SKIPPED+=("fuzz (tests/fuzz/run-all.sh not present)")
fi

join() { local IFS=","; echo "$*" | sed 's/,/, /g'; }
echo
summary="passed: $(join "${PASSED[@]}")"
[ ${#SKIPPED[@]} -gt 0 ] && summary+="; skipped: $(join "${SKIPPED[@]}")"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "test.sh: FAIL (failed: $(join "${FAILED[@]}"); $summary) in $SECONDS s"
    exit 1
fi
echo "test.sh: PASS ($summary) in $SECONDS s"
