#!/usr/bin/env bash
# install-deps.sh -- install the Debian 12 packages pipecast needs to build, test and run, and
# the browser tests' npm packages (tests/browser: playwright-core, driving Debian's chromium).
# Does nothing when they are all installed already. Works as root (e.g. in a Dockerfile)
# or as a user with sudo.
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build pkg-config clang clang-format
    libhiredis-dev libevent-dev libcivetweb-dev libcjson-dev libcmocka-dev libssl-dev
    redis-server redis-tools python3 curl chromium
)
# node and npm for the browser tests: checked as commands, since the machines may carry a
# newer Node build (that provides npm itself) than Debian's nodejs package.
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1 ||
        ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done

# Browser tests: npm ci in tests/browser when its node_modules is missing (absent from a tree
# that has no tests/browser, e.g. the Docker build stage, which copies this script alone).
npm_deps() {
    local dir
    dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
    [ -f "$dir/package.json" ] || return 0
    [ -d "$dir/node_modules/playwright-core" ] && return 0
    echo "install-deps: npm packages of tests/browser"
    if [ -f "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund)
    else
        (cd "$dir" && npm install --no-audit --no-fund)
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    npm_deps
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2
        exit 1
    }
    SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing (fresh images ship without them) or when
# the first install attempt fails because they are stale.
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
    "${SUDO[@]}" apt-get update
fi
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
npm_deps
echo "install-deps: done"
