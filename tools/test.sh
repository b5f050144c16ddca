#!/usr/bin/env bash
# test.sh: installs dependencies, builds, and runs every test binary with CTest, twice: in the
# normal build (build/) and in a build with -fsanitize=address,undefined (build-asan/), so
# memory errors and undefined behaviour fail the run. Then it fuzzes every parser for
# LB_FUZZ_SECONDS (default 20) each with tools/fuzz.sh (Clang, libFuzzer; build-fuzz/).
# LB_NO_SANITIZE=1 skips the second pass, LB_NO_FUZZ=1 the fuzzing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${LB_BUILD_DIR:-$root/build}"
"$root/tools/setup.sh"
LB_BUILD_DIR="$build" "$root/tools/build.sh"
(cd "$build" && ctest --output-on-failure -j"$(nproc)")
if [ -z "${LB_NO_SANITIZE:-}" ]; then
    echo "== again under AddressSanitizer and UndefinedBehaviorSanitizer"
    LB_BUILD_DIR="$build-asan" "$root/tools/build.sh" -DLB_SANITIZE=ON
    (cd "$build-asan" && ctest --output-on-failure -j"$(nproc)")
fi
if [ -z "${LB_NO_FUZZ:-}" ]; then
    echo "== fuzzing every parser (tools/fuzz.sh)"
    "$root/tools/fuzz.sh"
fi
