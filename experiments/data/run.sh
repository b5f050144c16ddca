#!/usr/bin/env bash
# run.sh: the data-pipeline measurements of experiments/results/data_pipeline.md.
#   1. unpacking the CIFAR-10 and MNIST PNG archives, and decoding their images, into a fresh
#      cache folder (first run), then the same loads again (read from the decoded cache);
#   2. MNIST from PNG files against IDX: one LeNet-5 checkpoint trained on IDX, evaluated on
#      both (must be identical), and LeNet-5 trained on the PNG copy;
#   3. how long ResNet-20 training waits for data, with and without background prefetching,
#      over the first STEPS steps of an epoch (crop-flip augmentation on).
# Logs go to $OUT_DIR (default runs/data_pipeline); the figures are copied into the results
# file by hand, with these commands. Environment (optional): STEPS=200, THREADS=2,
# MNIST_EPOCHS=1, OUT_DIR=runs/data_pipeline.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."
STEPS=${STEPS:-200}
THREADS=${THREADS:-2}
MNIST_EPOCHS=${MNIST_EPOCHS:-1}
OUT_DIR=${OUT_DIR:-runs/data_pipeline}
LB=build/lowbit
[[ -x $LB ]] || tools/build.sh
mkdir -p "$OUT_DIR"
export LOWBIT_CACHE
LOWBIT_CACHE=$(mktemp -d /tmp/lowbit-cache.XXXXXX) # a fresh cache: the first run unpacks
echo "cache folder: $LOWBIT_CACHE"

# 1. unpack + decode, then cached (the MLP and one step keep the training part negligible)
for data in cifar10 mnist-png; do
    for run in first second; do
        echo "== $data, $run run"
        $LB train --model mlp --data "$data" --epochs 1 --max-steps 1 --threads "$THREADS" \
            --out "$OUT_DIR/load-$data" 2>&1 | grep -E "^(unpack|lowbit:)" | grep -v "files$" \
            | tee "$OUT_DIR/load-$data-$run.log"
    done
done

# 2. MNIST: IDX vs PNG
echo "== LeNet-5 on MNIST IDX, $MNIST_EPOCHS epoch(s)"
$LB train --model lenet5 --data mnist --epochs "$MNIST_EPOCHS" --threads "$THREADS" \
    --out "$OUT_DIR/lenet5-idx" --json | tail -1 | tee "$OUT_DIR/lenet5-idx.json"
for data in mnist mnist-png; do
    echo "== that checkpoint evaluated on $data"
    $LB eval "$OUT_DIR/lenet5-idx/last.ckpt" --data "$data" --threads "$THREADS" --json 2>&1 \
        | tail -1 | tee "$OUT_DIR/eval-$data.json"
done
echo "== LeNet-5 on MNIST PNG, $MNIST_EPOCHS epoch(s)"
$LB train --model lenet5 --data mnist-png --epochs "$MNIST_EPOCHS" --threads "$THREADS" \
    --out "$OUT_DIR/lenet5-png" --json | tail -1 | tee "$OUT_DIR/lenet5-png.json"

# 3. ResNet-20 data wait, prefetching on and off
for pf in "" --no-prefetch; do
    echo "== ResNet-20 on CIFAR-10, $STEPS steps, batch 128 ${pf:-(prefetch on)}"
    $LB train --model resnet20 --data cifar10 --epochs 1 --max-steps "$STEPS" --batch 128 \
        --lr 0.1 --schedule onecycle --threads "$THREADS" $pf --out "$OUT_DIR/resnet20${pf}" \
        --json | tail -2 | tee "$OUT_DIR/resnet20${pf}.log"
done
rm -rf "$LOWBIT_CACHE"
