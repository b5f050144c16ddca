#!/usr/bin/env bash
# test.sh: installs dependencies, builds, and runs every test binary with CTest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${LB_BUILD_DIR:-$root/build}"
"$root/tools/setup.sh"
LB_BUILD_DIR="$build" "$root/tools/build.sh"
cd "$build"
ctest --output-on-failure -j"$(nproc)"
