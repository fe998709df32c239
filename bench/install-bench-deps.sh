#!/usr/bin/env bash
# bench/install-bench-deps.sh -- the Debian packages that only the benchmarks need (never CI):
# nginx with the nchan module (the comparison baseline of bench/compare.py) and redis-tools for
# redis-benchmark. The project's own build dependencies stay in scripts/install-deps.sh.
#
#   bench/install-bench-deps.sh
#
# Debian's nginx package would start a system nginx on :80 when installed; compare.py never uses
# it (it runs its own nginx in a temporary directory), so it is stopped again if it was started.
set -euo pipefail

PKGS=(nginx-light libnginx-mod-nchan redis-server redis-tools)
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
        $SUDO systemctl stop nginx
        $SUDO systemctl disable --quiet nginx || true
    fi
fi
nginx -v 2>&1
dpkg-query -W -f='libnginx-mod-nchan ${Version}\n' libnginx-mod-nchan
