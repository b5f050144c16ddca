#!/usr/bin/env bash
# experiments/mcu/run.sh: LeNet-5 on an emulated Arm Cortex-M4 (QEMU mps2-an386), issue 10.
# For W8A8, W4A4, W2A2, the mixed configuration (experiments/deploy/lenet5_mixed.q) and the
# FP32 model as a plain float loop: build the firmware with N MNIST test images, run it under
# qemu-system-arm -icount shift=0, check that every prediction and score equals the same
# program's on this machine (runtime/mcu/run.sh), check the accuracy against `lowbit run`
# (the host runtime) on the same images, and tabulate flash, RAM and instructions per
# inference. Checkpoints are trained into RUNS_DIR when missing (the commands of
# experiments/qat/run.sh and experiments/deploy/run.sh: FP32 5 epochs, then QAT fine-tuning).
# Writes experiments/results/mcu_cortex_m4.md.
# Usage: RUNS_DIR=/path/to/runs [N=1000] [OPTS="-O2 -Os"] experiments/mcu/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
lowbit="$build/lowbit"
runs="${RUNS_DIR:?set RUNS_DIR to a folder for the checkpoints (kept between runs)}"
n="${N:-1000}"
opts="${OPTS:--O2 -Os}"
out=experiments/results/mcu_cortex_m4.md
mkdir -p "$runs/mcu"

# 1. checkpoints (each a minute or two on 2 cores)
train() {   # train DIR ARGS...
    local dir="$1"; shift
    [ -f "$runs/$dir/last.ckpt" ] || "$lowbit" train "$@" --out "$runs/$dir" > /dev/null
}
fp="$runs/mnist-fp32/last.ckpt"
train mnist-fp32 --model lenet5 --data mnist --epochs 5
train mnist-w8a8 --init "$fp" --quant w8a8,first=8,last=8 --epochs 3 --lr 0.01
train mnist-w4a4 --init "$fp" --quant w4a4,first=8,last=8 --epochs 3 --lr 0.01
train mnist-w2a2-42 --init "$fp" --quant w2a2,first=8,last=8 --epochs 5 --lr 0.01 --seed 42
train mnist-mixed --init "$fp" --quant experiments/deploy/lenet5_mixed.q --epochs 3 --lr 0.01

# 2. one firmware per configuration and optimisation level
rows="$runs/mcu/rows.md"
: > "$rows"
declare -A fp32_instr fp32_flash fp32_ram
for opt in $opts; do
    for cfg in fp32 w8a8 w4a4 w2a2 mixed; do
        name="${cfg}"
        if [ "$cfg" = fp32 ]; then
            python3 experiments/mcu/fp32_weights.py "$fp" "$runs/mcu/fp32_weights.c"
            res=$(runtime/mcu/run.sh --float "$runs/mcu/fp32_weights.c" -n "$n" --opt "$opt" \
                  --out "$runs/mcu/build-$cfg$opt" | tail -n 1)
            host_acc="-"
            ckpt="$fp"
        else
            ckpt="$runs/mnist-$cfg/last.ckpt"
            [ "$cfg" != w2a2 ] || ckpt="$runs/mnist-w2a2-42/last.ckpt"
            "$lowbit" export "$ckpt" --format c --out "$runs/mcu/$name" > /dev/null
            "$lowbit" export "$ckpt" --out "$runs/mcu/$name.lbm" > /dev/null
            res=$(runtime/mcu/run.sh "$runs/mcu/$name.c" -n "$n" --opt "$opt" \
                  --out "$runs/mcu/build-$cfg$opt" | tail -n 1)
            host_acc=$("$lowbit" run "$runs/mcu/$name.lbm" --limit "$n" --json | tail -n 1 |
                       sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
            host_acc=$(awk -v a="$host_acc" 'BEGIN { printf "%.1f%%", 100 * a }')
        fi
        echo "$cfg $opt: $res" >&2
        get() { echo "$res" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
        flash=$(( $(get code_bytes) + $(get model_bytes) ))
        ram=$(get ram_bytes); instr=$(get instructions)
        if [ "$cfg" = fp32 ]; then
            fp32_instr[$opt]=$instr; fp32_flash[$opt]=$flash; fp32_ram[$opt]=$ram
        fi
        ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%sx) | %s | %s (%sx) | %s (%sx) |\n' \
            "$opt" "$cfg" "$(get identical)" "$(get accuracy)%" "$host_acc" "$(get model_bytes)" \
            "$(get code_bytes)" "$(get flash_bytes)" "$(get arena_bytes)" "$(get stack_bytes)" \
            "$ram" "$(ratio "$ram" "${fp32_ram[$opt]}")" "$(get calib)" \
            "$flash" "$(ratio "$flash" "${fp32_flash[$opt]}")" \
            "$instr" "$(ratio "$instr" "${fp32_instr[$opt]}")" >> "$rows"
    done
done

# 3. the table
{
    echo "# LeNet-5 on an emulated Arm Cortex-M4: flash, RAM and instructions per inference"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d);" \
         "$(arm-none-eabi-gcc --version | head -n 1); $(qemu-system-arm --version | head -n 1)."
    echo "Produced by \`RUNS_DIR=... experiments/mcu/run.sh\` (N=$n MNIST test images, the first $n of t10k)."
    echo
    echo "| opt | config | QEMU = host | acc (firmware) | acc (\`lowbit run\`) | model bytes | code bytes | firmware flash | arena | stack | RAM = arena + stack (vs FP32) | counter check | flash = code + model (vs FP32) | instructions / inference (vs FP32) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    cat "$rows"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out (the prose around the table is kept in git; re-add it if this overwrote it)"
