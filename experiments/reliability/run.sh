#!/usr/bin/env bash
# experiments/reliability/run.sh: feeds lowbit's command line every class of bad input we know
# of (IDX datasets, model descriptions, quantization configs, checkpoints, .lbm models),
# diverging training runs, and a SIGKILL in the middle of a run, then fuzzes every parser
# (tools/fuzz.sh) and writes it all to experiments/results/reliability.md: for each input,
# lowbit's exit status, its message, and whether it crashed (exit status >= 128, or a
# sanitizer report).
#
#   experiments/reliability/run.sh                  # fuzz 60 s per target
#   FUZZ_SECONDS=20 experiments/reliability/run.sh
#
# Needs MNIST (../shared/datasets/mnist, as the main job) for the training rows.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tools/build.sh > /dev/null || exit 1
lowbit="$root/build/lowbit"
fuzz_seconds="${FUZZ_SECONDS:-60}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows="$tmp/rows.md"
: > "$rows"

# row CLASS INPUT_DESCRIPTION COMMAND...: runs the command, records exit status and message.
n=0
row() {
    local class="$1" what="$2"
    shift 2
    n=$((n + 1))
    "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$? src="$tmp/err" verdict="error reported"
    if [ "$rc" -eq 0 ]; then # accepted: what it printed last (skipping the --json line)
        src="$tmp/out"
        verdict="accepted"
    fi
    [ "$rc" -ge 128 ] && verdict="**CRASH** (signal $((rc - 128)))"
    grep -q -E 'Sanitizer|runtime error' "$tmp/err" && verdict="**SANITIZER REPORT**"
    local msg
    msg=$(grep -v -e '^$' -e '^{' "$src" | { [ "$rc" -eq 0 ] && tail -n 1 || head -n 1; } |
          sed "s|$tmp/||g; s|$root/||g; s/|/\\\\|/g" | cut -c 1-230)
    echo "| $n | $class | $what | $rc | $verdict | $msg |" >> "$rows"
}

# ---- IDX: the MNIST test split in a folder of its own, one damaged file at a time --------
"$lowbit" train --model mlp --data mnist --epochs 1 --max-steps 20 --threads 1 \
    --out "$tmp/mlp" > /dev/null || { echo "run.sh: cannot train the MLP used below (MNIST?)"; exit 1; }
ckpt="$tmp/mlp/last.ckpt"
mnist=""
for d in "${LOWBIT_DATA:-}" ../shared/datasets /usr/share/datasets; do
    [ -n "$d" ] && [ -f "$d/mnist/t10k-images-idx3-ubyte.gz" ] && mnist="$d/mnist" && break
done
[ -n "$mnist" ] || { echo "run.sh: MNIST (t10k-*.gz) not found"; exit 1; }
idx_case() { # idx_case WHAT IMAGES_WRITER LABELS_WRITER (each a shell snippet writing $f)
    local dir="$tmp/idx$n"
    mkdir -p "$dir"
    zcat "$mnist/t10k-images-idx3-ubyte.gz" > "$dir/t10k-images-idx3-ubyte"
    zcat "$mnist/t10k-labels-idx1-ubyte.gz" > "$dir/t10k-labels-idx1-ubyte"
    f="$dir/t10k-images-idx3-ubyte" eval "$2"
    f="$dir/t10k-labels-idx1-ubyte" eval "$3"
    row IDX "$1" "$lowbit" eval "$ckpt" --data mnist --data-dir "$dir"
}
be32() { printf '%08x' "$1"; } # big-endian u32 as hex
patch() { # patch FILE OFFSET HEX: overwrites bytes in place
    python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))' "$@"
}
flip() { # flip FILE OFFSET: inverts every bit of one byte
    python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)[0]; f.seek(int(sys.argv[2])); f.write(bytes([b ^ 255]))' "$@"
}
idx_case "image file empty" ': > "$f"' ':'
idx_case "bad magic" 'patch "$f" 0 00000804' ':'
idx_case "headers claim 99,999,999 images of 28x28 (a 78 GB body) in a 7.8 MB file" \
    'patch "$f" 4 $(be32 99999999)' 'patch "$f" 4 $(be32 99999999)'
idx_case "rows = 0" 'patch "$f" 8 $(be32 0)' ':'
idx_case "cols = 100000" 'patch "$f" 12 $(be32 100000)' ':'
idx_case "image and label counts differ" ':' 'patch "$f" 4 $(be32 9999)'
idx_case "a label of 200 (a ubyte label file)" ':' 'patch "$f" 8 c8'
idx_case "int32 label file with a label of 5000" ':' \
    'python3 -c "import struct,sys; d=open(sys.argv[1],\"rb\").read(); n=len(d)-8; l=list(d[8:]); l[0]=5000; open(sys.argv[1],\"wb\").write(struct.pack(\">II\",0xC01,n)+b\"\".join(struct.pack(\">i\",x) for x in l))" "$f"'
idx_case "gzip stream cut in half" 'gzip -c "$f" | head -c 800000 > "$f.gz"; rm "$f"' ':'
idx_case "corrupt gzip data" 'gzip -c "$f" > "$f.gz"; patch "$f.gz" 5000 ffffffffffffffff; rm "$f"' ':'
idx_case "100 bytes of garbage after the last image" 'head -c 100 /dev/urandom >> "$f"' ':'
idx_case "truncated in the middle of the pixels" 'truncate -s 4000000 "$f"' ':'
idx_case "a folder where the image file should be" 'rm "$f"; mkdir "$f"' ':'

# ---- model descriptions ---------------------------------------------------------------------
model_case() { printf "$2" > "$tmp/m$n.txt"; row model "$1" "$lowbit" inspect "$tmp/m$n.txt"; }
model_case "unknown layer" 'input 1 28 28\nfrobnicate\n'
model_case "unknown key" 'input 1 28 28\nconv out=4 k=3 colour=red\n'
model_case "not a number" 'input 1 28 28\nconv out=4 k=3x\n'
model_case "kernel larger than the input" 'input 1 8 8\nconv out=4 k=9\nflatten\nlinear out=10\n'
model_case "linear on an image (no flatten)" 'input 1 28 28\nlinear out=10\n'
model_case "add of two shapes" 'input 1 8 8\nconv name=a out=2 k=1\nconv name=b out=3 k=1\nadd in=a,b\nflatten\nlinear out=2\n'
model_case "in= names a later layer" 'input 1 8 8\nflatten in=later\nlinear name=later out=2\n'
model_case "no layer with parameters (found by fuzzing)" 'model mlp\ninput 1 8 8\nflatten\n'
model_case "1x8x8 input, linear out=2^24 (4 GiB of weights)" 'input 1 8 8\nflatten\nlinear out=16777216\n'
model_case "two 2^62-weight layers (int64 overflow of the total)" \
    'input 4096 8192 8192\nflatten name=f\nlinear name=a out=16777216 in=f\nlinear name=b out=16777216 in=f\nadd in=a,b\n'
model_case "last layer gives 2^38 class scores" 'input 4096 8192 8192\nflatten\n'
head -c 2000 /dev/urandom > "$tmp/binary.txt"
printf 'input 1 8 8\n' | cat - "$tmp/binary.txt" > "$tmp/m-binary.txt"
row model "binary garbage (NUL bytes)" "$lowbit" inspect "$tmp/m-binary.txt"
python3 -c "print('input 1 8 8'); print('relu\n' * 600000)" > "$tmp/m-big.txt"
row model "a 3.6 MB description (limit 1 MiB)" "$lowbit" inspect "$tmp/m-big.txt"

# ---- quantization configurations ------------------------------------------------------------
q_case() { printf "$2" > "$tmp/q$n.q"; row qconfig "$1" "$lowbit" inspect lenet5 --quant "$tmp/q$n.q"; }
q_case "unknown quantizer" 'default w=4 a=4 wq=magic\n'
q_case "9-bit weights" 'default w=9\n'
q_case "binary quantizer with 4 bits" 'default w=4 wq=binary\n'
q_case "pact for weights" 'default w=4 wq=pact\n'
q_case "group size 0" 'default w=4 gran=group:0\n'
q_case "layer not in the model" 'default w=4 a=4\nlayer conv9 w=2\n'
q_case "inherited 1-bit weights with a method that cannot do them" 'default w=1\nlayer fc1 wq=lsq\n'
python3 -c "print('default w=4 ' + 'a=4 ' * 300)" > "$tmp/q-long.q"
row qconfig "a 1,213-character line (limit 1023)" "$lowbit" inspect lenet5 --quant "$tmp/q-long.q"
python3 -c "print('\n'.join('layer l%d w=4' % i for i in range(300)))" > "$tmp/q-many.q"
row qconfig "300 layer overrides (limit 256)" "$lowbit" inspect lenet5 --quant "$tmp/q-many.q"
row qconfig "spec with an empty item" "$lowbit" inspect lenet5 --quant "w4a4,,first=8"
row qconfig "spec with 12-bit activations" "$lowbit" inspect lenet5 --quant "w4a12"

# ---- checkpoints ----------------------------------------------------------------------------
size=$(stat -c %s "$ckpt")
ck_case() { cp "$ckpt" "$tmp/c$n.ckpt"; f="$tmp/c$n.ckpt" eval "$2"; row checkpoint "$1" "$lowbit" eval "$tmp/c$n.ckpt" --data mnist; }
ck_case "one flipped byte in the weights" 'flip "$f" $((size / 2))'
ck_case "truncated to half" 'truncate -s $((size / 2)) "$f"'
ck_case "empty file" ': > "$f"'
ck_case "version 2" 'patch "$f" 4 02'
ck_case "a PNG, not a checkpoint" 'head -c 64 /usr/share/pixmaps/debian-logo.png > "$f" 2> /dev/null || printf "\x89PNG\r\n" > "$f"'
row checkpoint "a small file describing a 2^30-parameter model (CRC right)" \
    "$lowbit" inspect tests/fuzz/regress/checkpoint/huge-model-small-file.ckpt
row checkpoint "metadata epoch=-5 (CRC right)" \
    "$lowbit" inspect tests/fuzz/regress/checkpoint/negative-epoch.ckpt
row checkpoint "a folder instead of a file" "$lowbit" eval "$tmp"

# ---- .lbm deployment models -----------------------------------------------------------------
"$lowbit" train --model lenet5 --data mnist --epochs 1 --max-steps 5 --threads 1 --quant w8a8 \
    --out "$tmp/l5" > /dev/null && "$lowbit" export "$tmp/l5/last.ckpt" --out "$tmp/l5.lbm" > /dev/null
lsize=$(stat -c %s "$tmp/l5.lbm")
lbm_case() { cp "$tmp/l5.lbm" "$tmp/l$n.lbm"; f="$tmp/l$n.lbm" eval "$2"; row lbm "$1" "$lowbit" run "$tmp/l$n.lbm" --data mnist --limit 100; }
lbm_case "one flipped byte in the weights" 'flip "$f" $((lsize / 2))'
lbm_case "truncated to half" 'truncate -s $((lsize / 2)) "$f"'
lbm_case "bad magic" 'patch "$f" 0 58585858'
lbm_case "a checkpoint renamed .lbm" 'cp "$ckpt" "$f"'

# ---- training numerics ----------------------------------------------------------------------
train=("$lowbit" train --model mlp --data mnist --epochs 2 --max-steps 30 --threads 1)
"${train[@]}" --epochs 1 --out "$tmp/nan" > /dev/null
before=$(sha256sum < "$tmp/nan/last.ckpt")
row training "learning rate 100 in epoch 2 (loss and gradients blow up)" \
    "${train[@]}" --resume "$tmp/nan" --lr 100
[ "$(sha256sum < "$tmp/nan/last.ckpt")" = "$before" ] && kept="last.ckpt unchanged (sha256)" ||
    kept="**last.ckpt changed**"
cp -r "$tmp/nan" "$tmp/nan2"
row training "the same with --nonfinite skip" "${train[@]}" --resume "$tmp/nan2" --lr 100 --nonfinite skip
if "$lowbit" eval "$tmp/nan2/last.ckpt" > "$tmp/eval2" 2>&1; then
    kept2="the skipping run saved a checkpoint that loads and evaluates ($(grep -o 'accuracy [0-9.]*%' "$tmp/eval2" | head -n 1))"
else
    kept2="**the skipping run's checkpoint does not load: $(head -n 1 "$tmp/eval2")**"
fi
row training "learning rate 100 from the start, --nonfinite skip" "$lowbit" train --model mlp \
    --data mnist --epochs 1 --max-steps 400 --threads 1 --lr 100 --nonfinite skip --out "$tmp/nan3"

# ---- SIGKILL in the middle of a run, then --resume ----------------------------------------
kill_run=("$lowbit" train --model lenet5 --data mnist --epochs 3 --max-steps 150 --threads 1)
"${kill_run[@]}" --out "$tmp/full" > /dev/null
"${kill_run[@]}" --out "$tmp/killed" > /dev/null &
pid=$!
while [ ! -f "$tmp/killed/last.ckpt" ] && kill -0 "$pid" 2> /dev/null; do sleep 0.05; done
sleep 0.7 # into epoch 2
kill -9 "$pid"
wait "$pid" 2> /dev/null
killed_at=$(grep -c '"epoch"' "$tmp/killed/metrics.jsonl")
"${kill_run[@]}" --resume "$tmp/killed" > /dev/null
cmp -s "$tmp/full/last.ckpt" "$tmp/killed/last.ckpt" && same="byte-identical" || same="**different**"

# ---- the cost of the NaN/Inf check: this build against BASE, alternating runs -------------
base="${BASE:-5d8c842}" # the commit before the gradient check
mkdir -p "$tmp/base"
git archive "$base" | tar -x -C "$tmp/base"
cmake -S "$tmp/base" -B "$tmp/base/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLB_TESTS=OFF > /dev/null
cmake --build "$tmp/base/build" --target lowbit -j"$(nproc)" > /dev/null
bench=(train --model lenet5 --data mnist --epochs 1 --max-steps 600 --threads 1 --json)
best_base=0
best_now=0
for r in 1 2 3; do
    for which in base now; do
        bin="$lowbit"
        [ "$which" = base ] && bin="$tmp/base/build/lowbit"
        ips=$("$bin" "${bench[@]}" --out "$tmp/bench-$which-$r" | tail -n 1 |
              python3 -c 'import json,sys; print(json.load(sys.stdin)["train_images_per_s"])')
        if [ "$which" = base ]; then
            best_base=$(python3 -c "print(max($best_base, $ips))")
        else
            best_now=$(python3 -c "print(max($best_now, $ips))")
        fi
    done
done
overhead=$(python3 -c "print(f'{100 * ($best_base / $best_now - 1):+.1f}')")
# The same comparison in instructions (callgrind counts are repeatable whatever else runs on
# the machine): 30 steps on a 2,000-image MNIST subset, 100 test images.
mkdir -p "$tmp/small/mnist"
python3 - "$mnist" "$tmp/small/mnist" <<'PY'
import gzip, struct, sys
for split, n in (("train", 2000), ("t10k", 100)):
    img = gzip.open(f"{sys.argv[1]}/{split}-images-idx3-ubyte.gz").read()
    lab = gzip.open(f"{sys.argv[1]}/{split}-labels-idx1-ubyte.gz").read()
    with open(f"{sys.argv[2]}/{split}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
    with open(f"{sys.argv[2]}/{split}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
PY
cg=(train --model lenet5 --data mnist --data-dir "$tmp/small" --epochs 1 --max-steps 30 --threads 1)
for which in base now; do
    bin="$lowbit"
    [ "$which" = base ] && bin="$tmp/base/build/lowbit"
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg-$which.out" "$bin" "${cg[@]}" \
        --out "$tmp/cg-$which" > /dev/null 2>&1
done
ir() { callgrind_annotate "$1" 2> /dev/null | sed -n "s/^ *\([0-9,]*\) .*$2.*/\1/p" | head -n 1 | tr -d ,; }
ir_base=$(ir "$tmp/cg-base.out" "PROGRAM TOTALS")
ir_now=$(ir "$tmp/cg-now.out" "PROGRAM TOTALS")
ir_check=$(ir "$tmp/cg-now.out" "lb_find_nonfinite")

# ---- fuzzing --------------------------------------------------------------------------------
LB_FUZZ_SECONDS="$fuzz_seconds" tools/fuzz.sh > "$tmp/fuzz.txt" 2>&1
fuzz_rc=$?

# ---- the report -----------------------------------------------------------------------------
out=experiments/results/reliability.md
{
    echo "# Reliability: bad input, numerics, kill and resume, fuzzing"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%Y-%m-%d)."
    echo "Command: \`FUZZ_SECONDS=$fuzz_seconds experiments/reliability/run.sh\` (this file is its output)."
    echo
    echo "## Bad input through the command line"
    echo
    echo "Each row damages one thing and runs \`lowbit\` on it (\`eval\` for datasets and"
    echo "checkpoints, \`inspect\` for descriptions, configurations and crafted checkpoints, \`run\`"
    echo "for .lbm models, \`train\` for numerics). Exit status 1 is a reported error; a crash"
    echo "would be 128 + signal. The message is lowbit's first line on stderr."
    echo
    echo "| # | class | input | exit | result | message |"
    echo "|---|---|---|---|---|---|"
    cat "$rows"
    echo
    echo "The stopped run (row $((n - 2))): $kept. The skipping run (row $((n - 1))): $kept2."
    echo
    echo "## SIGKILL in the middle of a run"
    echo
    echo "\`lowbit train --model lenet5 --epochs 3 --max-steps 150\` killed with SIGKILL during"
    echo "epoch 2 ($killed_at epoch(s) completed), then \`--resume\`d: its final last.ckpt is"
    echo "**$same** to that of the same run never interrupted."
    echo
    echo "## The cost of the NaN/Inf check"
    echo
    echo "\`lowbit ${bench[*]}\` (LeNet-5, batch 64, one thread), best of 3 alternating runs of"
    echo "this build and of $base (the commit before the gradient check): training images/s"
    echo "$best_base before, $best_now with the check; step time $overhead% (run-to-run noise on"
    echo "this shared 2-core machine is a few percent, more when another user's job runs)."
    echo
    echo "In instructions (callgrind, \`lowbit ${cg[*]/$tmp\//}\`, 30 steps on a 2,000-image"
    echo "MNIST subset): $ir_base before, $ir_now with the check, of which lb_find_nonfinite"
    echo "(30 gradient passes and 3 before the checkpoint, 61,706 floats each) is $ir_check:"
    echo "$(python3 -c "print(f'{100 * ($ir_now - $ir_base) / $ir_base:.2f}% of the whole run')")."
    echo
    echo "## Fuzzing (tools/fuzz.sh, $fuzz_seconds s per target, one worker, from the seeds)"
    echo
    echo '```'
    grep -E '^(target|idx|model|qconfig|checkpoint|lbm|fuzz.sh)' "$tmp/fuzz.txt"
    echo '```'
    [ "$fuzz_rc" -eq 0 ] || echo "**tools/fuzz.sh failed (exit $fuzz_rc)**"
} > "$out"
cat "$out"
