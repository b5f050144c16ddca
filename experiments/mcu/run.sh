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

# 2. one firmware per configuration and optimisation level; R[opt,cfg] = run.sh's result line
declare -A R HOSTACC
for opt in $opts; do
    for cfg in fp32 w8a8 w4a4 w2a2 mixed; do
        if [ "$cfg" = fp32 ]; then
            python3 experiments/mcu/fp32_weights.py "$fp" "$runs/mcu/fp32_weights.c"
            res=$(runtime/mcu/run.sh --float "$runs/mcu/fp32_weights.c" -n "$n" --opt "$opt" \
                  --out "$runs/mcu/build-$cfg$opt" | tail -n 1)
            HOSTACC[$opt,$cfg]="-"
        else
            ckpt="$runs/mnist-$cfg/last.ckpt"
            [ "$cfg" != w2a2 ] || ckpt="$runs/mnist-w2a2-42/last.ckpt"
            "$lowbit" export "$ckpt" --format c --out "$runs/mcu/$cfg" > /dev/null
            "$lowbit" export "$ckpt" --out "$runs/mcu/$cfg.lbm" > /dev/null
            res=$(runtime/mcu/run.sh "$runs/mcu/$cfg.c" -n "$n" --opt "$opt" \
                  --out "$runs/mcu/build-$cfg$opt" | tail -n 1)
            a=$("$lowbit" run "$runs/mcu/$cfg.lbm" --limit "$n" --json | tail -n 1 |
                sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
            HOSTACC[$opt,$cfg]=$(awk -v a="$a" 'BEGIN { printf "%.1f%%", 100 * a }')
        fi
        echo "$cfg $opt: $res" >&2
        R[$opt,$cfg]="$res"
    done
done

# 3. the tables
get() { echo "${R[$1,$2]}" | sed -n "s/.* $3=\([^ ]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
flash_of() { echo $(( $(get "$1" "$2" code_bytes) + $(get "$1" "$2" model_bytes) )); }
ram_of() {   # arena plus the deeper of the two stacks (lbm_load's, one inference's)
    local a s l
    a=$(get "$1" "$2" arena_bytes); s=$(get "$1" "$2" stack_bytes); l=$(get "$1" "$2" init_stack_bytes)
    echo $(( a + (s > l ? s : l) ))
}
table() {
    local opt="$1" cfg f0 r0 i0 f r i
    f0=$(flash_of "$opt" fp32); r0=$(ram_of "$opt" fp32); i0=$(get "$opt" fp32 instructions)
    echo "| config | weights | acc, firmware | acc, \`lowbit run\` | QEMU = host | model bytes | code bytes | flash = code + model | arena | stack, inference | stack, load | RAM = arena + deeper stack | instructions / inference |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for cfg in fp32 w8a8 w4a4 w2a2 mixed; do
        f=$(flash_of "$opt" "$cfg"); r=$(ram_of "$opt" "$cfg"); i=$(get "$opt" "$cfg" instructions)
        case "$cfg" in
            fp32) w="float32, plain C loop" ;;
            w8a8) w="8 bit" ;;
            w4a4) w="4 bit, first/last 8" ;;
            w2a2) w="2 bit, first/last 8" ;;
            mixed) w="8/4/2 bit (lenet5_mixed.q)" ;;
        esac
        printf '| %s | %s | %s%% | %s | %s of %s | %s | %s | %s (%sx) | %s | %s | %s | %s (%sx) | %s (%sx) |\n' \
            "$cfg" "$w" "$(get "$opt" "$cfg" accuracy)" "${HOSTACC[$opt,$cfg]}" \
            "$( [ "$(get "$opt" "$cfg" identical)" = yes ] && echo "$n" || echo 0)" "$n" \
            "$(get "$opt" "$cfg" model_bytes)" "$(get "$opt" "$cfg" code_bytes)" \
            "$f" "$(ratio "$f" "$f0")" "$(get "$opt" "$cfg" arena_bytes)" \
            "$(get "$opt" "$cfg" stack_bytes)" "$(get "$opt" "$cfg" init_stack_bytes)" \
            "$r" "$(ratio "$r" "$r0")" "$i" "$(ratio "$i" "$i0")"
    done
}
{
    echo "# LeNet-5 on an emulated Arm Cortex-M4: flash, RAM and instructions per inference"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d)."
    echo "Toolchain: $(arm-none-eabi-gcc --version | head -n 1); $(qemu-system-arm --version | head -n 1)."
    echo "Produced by \`RUNS_DIR=... N=$n experiments/mcu/run.sh\`: the first $n MNIST t10k images,"
    echo "checkpoints from the commands of experiments/qat/run.sh (FP32 5 epochs; QAT W8A8 and W4A4"
    echo "3 epochs, W2A2 5 epochs seed 42, first and last layers at 8 bits) and experiments/deploy/run.sh"
    echo "(the mixed configuration, 3 epochs)."
    for opt in $opts; do
        echo
        echo "## Compiled with $opt"
        echo
        echo "\`-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard $opt -ffp-contract=off\`, newlib-nano."
        echo "Ratios are against the FP32 row."
        echo
        table "$opt"
    done
    echo
    cat experiments/mcu/method.md
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
