#!/usr/bin/env bash
# install-deps.sh -- install the Debian 12 packages pipecast needs to build, test and run.
# Does nothing when they are all installed already. Works as root (e.g. in a Dockerfile)
# or as a user with sudo.
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build pkg-config clang clang-format
    libhiredis-dev libevent-dev libcivetweb-dev libcjson-dev libcmocka-dev libssl-dev
    redis-server redis-tools python3 curl
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1 ||
        ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
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
echo "install-deps: done"
