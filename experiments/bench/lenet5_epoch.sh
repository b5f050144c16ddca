#!/usr/bin/env bash
# lenet5_epoch.sh: training speed of one epoch of LeNet-5 on MNIST, lowbit vs PyTorch 1.13,
# side by side at each thread count. Writes experiments/results/bench_lenet5_epoch.md and
# prints the same table. See experiments/bench/README.md.
#
# Environment (all optional):
#   THREADS="1 2"   thread counts to measure
#   REPEAT=1        runs per framework and thread count, alternating lowbit/PyTorch; best kept
#   EPOCHS=1        epochs per run
#   MAX_STEPS=      stop each epoch after N steps (smoke runs only, e.g. MAX_STEPS=50)
#   BATCH=64        mini-batch size
#   DATA_DIR=       folder with the MNIST IDX .gz files
#                   [../shared/datasets/mnist from the repo root, else /work/shared/datasets/mnist]
#   OUT=            results file [experiments/results/bench_lenet5_epoch.md]
#   PYTHON=/usr/bin/python3   interpreter with python3-torch
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."
ROOT=$(pwd)

THREADS=${THREADS:-"1 2"}
REPEAT=${REPEAT:-1}
EPOCHS=${EPOCHS:-1}
MAX_STEPS=${MAX_STEPS:-}
BATCH=${BATCH:-64}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-experiments/results/bench_lenet5_epoch.md}
BUILD=build

die() { echo "lenet5_epoch.sh: $*" >&2; exit 1; }

for v in REPEAT EPOCHS BATCH; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: expected a positive integer"
done
[[ -z $MAX_STEPS || $MAX_STEPS =~ ^[1-9][0-9]*$ ]] || die "MAX_STEPS=$MAX_STEPS: expected a positive integer"
for t in $THREADS; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "THREADS: '$t' is not a positive integer"; done

# ---- prerequisites ---------------------------------------------------------------------
[[ -x $PYTHON ]] || die "$PYTHON not found (PyTorch comes from Debian: apt-get install python3-torch)"
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null) ||
    die "$PYTHON cannot import torch; install it with: apt-get install python3-torch"

if [[ -z ${DATA_DIR:-} ]]; then
    for d in ../shared/datasets/mnist /work/shared/datasets/mnist; do
        if [[ -e $d/train-images-idx3-ubyte.gz || -e $d/train-images-idx3-ubyte ]]; then
            DATA_DIR=$d; break
        fi
    done
fi
[[ -n ${DATA_DIR:-} ]] || die "MNIST not found in ../shared/datasets/mnist or /work/shared/datasets/mnist; set DATA_DIR"
DATA_DIR=$(readlink -f "$DATA_DIR")

# ---- build lowbit if needed (an up-to-date build is a no-op) ----------------------------
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    echo "== configuring $BUILD (RelWithDebInfo)" >&2
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
SANITIZE=$(sed -n 's/^LB_SANITIZE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
NATIVE=$(sed -n 's/^LB_NATIVE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
case $BUILD_TYPE in
    Release|RelWithDebInfo) ;;
    *) die "$BUILD is configured as '${BUILD_TYPE:-no build type}'; a speed comparison needs Release or RelWithDebInfo (cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=RelWithDebInfo)" ;;
esac
[[ ${SANITIZE:-OFF} =~ ^(OFF|0|FALSE|NO)$ ]] || die "$BUILD has LB_SANITIZE=$SANITIZE; reconfigure with -DLB_SANITIZE=OFF"
echo "== building lowbit ($BUILD_TYPE)" >&2
cmake --build "$BUILD" -j"$(nproc)" --target lowbit >&2
LOWBIT=$ROOT/$BUILD/lowbit

# ---- runs ------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_lenet5.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

EXTRA=()
[[ -n $MAX_STEPS ]] && EXTRA=(--max-steps "$MAX_STEPS")
COMMON=(--epochs "$EPOCHS" --batch "$BATCH" --data-dir "$DATA_DIR" "${EXTRA[@]}")
LOWBIT_CMD="$BUILD/lowbit train --model lenet5 --data mnist ${COMMON[*]} --threads T --json --out TMPDIR"
TORCH_CMD="OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=T $PYTHON experiments/bench/torch_lenet5.py ${COMMON[*]} --threads T"

# Runs a command, keeps its full output in a log, appends its last line (the JSON summary)
# to $TMP/results.jsonl tagged with the framework and repeat.
run() {
    local tag=$1 rep=$2; shift 2
    local log=$TMP/$tag-$rep.log
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        die "$tag run failed: $*"
    fi
    local last
    last=$(tail -n 1 "$log")
    [[ $last == "{"* ]] || { cat "$log" >&2; die "$tag: last output line is not JSON"; }
    printf '{"fw":"%s","rep":%d,"r":%s}\n' "$tag" "$rep" "$last" >>"$TMP/results.jsonl"
    "$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-8s %2d threads: %8.0f img/s  train %.2f s  test acc %.4f  rss %.0f MB" % (sys.argv[2], r["threads"], r["train_images_per_s"], r["train_seconds"], r["test_acc"], r["peak_rss_mb"]))' "$last" "$tag" >&2
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for t in $THREADS; do
    for ((rep = 1; rep <= REPEAT; rep++)); do
        echo "== threads $t, repeat $rep/$REPEAT" >&2
        run lowbit "$rep" "$LOWBIT" train --model lenet5 --data mnist "${COMMON[@]}" \
            --threads "$t" --json --out "$TMP/run-lowbit-$t-$rep"
        run pytorch "$rep" env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS="$t" \
            "$PYTHON" experiments/bench/torch_lenet5.py "${COMMON[@]}" --threads "$t"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------------------
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
[[ -n $CPU ]] || CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
CORES=$(nproc)
OPENBLAS=$(dpkg-query -W -f='${Package} ${Version}\n' 'libopenblas0-*' 2>/dev/null |
           awk 'NF == 2 { printf "%s%s %s", sep, $1, $2; sep = ", " }')
[[ -n $OPENBLAS ]] || OPENBLAS=unknown
INVOCATION="THREADS=\"$THREADS\" REPEAT=$REPEAT EPOCHS=$EPOCHS BATCH=$BATCH${MAX_STEPS:+ MAX_STEPS=$MAX_STEPS} experiments/bench/lenet5_epoch.sh"
mkdir -p "$(dirname "$OUT")"

export CPU CORES OPENBLAS TORCH_VERSION INVOCATION LOWBIT_CMD TORCH_CMD BUILD_TYPE NATIVE \
       EPOCHS MAX_STEPS BATCH REPEAT LOAD_BEFORE LOAD_AFTER
"$PYTHON" - "$TMP/results.jsonl" "$OUT" <<'EOF'
import json, os, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
e = os.environ
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                     text=True).stdout.strip() or "unknown"
best = {}
for r in rows:
    k = (r["r"]["threads"], r["fw"])
    if k not in best or r["r"]["train_images_per_s"] > best[k]["train_images_per_s"]:
        best[k] = r["r"]
threads = sorted({k[0] for k in best})
smoke = bool(e.get("MAX_STEPS"))
L = []
L.append("# LeNet-5 on MNIST: one training epoch, lowbit vs PyTorch\n")
if smoke:
    L.append("**SMOKE RUN (MAX_STEPS=%s): not an epoch, figures not meaningful.**\n" % e["MAX_STEPS"])
L.append("- Machine: %s, %s cores; OpenBLAS %s; PyTorch %s; %s UTC; lowbit %s (%s, LB_NATIVE=%s)"
         % (e["CPU"], e["CORES"], e["OPENBLAS"], e["TORCH_VERSION"],
            datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), rev, e["BUILD_TYPE"],
            e.get("NATIVE") or "OFF"))
L.append("- Load average (1/5/15 min) before: %s, after: %s" % (e["LOAD_BEFORE"], e["LOAD_AFTER"]))
L.append("- Command: `%s`" % e["INVOCATION"])
L.append("  - lowbit: `%s`" % e["LOWBIT_CMD"])
L.append("  - PyTorch: `%s`" % e["TORCH_CMD"])
L.append("- %s epoch(s), batch %s, best of %s alternating run(s) per framework and thread count "
         "(best = highest img/s). img/s counts training steps only (no evaluation, no data "
         "loading); epoch s is the whole run including the test-set evaluation; test acc is "
         "after the run.\n" % (e["EPOCHS"], e["BATCH"], e["REPEAT"]))
L.append("| threads | lowbit img/s | PyTorch img/s | lowbit/PyTorch | lowbit train s | PyTorch train s "
         "| lowbit epoch s | PyTorch epoch s | lowbit test acc | PyTorch test acc "
         "| lowbit peak RSS MB | PyTorch peak RSS MB |")
L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in threads:
    a, b = best.get((t, "lowbit")), best.get((t, "pytorch"))
    ratio = a["train_images_per_s"] / b["train_images_per_s"] if a and b and b["train_images_per_s"] else float("nan")
    f = lambda r, k, fmt: (fmt % r[k]) if r else "-"
    L.append("| %d | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        t, f(a, "train_images_per_s", "%.0f"), f(b, "train_images_per_s", "%.0f"), ratio,
        f(a, "train_seconds", "%.2f"), f(b, "train_seconds", "%.2f"),
        f(a, "seconds", "%.2f"), f(b, "seconds", "%.2f"),
        f(a, "test_acc", "%.4f"), f(b, "test_acc", "%.4f"),
        f(a, "peak_rss_mb", "%.0f"), f(b, "peak_rss_mb", "%.0f")))
L.append("\n<details><summary>All runs (JSON summary lines)</summary>\n\n```")
for r in rows:
    L.append(json.dumps(r, separators=(",", ":")))
L.append("```\n</details>")
text = "\n".join(L) + "\n"
open(sys.argv[2], "w").write(text)
sys.stdout.write(text)
EOF
echo "== wrote $OUT" >&2
