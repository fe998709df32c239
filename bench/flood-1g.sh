#!/usr/bin/env bash
# flood-1g.sh -- issue 3's 1 GB flood, by hand (CI floods 200 MB: it_jobs_flood_big).
# One job prints 10,000,000 numbered 100-byte lines (1.01 GB) as fast as it can through a
# real pipecast-runner into a private redis-server; the test asserts every line reached
# Redis (entries-added = lines + start + exit, the retained tail consecutive, exit last)
# and reports MB/s and the runner's peak RSS. Usage: bench/flood-1g.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
ROUNDS=${2:-3}
[ -x "$BUILD/bin/pipecast-runner" ] || {
    echo "flood-1g.sh: no $BUILD/bin/pipecast-runner; build first (cmake --preset release && cmake --build --preset release)" >&2
    exit 1
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), $(redis-server --version | cut -d' ' -f3)"
echo "# command: bench/flood-1g.sh $BUILD $ROUNDS"
for _ in $(seq "$ROUNDS"); do
    PC_BIN="$BUILD/bin" python3 tests/integration/test_jobs_flood.py big 10000000 2>&1 |
        grep -E 'flood:|PASS|FAIL'
done
