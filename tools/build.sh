#!/usr/bin/env bash
# build.sh: configures and builds lowbit into build/ (or $LB_BUILD_DIR). Extra arguments go
# to cmake's configure step, e.g. tools/build.sh -DLB_SANITIZE=ON.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${LB_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
