#!/usr/bin/env bash
# experiments/deploy/run.sh: the deployment figures for LeNet-5 on MNIST. For W8A8, W4A4,
# W2A2 and a mixed configuration (experiments/deploy/lenet5_mixed.q): export the QAT
# checkpoint to .lbm, run the integer-only runtime over the 10,000 test images on one thread,
# and compare its predictions with the training framework's quantized evaluation.
# Checkpoints come from experiments/qat/run.sh run with RUNS_DIR=DIR (the same DIR here);
# the mixed one is trained here (3 epochs of QAT from DIR/mnist-fp32) when missing.
# Writes experiments/results/deploy_lenet5.md.
# Usage: RUNS_DIR=/tmp/qatruns experiments/deploy/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
lowbit="$build/lowbit"
runs="${RUNS_DIR:?set RUNS_DIR to the folder experiments/qat/run.sh used}"
if [ ! -f "$runs/mnist-mixed/last.ckpt" ]; then
    "$lowbit" train --init "$runs/mnist-fp32/last.ckpt" --quant experiments/deploy/lenet5_mixed.q \
        --epochs 3 --lr 0.01 --out "$runs/mnist-mixed" > /dev/null
fi
code_bytes=$(size -A "$build/runtime/CMakeFiles/lb_runtime.dir/lbm.c.o" | awk '$1 ~ /^\.text/ {s += $2} END {print s}')
out=experiments/results/deploy_lenet5.md
{
    echo "# LeNet-5 on MNIST: the integer-only runtime against the training framework"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d)."
    echo "Produced by \`RUNS_DIR=... experiments/deploy/run.sh\` from the checkpoints of"
    echo "\`experiments/qat/run.sh\`. Agreement: the share of the 10,000 test images on which the"
    echo "runtime's prediction equals the framework's quantized evaluation (\`lowbit run --compare\`)."
    echo "Throughput: one image at a time on one thread, x86-64. Runtime code: the .text of"
    echo "runtime/lbm.c compiled as in this build (-O3): $code_bytes bytes."
    echo
    echo "| config | agreement | runtime acc | framework acc | images/s | arena bytes | file bytes | command |"
    echo "|---|---|---|---|---|---|---|---|"
} > "$out.tmp"
for cfg in w8a8 w4a4 w2a2-42 mixed; do
    ckpt="$runs/mnist-$cfg/last.ckpt"
    "$lowbit" export "$ckpt" --out "$runs/$cfg.lbm" > /dev/null
    line=$("$lowbit" run "$runs/$cfg.lbm" --compare "$ckpt" --json | tail -n 1)
    python3 - "$cfg" "$line" >> "$out.tmp" <<'PY'
import json, sys
cfg, r = sys.argv[1], json.loads(sys.argv[2])
print(f"| {cfg} | {100*r['agreement']:.2f}% | {100*r['test_acc']:.2f}% | {100*r['framework_test_acc']:.2f}% "
      f"| {r['images_per_s']:.0f} | {r['arena_bytes']} | {r['file_bytes']} "
      f"| `lowbit export runs/mnist-{cfg}/last.ckpt --out {cfg}.lbm && lowbit run {cfg}.lbm --compare runs/mnist-{cfg}/last.ckpt` |")
PY
    tail -n 1 "$out.tmp"
done
mv "$out.tmp" "$out"
echo "wrote $out"
