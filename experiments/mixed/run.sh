#!/usr/bin/env bash
# experiments/mixed/run.sh: mixed precision (issue 7) against uniform bits at the same weight
# memory, LeNet-5 on MNIST and on Fashion-MNIST.
#   1. FP32: 3 epochs (SGD, Nesterov 0.9, cosine from 0.05, seed 42).
#   2. lowbit sensitivity at 1,2,3,4,6,8 bits on the last 1000 training images (CSV/MD/PNG).
#   3. lowbit mixed: at the size of uniform 3-bit weights (--budget 3.0, choices 2,3,4,6,8)
#      and of uniform 2-bit weights (--budget 2.0, choices 1,2,3,4,6,8: without 1 bit the only
#      assignment that fits is uniform 2-bit), objective hawq (mixed3, mixed2) and objective
#      loss (mixed3l, mixed2l; not trained again when it picks the same bits as hawq); every
#      layer is searched, first and last included; activations at 8 bits.
#   4. The same QAT fine-tuning for uniform and mixed: --init FP32 --epochs 3 --lr 0.01, LSQ
#      weights (per channel) and activations, seeds 1, 2 and 3 (SEEDS, EPOCHS override).
# Everything runs on one thread, niced. Writes RUNS_DIR/rows.tsv (one line per QAT run),
# RUNS_DIR/commands.txt and RUNS_DIR/machine.txt; experiments/mixed/summarize.py turns them
# into the table of experiments/results/mixed_precision.md.
# Usage: RUNS_DIR=/tmp/mixed experiments/mixed/run.sh [mnist|fashion-mnist ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
lowbit="${LOWBIT:-$root/build/lowbit}"
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(mnist fashion-mnist)
runs="${RUNS_DIR:?set RUNS_DIR to the folder for checkpoints and logs}"
seeds="${SEEDS:-1 2 3}"
epochs="${EPOCHS:-3}"
mkdir -p "$runs"
{
    uname -a
    echo "nproc: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo || true
    echo "lowbit: $(git -C "$root" rev-parse --short HEAD) ($(git -C "$root" status --porcelain -uno | wc -l) files modified)"
    date -u +%Y-%m-%dT%H:%M:%SZ
} >> "$runs/machine.txt"
cmds="$runs/commands.txt"
rows="$runs/rows.tsv"
touch "$cmds"
[ -f "$rows" ] || : > "$rows"

# x LOG COMMAND...: runs COMMAND niced on one thread, logs stdout+stderr, records the command
# line and its wall time; returns the last stdout line (the --json summary).
x() {
    local log="$1"
    shift
    local t0 t1
    t0=$(date +%s.%N)
    nice -n 10 "$@" > "$log" 2>&1
    t1=$(date +%s.%N)
    printf '%s\t%.1f s\n' "${*/#$lowbit/lowbit}" "$(echo "$t1 - $t0" | bc)" >> "$cmds"
    tail -n 1 "$log"
}

for data in "${datasets[@]}"; do
    d="$runs/$data"
    mkdir -p "$d"
    fp="$d/fp32"
    grep -qs '"test_acc"' "$d/fp32.log" || # a finished run (last.ckpt exists after epoch 1)
        x "$d/fp32.log" "$lowbit" train --model lenet5 --data "$data" --epochs 3 --seed 42 \
            --threads 1 --out "$fp" --json > /dev/null
    [ -f "$d/mixed2.q" ] || {
    x "$d/sensitivity.log" "$lowbit" sensitivity "$fp/last.ckpt" --bits 1,2,3,4,6,8 \
        --threads 1 --out "$d/sensitivity" > /dev/null
    x "$d/mixed3.log" "$lowbit" mixed "$fp/last.ckpt" --budget 3.0 --choices 2,3,4,6,8 \
        --abits 8 --threads 1 --out "$d/mixed3.q" --json > "$d/mixed3.json"
    x "$d/mixed2.log" "$lowbit" mixed "$fp/last.ckpt" --budget 2.0 --choices 1,2,3,4,6,8 \
        --abits 8 --threads 1 --out "$d/mixed2.q" --json > "$d/mixed2.json"
    }
    [ -f "$d/mixed2l.q" ] || {
    x "$d/mixed3l.log" "$lowbit" mixed "$fp/last.ckpt" --budget 3.0 --choices 2,3,4,6,8 \
        --objective loss --abits 8 --threads 1 --out "$d/mixed3l.q" --json > "$d/mixed3l.json"
    x "$d/mixed2l.log" "$lowbit" mixed "$fp/last.ckpt" --budget 2.0 --choices 1,2,3,4,6,8 \
        --objective loss --abits 8 --threads 1 --out "$d/mixed2l.q" --json > "$d/mixed2l.json"
    }
    for seed in $seeds; do
        for cfg in w3a8 mixed3 mixed3l w2a8 mixed2 mixed2l; do
            q="$cfg"
            [ "${cfg#mixed}" != "$cfg" ] && q="$d/$cfg.q"
            # a loss-objective assignment equal to the hawq one would train the same model
            if [ "${cfg%l}" != "$cfg" ] &&
                cmp -s <(grep '^layer' "$q") <(grep '^layer' "$d/${cfg%l}.q"); then
                continue
            fi
            out="$d/qat-$cfg-s$seed"
            if grep -q "^$data	$cfg	$seed	" "$rows"; then continue; fi
            line=$(x "$out.log" "$lowbit" train --init "$fp/last.ckpt" --quant "$q" \
                --epochs "$epochs" --lr 0.01 --seed "$seed" --threads 1 --out "$out" --json)
            printf '%s\t%s\t%s\t%s\n' "$data" "$cfg" "$seed" "$line" >> "$rows"
            echo "$data $cfg seed $seed: $(echo "$line" | grep -o '"test_acc":[0-9.]*')"
        done
    done
done
