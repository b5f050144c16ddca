#!/usr/bin/env bash
# run.sh: the main job on a fresh machine: install dependencies, build, then
#   1. train LeNet-5 on MNIST at FP32 for 5 epochs (Fashion-MNIST from Debian's package when
#      MNIST is not found),
#   2. fine-tune it with quantization-aware training at 4 bits (W4A4, first and last layer 8),
#   3. export the 4-bit model for the integer-only runtime (.lbm),
#   4. run the exported model over the test set and compare it with the training framework.
# Everything lands in runs/main/. With arguments, it runs `lowbit train ARGS` instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh"
cd "$root"
lowbit="$root/build/lowbit"
if [ $# -gt 0 ]; then
    exec "$lowbit" train "$@"
fi
out=runs/main
echo "== 1/4 FP32 training"
"$lowbit" train --model lenet5 --epochs 5 --out "$out/fp32"
echo "== 2/4 quantization-aware fine-tuning at W4A4 (first and last layer 8-bit)"
"$lowbit" train --init "$out/fp32/last.ckpt" --quant w4a4,first=8,last=8 --epochs 3 --lr 0.01 \
    --out "$out/w4a4"
echo "== 3/4 export for the integer-only runtime"
"$lowbit" export "$out/w4a4/last.ckpt" --out "$out/lenet5-w4a4.lbm"
"$lowbit" inspect "$out/lenet5-w4a4.lbm" | tail -n 1
echo "== 4/4 the exported model in the runtime, against the framework"
"$lowbit" run "$out/lenet5-w4a4.lbm" --compare "$out/w4a4/last.ckpt"
