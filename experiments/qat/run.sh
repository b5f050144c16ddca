#!/usr/bin/env bash
# experiments/qat/run.sh: the QAT issue's figures for LeNet-5, measured on the real data.
#   1. FP32: 5 epochs (SGD, Nesterov 0.9, cosine from 0.05, half an epoch of warm-up).
#   2. QAT fine-tuning from that checkpoint, lr 0.01 cosine, LSQ weights (per channel) and
#      activations, first and last layer at 8 bits: W8A8 and W4A4 for 3 epochs; W2A2 (3 seeds)
#      and binary weights with 8-bit activations (MNIST) for 5 epochs.
#   3. PTQ of the same FP32 checkpoint: min/max ranges from 20 calibration batches, no training.
# Writes experiments/results/qat_lenet5.md with every command and its JSON line.
# Usage: experiments/qat/run.sh [mnist|fashion-mnist ...]   (default: both)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
lowbit="$build/lowbit"
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(mnist fashion-mnist)
runs="${RUNS_DIR:-$(mktemp -d)}"
out=experiments/results/qat_lenet5.md
rows="$runs/rows.md"
raw="$runs/raw.txt"
: > "$rows"
: > "$raw"

# run LABEL DATASET COMMAND... : runs one command (its --json line is its last stdout line)
run() {
    local label="$1" data="$2"
    shift 2
    local line
    line=$("$@" --json | tail -n 1)
    printf '%s\n' "$line" >> "$raw"
    local shown="${*/#$lowbit/lowbit}"
    shown="${shown//$runs/runs}"
    python3 - "$label" "$data" "$line" "$shown" >> "$rows" <<'PY'
import json, sys
label, data, line, cmd = sys.argv[1:5]
r = json.loads(line)
secs = r.get("seconds")
print(f"| {data} | {label} | {100*r['test_acc']:.2f}% | {r['weight_bytes']/1024:.1f} "
      f"| {'' if secs is None else f'{secs:.0f}'} | `{cmd}` |")
PY
    tail -n 1 "$rows"
}

for data in "${datasets[@]}"; do
    fp="$runs/$data-fp32"
    run "FP32, 5 epochs" "$data" "$lowbit" train --model lenet5 --data "$data" --epochs 5 --out "$fp"
    q8="w8a8,first=8,last=8"
    run "QAT W8A8" "$data" "$lowbit" train --init "$fp/last.ckpt" --quant "$q8" --epochs 3 --lr 0.01 --out "$runs/$data-w8a8"
    run "QAT W4A4" "$data" "$lowbit" train --init "$fp/last.ckpt" --quant w4a4,first=8,last=8 --epochs 3 --lr 0.01 --out "$runs/$data-w4a4"
    for seed in 42 1 2; do
        run "QAT W2A2 (seed $seed)" "$data" "$lowbit" train --init "$fp/last.ckpt" --quant w2a2,first=8,last=8 --epochs 5 --lr 0.01 --seed "$seed" --out "$runs/$data-w2a2-$seed"
    done
    if [ "$data" = mnist ]; then
        run "QAT binary weights, A8" "$data" "$lowbit" train --init "$fp/last.ckpt" --quant w1a8,first=8,last=8 --epochs 5 --lr 0.01 --out "$runs/$data-w1a8"
    fi
    for b in 8 4 2; do
        run "PTQ W${b}A${b} (min/max)" "$data" "$lowbit" ptq "$fp/last.ckpt" --quant "w${b}a${b}" --out "$runs/$data-ptq$b.ckpt"
    done
done

{
    echo "# LeNet-5: FP32, QAT and PTQ"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d)."
    echo "Produced by \`experiments/qat/run.sh ${datasets[*]}\`. QAT rows fine-tune the FP32"
    echo "checkpoint above them (W8A8 and W4A4 for 3 epochs, W2A2 and binary for 5; LSQ weights"
    echo "per channel and activations; first and last layer at 8 bits; lr 0.01 cosine); PTQ rows"
    echo "calibrate min/max ranges on 20 training batches of that"
    echo "same checkpoint without training (all layers at the stated bits). Weight memory counts"
    echo "parameters x bits / 8 plus the float scales and biases."
    echo
    echo "| dataset | run | test acc | weights KiB | wall s | command |"
    echo "|---|---|---|---|---|---|"
    cat "$rows"
    echo
    echo "Raw \`--json\` lines:"
    echo
    echo '```'
    cat "$raw"
    echo '```'
} > "$out"
echo "wrote $out"
