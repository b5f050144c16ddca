#!/usr/bin/env bash
# experiments/bench/qat_overhead.sh: the cost of fake quantization in a training step.
# Trains LeNet-5 on MNIST for STEPS steps (batch 64) at FP32 and at W4A4 (LSQ, first/last 8),
# alternating REPEAT times, and reports training images/s and the W4A4/FP32 step-time ratio
# (the QAT issue's target: at most 1.25). Writes experiments/results/qat_overhead.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
steps="${STEPS:-600}"
repeat="${REPEAT:-3}"
threads="${THREADS:-1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
best_fp=0
best_q=0
for r in $(seq "$repeat"); do
    for q in fp32 w4a4,first=8,last=8; do
        args=(--model lenet5 --data mnist --epochs 1 --max-steps "$steps" --threads "$threads" --out "$tmp/$r")
        [ "$q" = fp32 ] || args+=(--quant "$q")
        ips=$("$build/lowbit" train "${args[@]}" --json | tail -n 1 |
              python3 -c 'import json,sys; print(json.load(sys.stdin)["train_images_per_s"])')
        echo "run $r $q: $ips images/s"
        if [ "$q" = fp32 ]; then
            best_fp=$(python3 -c "print(max($best_fp, $ips))")
        else
            best_q=$(python3 -c "print(max($best_q, $ips))")
        fi
    done
done
ratio=$(python3 -c "print(f'{$best_fp / $best_q:.3f}')")
out=experiments/results/qat_overhead.md
{
    echo "# Fake-quantization overhead in the training step (LeNet-5, MNIST, batch 64)"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d);" \
         "$threads thread(s); best of $repeat alternating runs of $steps steps."
    echo "Command: \`STEPS=$steps REPEAT=$repeat THREADS=$threads experiments/bench/qat_overhead.sh\`"
    echo
    echo "| configuration | training images/s |"
    echo "|---|---|"
    echo "| FP32 | $best_fp |"
    echo "| W4A4 (LSQ, first/last 8) | $best_q |"
    echo
    echo "W4A4 step time / FP32 step time: **$ratio** (target: at most 1.25)"
} > "$out"
cat "$out"
