#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets of tests/fuzz with Clang (-fsanitize=fuzzer,address,
# undefined, into build-fuzz/) and runs each for LB_FUZZ_SECONDS (default 20) with one worker,
# starting from its committed seeds (tests/fuzz/corpus/NAME) and regression inputs
# (tests/fuzz/regress/NAME). It prints the executions of every target. A crash, sanitizer
# report, leak, timeout or out-of-memory fails the run (exit 1); the input is saved under
# build-fuzz/artifacts/ and the command that reproduces it is printed.
# Clang or libFuzzer missing is an error, never a silent skip (tools/setup.sh installs clang
# and libclang-rt-dev).
#
#   tools/fuzz.sh                         every target, 20 s each
#   LB_FUZZ_SECONDS=300 LB_FUZZ_TARGETS="model qconfig" tools/fuzz.sh -max_len=8192
#
# Environment: LB_FUZZ_SECONDS (per target), LB_FUZZ_TARGETS (a subset, space separated),
# LB_FUZZ_BUILD_DIR (default build-fuzz). Arguments are passed on to every libFuzzer run.
# New inputs the fuzzer finds are kept in build-fuzz/corpus/NAME (not committed), so later
# local runs go on from there; CI starts from the seeds alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${LB_FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${LB_FUZZ_SECONDS:-20}"
die() { echo "fuzz.sh: FAIL: $*" >&2; exit 1; }

command -v clang >/dev/null || die "clang not found (tools/setup.sh installs clang and libclang-rt-dev)"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
    'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    > "$probe/p.c"
clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2> "$probe/err" ||
    { cat "$probe/err" >&2; die "clang cannot link libFuzzer (apt-get install libclang-rt-dev)"; }

echo "== building the fuzz targets with $(clang --version | head -n 1)"
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DLB_FUZZ=ON -DLB_TESTS=OFF > /dev/null
cmake --build "$build" --target lb_fuzz_all -j"$(nproc)" > "$build/build.log" 2>&1 ||
    { tail -n 40 "$build/build.log" >&2; die "build failed (log: $build/build.log)"; }

targets="${LB_FUZZ_TARGETS:-$(cat "$build/fuzz_targets.txt")}"
[ -n "$targets" ] || die "no fuzz targets listed in $build/fuzz_targets.txt"
mkdir -p "$build/artifacts" "$build/logs"
failed=()
printf '%-12s %12s %10s %8s %8s  %s\n' target executions "exec/s" corpus "rss MB" result
for t in $targets; do
    exe="$build/tests/fuzz/fuzz_$t"
    [ -x "$exe" ] || die "no fuzz target '$t' ($exe)"
    work="$build/corpus/$t"
    mkdir -p "$work"
    dirs=("$work" "$root/tests/fuzz/corpus/$t")
    [ -d "$root/tests/fuzz/regress/$t" ] && dirs+=("$root/tests/fuzz/regress/$t")
    opts=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
          -artifact_prefix="$build/artifacts/$t-")
    [ -f "$root/tests/fuzz/$t.dict" ] && opts+=(-dict="$root/tests/fuzz/$t.dict")
    log="$build/logs/$t.log"
    result=ok
    "$exe" "${opts[@]}" "$@" "${dirs[@]}" > "$log" 2>&1 || result=FAILED
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    corp=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 |
           sed -n 's/.*corp: \([0-9]*\).*/\1/p')
    printf '%-12s %12s %10s %8s %8s  %s\n' "$t" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "${corp:-?}" "$(stat peak_rss_mb)" "$result"
    if [ "$result" != ok ]; then
        failed+=("$t")
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -n 20 >&2 || true
        echo "  log: $log; reproduce: $exe ARTIFACT (or build/tests/fuzz/replay_$t ARTIFACT)" >&2
    fi
done
[ ${#failed[@]} -eq 0 ] || die "fuzz targets failed: ${failed[*]} (inputs in $build/artifacts/)"
echo "fuzz.sh: ${seconds} s per target, no crash"
