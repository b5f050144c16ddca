#!/usr/bin/env bash
# experiments/foundation/run.sh: the foundation issue's accuracy figures, measured on the real
# data: LeNet-5 and the MLP on MNIST, LeNet-5 on Fashion-MNIST, 5 epochs each, default
# settings (SGD, Nesterov momentum 0.9, weight decay 5e-4, cosine lr from 0.05, batch 64,
# seed 42). Writes experiments/results/foundation.md with the commands and the JSON lines.
# Usage: experiments/foundation/run.sh   (SEEDS="42 1 2" to repeat over seeds)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
out=experiments/results/foundation.md
seeds="${SEEDS:-42}"
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
{
    echo "# Foundation: FP32 accuracy after 5 epochs"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo '?');" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d)"
    echo
    echo "| model | dataset | seed | test acc | final train loss | train img/s | wall s | peak RSS MB | command |"
    echo "|---|---|---|---|---|---|---|---|---|"
} > "$out.tmp"
json_lines=""
for seed in $seeds; do
    for spec in "lenet5 mnist" "mlp mnist" "lenet5 fashion-mnist"; do
        set -- $spec
        cmd="build/lowbit train --model $1 --data $2 --epochs 5 --seed $seed --json"
        line=$("$build/lowbit" train --model "$1" --data "$2" --epochs 5 --seed "$seed" --json \
                   --out "$runs/$1-$2-$seed" | tail -n 1)
        json_lines="$json_lines$line"$'\n'
        python3 - "$line" "$cmd" "$seed" >> "$out.tmp" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['model']} | {r['dataset']} | {sys.argv[3]} | {100*r['test_acc']:.2f}% | {r['train_loss']:.4f} "
      f"| {r['train_images_per_s']:.0f} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | `{sys.argv[2]}` |")
PY
        tail -n 1 "$out.tmp"
    done
done
{
    echo
    echo "Raw \`--json\` lines:"
    echo
    echo '```'
    printf '%s' "$json_lines"
    echo '```'
} >> "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
