#!/usr/bin/env bash
# models.sh: training speed and memory of the zoo models, lowbit vs PyTorch 1.13 side by side
# (issue 6). For every model x batch x threads x {fp32, w4a4} it trains a few steps in lowbit
# and in PyTorch (torch_models.py, same model and fake-quant definition), alternating, best of
# REPEAT; measures the machine's sgemm peak in the same run (sgemm_peak.c); and writes
# experiments/results/bench_models.md (also printed). See experiments/bench/README.md.
#
# Environment (all optional):
#   MODELS="mlp lenet5 vgg-small resnet20"
#   BATCHES="64 128"   THREADS="1 2"   QUANTS="fp32 w4a4"
#   STEPS=             timed steps per run [per model: mlp 460, lenet5 460, vgg-small 20,
#                      resnet20 50; mlp and lenet5 stay within one epoch at batch 128]
#   WARMUP=5           untimed PyTorch steps before the timed ones (lowbit runs WARMUP+STEPS
#                      steps and counts them all, its own train_images_per_s)
#   REPEAT=1           runs per framework and configuration, alternating; best img/s kept
#   SMALL_REPEAT=3     the same for mlp and lenet5, whose runs last seconds (load spikes on a
#                      shared machine swing a single one by 30%)
#   DIGITS=fashion-mnist   data set of mlp and lenet5 (mnist or fashion-mnist); the CNNs
#                      use cifar10
#   DATA_DIR=          passed to both as --data-dir [their default lookup]
#   TORCH_CL=1         PyTorch CNNs in channels-last memory format: 1, 0, or auto (run both,
#                      keep the faster per configuration)
#   PASSIVE_MODELS="mlp lenet5"  models for which PyTorch is also run with OMP_WAIT_POLICY=passive
#                      (the faster of the two is kept and named)
#   SGEMM_N=2048       size of the sgemm peak measurement
#   OUT=experiments/results/bench_models.md
#   PYTHON=/usr/bin/python3   interpreter with python3-torch
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."
ROOT=$(pwd)

MODELS=${MODELS:-"mlp lenet5 vgg-small resnet20"}
BATCHES=${BATCHES:-"64 128"}
THREADS=${THREADS:-"1 2"}
QUANTS=${QUANTS:-"fp32 w4a4"}
STEPS=${STEPS:-}
WARMUP=${WARMUP:-5}
REPEAT=${REPEAT:-1}
SMALL_REPEAT=${SMALL_REPEAT:-3}
DIGITS=${DIGITS:-fashion-mnist}
DATA_DIR=${DATA_DIR:-}
TORCH_CL=${TORCH_CL:-1}
PASSIVE_MODELS=${PASSIVE_MODELS-"mlp lenet5"}
SGEMM_N=${SGEMM_N:-2048}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-experiments/results/bench_models.md}
BUILD=build

die() { echo "models.sh: $*" >&2; exit 1; }
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

for v in REPEAT SMALL_REPEAT SGEMM_N; do posint "${!v}" || die "$v=${!v}: expected a positive integer"; done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP: expected an integer >= 0"
[[ -z $STEPS ]] || posint "$STEPS" || die "STEPS=$STEPS: expected a positive integer"
for m in $MODELS; do
    case $m in mlp|lenet5|vgg-small|resnet20) ;; *) die "MODELS: unknown model '$m'" ;; esac
done
for b in $BATCHES; do posint "$b" || die "BATCHES: '$b' is not a positive integer"; done
for t in $THREADS; do posint "$t" || die "THREADS: '$t' is not a positive integer"; done
for q in $QUANTS; do [[ $q == fp32 || $q == w4a4 ]] || die "QUANTS: '$q' (expected fp32, w4a4)"; done
[[ $DIGITS == mnist || $DIGITS == fashion-mnist ]] || die "DIGITS=$DIGITS: expected mnist or fashion-mnist"
[[ $TORCH_CL =~ ^(0|1|auto)$ ]] || die "TORCH_CL=$TORCH_CL: expected 0, 1 or auto"

steps_for() {
    if [[ -n $STEPS ]]; then echo "$STEPS"; return; fi
    case $1 in mlp) echo 460 ;; lenet5) echo 460 ;; vgg-small) echo 20 ;; resnet20) echo 50 ;; esac
}
repeat_for() { case $1 in mlp|lenet5) echo "$SMALL_REPEAT" ;; *) echo "$REPEAT" ;; esac; }
data_for() { case $1 in mlp|lenet5) echo "$DIGITS" ;; *) echo cifar10 ;; esac; }

# ---- prerequisites ---------------------------------------------------------------------
[[ -x $PYTHON ]] || die "$PYTHON not found (PyTorch comes from Debian: apt-get install python3-torch)"
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null) ||
    die "$PYTHON cannot import torch; install it with: apt-get install python3-torch"
pkg-config --exists openblas || die "pkg-config finds no openblas (apt-get install libopenblas-dev)"

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

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_models.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
RESULTS=$TMP/results.jsonl
: >"$RESULTS"

echo "== building sgemm_peak" >&2
# shellcheck disable=SC2046  # pkg-config output is meant to split into flags
cc -O2 -o "$TMP/sgemm_peak" experiments/bench/sgemm_peak.c $(pkg-config --cflags --libs openblas) ||
    die "cannot compile experiments/bench/sgemm_peak.c against OpenBLAS"

# lowbit options that only some versions have: no augmentation (PyTorch does none), as the
# comparison is of the training step
LB_EXTRA=()
"$LOWBIT" train --help 2>/dev/null | grep -q -- '--augment' && LB_EXTRA+=(--augment none)
DD=()
[[ -n $DATA_DIR ]] && DD=(--data-dir "$DATA_DIR")

# PyTorch variants per model, one "name|env|args" a line: memory layouts (CNNs) x OpenMP wait
# policies (PASSIVE_MODELS)
torch_variants() {
    local m=$1 layouts=() waits=("|") l w
    if [[ $m == mlp ]]; then
        layouts=("nchw|")
    else
        case $TORCH_CL in
            1) layouts=("channels-last|--channels-last") ;;
            0) layouts=("nchw|") ;;
            auto) layouts=("nchw|" "channels-last|--channels-last") ;;
        esac
    fi
    [[ " $PASSIVE_MODELS " == *" $m "* ]] && waits=("omp-default|" "omp-passive|OMP_WAIT_POLICY=passive")
    for l in "${layouts[@]}"; do
        for w in "${waits[@]}"; do
            local name=${l%%|*}
            [[ -n ${w%%|*} ]] && name+=" ${w%%|*}"
            printf '%s|%s|%s\n' "$name" "${w#*|}" "${l#*|}"
        done
    done
}

# sgemm peak at each thread count; appended as {"kind":"sgemm",...}
sgemm() {
    local when=$1 t
    for t in $THREADS; do
        local line
        line=$(OPENBLAS_NUM_THREADS=$t "$TMP/sgemm_peak" "$SGEMM_N" 5) || die "sgemm_peak failed"
        printf '{"kind":"sgemm","when":"%s","threads":%d,"r":%s}\n' "$when" "$t" "$line" >>"$RESULTS"
        echo "   sgemm ${SGEMM_N}^3 $when, $t thread(s): $(grep -o '"gflops":[0-9.]*' <<<"$line" | cut -d: -f2) GFLOP/s" >&2
    done
}

# One run: appends {"kind":"run","fw":...,"status":"ok"|"no data"|"failed",...}.
# Arguments: fw variant model batch threads quant rep -- command...
run() {
    local fw=$1 variant=$2 m=$3 b=$4 t=$5 q=$6 rep=$7; shift 8
    local log=$TMP/$fw-$variant-$m-$b-$t-$q-$rep
    local status=ok r=null note=""
    if "$@" >"$log.out" 2>"$log.err"; then
        local last
        last=$(tail -n 1 "$log.out")
        if [[ $last == "{"* ]]; then r=$last; else status=failed; note="last output line is not JSON"; fi
    else
        status=failed
        if grep -qiE "unknown dataset|not found|no such file|cannot open" "$log.err" "$log.out"; then
            status="no data"
        fi
        note=$(grep -v '^\s*$' "$log.err" | tail -n 1 | cut -c1-200)
        [[ -n $note ]] || note=$(tail -n 1 "$log.out" | cut -c1-200)
    fi
    "$PYTHON" - "$fw" "$variant" "$m" "$b" "$t" "$q" "$rep" "$status" "$note" "$r" >>"$RESULTS" <<'EOF'
import json, sys
fw, variant, m, b, t, q, rep, status, note, r = sys.argv[1:]
print(json.dumps({"kind": "run", "fw": fw, "variant": variant, "model": m, "batch": int(b),
                  "threads": int(t), "quant": q, "rep": int(rep), "status": status,
                  "note": note, "r": json.loads(r)}))
EOF
    if [[ $status == ok ]]; then
        "$PYTHON" -c 'import json,sys; r=json.loads(sys.argv[1]); print("   %-8s %-14s %8.0f img/s  rss %5.0f MB" % (sys.argv[2], sys.argv[3], r["train_images_per_s"], r["peak_rss_mb"]))' "$r" "$fw" "$variant" >&2
    else
        echo "   $fw $variant: $status ($note)" >&2
    fi
    rm -rf "$TMP/run-out"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== sgemm peak" >&2
sgemm before

# decode CIFAR-10 once for each side before any measured run, so that no measured run's
# peak RSS includes unpacking or decoding: PyTorch keeps the pixels as .npy in its cache,
# lowbit (where it has a CIFAR-10 loader) in its own .lbds cache; one MLP step loads it
for m in $MODELS; do
    if [[ $(data_for "$m") == cifar10 ]]; then
        echo "== preparing CIFAR-10 (PyTorch, then lowbit)" >&2
        "$PYTHON" experiments/bench/torch_models.py --model "$m" "${DD[@]}" --prepare-data >&2 ||
            echo "   (PyTorch cannot read CIFAR-10; its rows will say so)" >&2
        "$LOWBIT" train --model mlp --data cifar10 "${DD[@]}" --epochs 1 --max-steps 1 \
            --threads 1 --out "$TMP/run-out" >"$TMP/prepare.log" 2>&1 ||
            echo "   (lowbit cannot read CIFAR-10: $(tail -n 1 "$TMP/prepare.log"); its rows will say so)" >&2
        rm -rf "$TMP/run-out"
        break
    fi
done

for m in $MODELS; do
    data=$(data_for "$m")
    n=$(steps_for "$m")
    nrep=$(repeat_for "$m")
    total=$((WARMUP + n))
    mapfile -t variants < <(torch_variants "$m")
    for b in $BATCHES; do
        for t in $THREADS; do
            for q in $QUANTS; do
                QA=()
                [[ $q == w4a4 ]] && QA=(--quant w4a4)
                for ((rep = 1; rep <= nrep; rep++)); do
                    echo "== $m ($data) batch $b, $t thread(s), $q, repeat $rep/$nrep" >&2
                    run lowbit lowbit "$m" "$b" "$t" "$q" "$rep" -- \
                        "$LOWBIT" train --model "$m" --data "$data" "${DD[@]}" --batch "$b" \
                        --threads "$t" "${QA[@]}" --epochs 1 --max-steps "$total" \
                        "${LB_EXTRA[@]}" --json --out "$TMP/run-out"
                    for v in "${variants[@]}"; do
                        IFS='|' read -r vname venv vargs <<<"$v"
                        # shellcheck disable=SC2086  # venv/vargs are empty or one word
                        run pytorch "$vname" "$m" "$b" "$t" "$q" "$rep" -- \
                            env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS="$t" $venv \
                            "$PYTHON" experiments/bench/torch_models.py --model "$m" \
                            --data "$data" "${DD[@]}" --batch "$b" --threads "$t" --quant "$q" \
                            --steps "$n" --warmup-steps "$WARMUP" $vargs
                    done
                done
            done
        done
    done
done
echo "== sgemm peak (again, after the runs)" >&2
sgemm after
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------------------
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
[[ -n $CPU ]] || CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
CORES=$(nproc)
OPENBLAS_PKG=$(dpkg-query -W -f='${Package} ${Version}\n' 'libopenblas0-*' 2>/dev/null |
               awk 'NF == 2 { printf "%s%s %s", sep, $1, $2; sep = ", " }')
# shellcheck disable=SC2089,SC2090  # a string to print, never executed
INVOCATION="MODELS=\"$MODELS\" BATCHES=\"$BATCHES\" THREADS=\"$THREADS\" QUANTS=\"$QUANTS\"${STEPS:+ STEPS=$STEPS} WARMUP=$WARMUP REPEAT=$REPEAT SMALL_REPEAT=$SMALL_REPEAT TORCH_CL=$TORCH_CL experiments/bench/models.sh"
FLOPS_JSON=$("$PYTHON" experiments/bench/flops.py --json)
STEPS_DESC=""
for m in $MODELS; do STEPS_DESC+="$m $(steps_for "$m"), "; done
mkdir -p "$(dirname "$OUT")"

# shellcheck disable=SC2090  # INVOCATION is only printed
export CPU CORES OPENBLAS_PKG TORCH_VERSION INVOCATION BUILD_TYPE NATIVE WARMUP REPEAT SMALL_REPEAT \
       LOAD_BEFORE LOAD_AFTER FLOPS_JSON STEPS_DESC TORCH_CL PASSIVE_MODELS SGEMM_N
"$PYTHON" - "$RESULTS" "$OUT" <<'EOF'
import datetime, json, os, subprocess, sys
e = os.environ
rows = [json.loads(l) for l in open(sys.argv[1])]
flops = json.loads(e["FLOPS_JSON"])
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                     text=True).stdout.strip() or "unknown"

peak, blas_cfg = {}, ""
for r in rows:
    if r["kind"] == "sgemm":
        peak.setdefault(r["threads"], []).append((r["when"], r["r"]["gflops"]))
        blas_cfg = r["r"]["openblas_config"]

# best run per (fw, model, batch, threads, quant); failed/no-data runs only if nothing ran
best, status, torch_ver = {}, {}, None
for r in rows:
    if r["kind"] != "run":
        continue
    k = (r["fw"], r["model"], r["batch"], r["threads"], r["quant"])
    if r["status"] != "ok":
        status.setdefault(k, (r["status"], r["note"]))
        continue
    if k not in best or r["r"]["train_images_per_s"] > best[k]["r"]["train_images_per_s"]:
        best[k] = r
configs = []
for r in rows:
    if r["kind"] == "run":
        c = (r["model"], r["batch"], r["threads"], r["quant"])
        if c not in configs:
            configs.append(c)

# the issue's targets: lowbit/PyTorch img/s at fp32 and w4a4
TARGET = {"mlp": (1.5, 3.0), "lenet5": (2.0, 2.0), "vgg-small": (1.0, 1.2),
          "resnet20": (1.0, 1.2)}


def ips(fw, c):
    b = best.get((fw,) + c)
    return b["r"]["train_images_per_s"] if b else None


def cell(fw, c, key, fmt):
    b = best.get((fw,) + c)
    if b:
        return fmt % b["r"][key]
    s = status.get((fw,) + c)
    return s[0] if s else "-"


def peak_of(t):
    v = [g for _, g in peak.get(t, [])]
    return max(v) if v else None


L = ["# Zoo models: training speed and memory, lowbit vs PyTorch\n"]
short = any(best[k]["r"].get("steps", 0) < 20 for k in best)
if short:
    L.append("**Short runs (fewer than 20 steps in some rows): a smoke test, not a benchmark.**\n")
L.append("- Machine: %s, %s cores; OpenBLAS %s (%s); PyTorch %s; %s UTC; lowbit %s (%s, "
         "LB_NATIVE=%s)" % (e["CPU"], e["CORES"], e["OPENBLAS_PKG"] or "?", blas_cfg,
                            e["TORCH_VERSION"],
                            datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), rev,
                            e["BUILD_TYPE"], e.get("NATIVE") or "OFF"))
L.append("- sgemm peak (%s^3, OpenBLAS, best of 5, measured before and after the runs): %s"
         % (e["SGEMM_N"], "; ".join("%d thread(s): %s GFLOP/s" % (
             t, " / ".join("%.1f" % g for _, g in v)) for t, v in sorted(peak.items()))))
L.append("- Load average (1/5/15 min) before: %s, after: %s (figures mean something only on "
         "an otherwise idle machine)" % (e["LOAD_BEFORE"], e["LOAD_AFTER"]))
L.append("- Command: `%s`" % e["INVOCATION"])
L.append("- Steps per run: %s timed; PyTorch runs %s untimed warm-up steps first, lowbit runs "
         "the same total and counts every step (its `train_images_per_s`, first step "
         "included: conservative for lowbit). Best of %s alternating run(s) (mlp and lenet5: %s). "
         "Both then evaluate the test set once (not timed, but in peak RSS): PyTorch at batch "
         "500 under no_grad, lowbit at the training batch."
         % (e["STEPS_DESC"].rstrip(", "), e["WARMUP"], e["REPEAT"], e["SMALL_REPEAT"]))
L.append("- PyTorch at its best setting here: `OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=T`, "
         "`torch.set_num_threads(T)`, one inter-op thread; CNNs in %s; for %s also "
         "`OMP_WAIT_POLICY=passive`, the faster kept (column \"PyTorch setting\"). Inputs are "
         "uint8 normalised per batch inside the step on both sides; no augmentation. PyTorch "
         "holds the uint8 data set in memory; lowbit streams CIFAR-10 from its decoded cache "
         "file (pixels in the page cache, not in its RSS; `--data-in-memory` would add 184 MB) "
         "and reads MNIST-style IDX files into memory."
         % ({"1": "channels-last memory format", "0": "NCHW",
             "auto": "NCHW and channels-last, the faster kept"}[e["TORCH_CL"]],
            e["PASSIVE_MODELS"] or "no model"))
L.append("- GFLOP/s = training FLOPs per image x img/s, with training FLOPs = forward MACs of "
         "the conv/linear layers x 2 x 3 (`experiments/bench/flops.py`: %s). %% peak is "
         "against the sgemm peak at the same thread count. W4A4/FP32 = lowbit's W4A4 step "
         "time over its FP32 step time (target <= 1.15).\n"
         % ", ".join("%s %.4g MFLOP" % (m, v["train_flops"] / 1e6) for m, v in flops.items()))
L.append("| model | batch | threads | quant | lowbit img/s | PyTorch img/s | lowbit/PyTorch "
         "| target | lowbit RSS MB | PyTorch RSS MB | RSS ratio | lowbit GFLOP/s | % sgemm peak "
         "| W4A4/FP32 lowbit | W4A4/FP32 PyTorch | PyTorch setting |")
L.append("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
for c in configs:
    m, b, t, q = c
    a, p = ips("lowbit", c), ips("pytorch", c)
    ratio = "%.2f" % (a / p) if a and p else "-"
    tgt = TARGET[m][0 if q == "fp32" else 1]
    met = "" if not (a and p) else (" met" if a / p >= tgt else " **not met**")
    ra, rp = best.get(("lowbit",) + c), best.get(("pytorch",) + c)
    rss = "-"
    if ra and rp:
        x = ra["r"]["peak_rss_mb"] / rp["r"]["peak_rss_mb"]
        rss = "%.2f%s" % (x, " met" if x <= 0.25 else " **not met**")
    gf = pk = "-"
    if a:
        g = flops[m]["train_flops"] * a / 1e9
        gf = "%.1f" % g
        if peak_of(t):
            pk = "%.0f%%" % (100 * g / peak_of(t))
            if m in ("vgg-small", "resnet20"):
                pk += " met" if g >= 0.7 * peak_of(t) else " **not met**"
    wq = wp = "-"
    if q == "w4a4":
        f_a, f_p = ips("lowbit", (m, b, t, "fp32")), ips("pytorch", (m, b, t, "fp32"))
        if a and f_a:
            wq = "%.2f%s" % (f_a / a, " met" if f_a / a <= 1.15 else " **not met**")
        if p and f_p:
            wp = "%.2f" % (f_p / p)
    L.append("| %s | %d | %d | %s | %s | %s | %s | >= %.1f%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        m, b, t, q, cell("lowbit", c, "train_images_per_s", "%.0f"),
        cell("pytorch", c, "train_images_per_s", "%.0f"), ratio, tgt, met,
        cell("lowbit", c, "peak_rss_mb", "%.0f"), cell("pytorch", c, "peak_rss_mb", "%.0f"),
        rss, gf, pk, wq, wp, rp["variant"] if rp else "-"))
L.append("\nTargets (issue 6), marked met / **not met**: lowbit/PyTorch img/s (the target "
         "column); RSS ratio <= 0.25; lowbit's W4A4/FP32 step <= 1.15; vgg-small and ResNet-20 "
         "at >= 70% of the sgemm peak. \"no data\": that side could not load the data set, "
         "\"failed\": it stopped otherwise (the last message is in the JSON lines below).")
L.append("\n<details><summary>All runs (JSON lines)</summary>\n\n```")
for r in rows:
    L.append(json.dumps(r, separators=(",", ":")))
L.append("```\n</details>")
text = "\n".join(L) + "\n"
open(sys.argv[2], "w").write(text)
sys.stdout.write(text)
EOF
echo "== wrote $OUT" >&2
