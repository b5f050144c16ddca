#!/usr/bin/env bash
# experiments/cifar/run.sh: the CIFAR-10 figures of issue 5, on the JPEG CIFAR-10 copy in
# ../shared/datasets (unpacked once into $LOWBIT_CACHE).
#
# Stages, each one `lowbit train` run in $RUNS_DIR/<stage> (the recipe of the issue's PyTorch
# reference: batch 128, SGD momentum 0.9 without Nesterov, weight decay 5e-4, one-cycle
# schedule peaking at lr 0.1, random crop and flip):
#   resnet20-fp32-32ep   ResNet-20, 32 epochs
#   resnet20-fp32-long   ResNet-20, $LONG_EPOCHS epochs (default 100)
#   resnet20-fp32-wdall  ResNet-20, $WDALL_EPOCHS epochs (default 48), weight decay on every
#                        parameter (--wd-all: BN scales and shifts and biases too, as
#                        torch.optim.SGD(model.parameters(), weight_decay=5e-4) does)
#   resnet20-fp32-reg    ResNet-20, $REG_EPOCHS epochs (default 48), --wd-all, Cutout 8x8
#                        (--cutout 8) and label smoothing 0.1 (--label-smoothing 0.1)
#   resnet20-fp32-reg-swa  stochastic weight averaging from resnet20-fp32-reg's last weights:
#                        $SWA_EPOCHS epochs (default 24) at the constant lr $SWA_LR (0.01), the
#                        weights averaged after each (--swa-start 1), BN statistics recomputed
#                        on shuffled, augmented training batches
#   vgg-small-fp32       vgg-small, $VGG_EPOCHS epochs (default 30)
#   resnet20-w4a4        QAT fine-tuning of resnet20-fp32-32ep: LSQ W4A4, first and last layer
#   resnet20-w2a2        at 8 bits, $QAT_EPOCHS epochs (default 15), one-cycle peaking at 0.01
# A stage whose folder has a last.ckpt is resumed where it stopped (a finished one just reports
# its result), so the script can be stopped and re-run: these runs take hours on two cores.
# To carry a run over to another machine: stop it with SIGTERM (it saves last.ckpt), run with
# REPORT_ONLY=1 (it copies the unfinished run's last.ckpt into experiments/results/cifar10/
# <stage>/), commit; on the next machine the stage restores it and resumes. KEEP_CKPT="stage
# ..." keeps finished runs' last.ckpt there too (for a stage that starts from it with --init).
# STAGES="..." picks stages (default: all, in the order above); THREADS (default 2).
# Writes experiments/results/cifar10.md from the runs' metrics.jsonl (kept in
# experiments/results/cifar10/<stage>/), then appends experiments/cifar/notes.md (hand-written
# notes on the runs).
# REPORT_ONLY=1 trains nothing and only rewrites the page from the runs there.
# Usage: RUNS_DIR=DIR experiments/cifar/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
: "${RUNS_DIR:?set RUNS_DIR to a folder that keeps the runs (they resume from it)}"
build="${LB_BUILD_DIR:-build}"
LB_BUILD_DIR="$build" tools/build.sh >/dev/null
lowbit="$(cd "$build" && pwd)/lowbit"
threads="${THREADS:-2}"
long="${LONG_EPOCHS:-100}" wdall="${WDALL_EPOCHS:-48}" reg="${REG_EPOCHS:-48}" swa="${SWA_EPOCHS:-24}" swa_lr="${SWA_LR:-0.01}" vgg="${VGG_EPOCHS:-30}" qat="${QAT_EPOCHS:-15}"
stages="${STAGES:-resnet20-fp32-32ep resnet20-fp32-long resnet20-fp32-wdall resnet20-fp32-reg resnet20-fp32-reg-swa vgg-small-fp32 resnet20-w4a4 resnet20-w2a2}"
mkdir -p "$RUNS_DIR"
common=(--data cifar10 --batch 128 --momentum 0.9 --no-nesterov --wd 5e-4 --schedule onecycle
        --warmup 0 --threads "$threads" --seed 42 --json)

args_of() {
    case "$1" in
    resnet20-fp32-32ep) echo "--model resnet20 --epochs 32 --lr 0.1" ;;
    resnet20-fp32-long) echo "--model resnet20 --epochs $long --lr 0.1" ;;
    resnet20-fp32-wdall) echo "--model resnet20 --epochs $wdall --lr 0.1 --wd-all" ;;
    resnet20-fp32-reg) echo "--model resnet20 --epochs $reg --lr 0.1 --wd-all --cutout 8 --label-smoothing 0.1" ;;
    resnet20-fp32-reg-swa) echo "--init $RUNS_DIR/resnet20-fp32-reg/last.ckpt --epochs $swa --lr $swa_lr --schedule constant --swa-start 1 --wd-all --cutout 8 --label-smoothing 0.1" ;;
    vgg-small-fp32) echo "--model vgg-small --epochs $vgg --lr 0.1" ;;
    resnet20-w4a4) echo "--init $RUNS_DIR/resnet20-fp32-32ep/last.ckpt --quant w4a4,first=8,last=8 --epochs $qat --lr 0.01" ;;
    resnet20-w2a2) echo "--init $RUNS_DIR/resnet20-fp32-32ep/last.ckpt --quant w2a2,first=8,last=8 --epochs $qat --lr 0.01" ;;
    *) echo "unknown stage $1" >&2; exit 2 ;;
    esac
}

logs=experiments/results/cifar10
for s in $stages; do
    [ -z "${REPORT_ONLY:-}" ] || break
    dir="$RUNS_DIR/$s"
    read -r -a a <<<"$(args_of "$s")"
    mkdir -p "$dir"
    # an unfinished run carried over from an earlier machine (see below): continue it
    if [ ! -f "$dir/last.ckpt" ] && [ -f "$logs/$s/last.ckpt" ]; then
        echo "== $s: restoring the run carried over in $logs/$s" >&2
        cp "$logs/$s/last.ckpt" "$logs/$s/metrics.jsonl" "$logs/$s/command.txt" "$dir/"
        [ ! -f "$logs/$s/swa.ckpt" ] || cp "$logs/$s/swa.ckpt" "$dir/"
    fi
    # the stage's own options last: they override the common ones (--schedule for SWA)
    cmd=("$lowbit" train "${common[@]}" "${a[@]}" --out "$dir")
    [ -f "$dir/command.txt" ] || echo "lowbit train ${common[*]} ${a[*]} --out $s" >"$dir/command.txt"
    if [ -f "$dir/last.ckpt" ]; then
        echo "== $s: resuming" >&2
        cmd+=(--resume "$dir")
    else
        echo "== $s" >&2
    fi
    nice -n 5 "${cmd[@]}" >>"$dir/stdout.jsonl" 2>>"$dir/train.log"
done

# Each stage's metrics.jsonl and command.txt are copied into experiments/results/cifar10/<stage>/
# (committed), and the page is written from those copies: the run folders do not outlive the
# machine. A stage with neither keeps its row of the current page (its logs were lost).
# An unfinished run (stopped with SIGTERM, which saves last.ckpt, before its last epoch) also
# leaves its last.ckpt there, about 2 MB for ResNet-20: committed, it lets the next machine
# continue the run (restored above); a finished run's copy is removed.
for s in $stages; do
    if [ -s "$RUNS_DIR/$s/metrics.jsonl" ] || [ -f "$RUNS_DIR/$s/last.ckpt" ]; then
        mkdir -p "$logs/$s"
        [ ! -s "$RUNS_DIR/$s/metrics.jsonl" ] || cp "$RUNS_DIR/$s/metrics.jsonl" "$logs/$s/"
        cp "$RUNS_DIR/$s/command.txt" "$logs/$s/"
        read -r -a a <<<"$(args_of "$s")"
        want=0
        for ((i = 0; i + 1 < ${#a[@]}; i++)); do [ "${a[i]}" != --epochs ] || want="${a[i + 1]}"; done
        done_epochs=0
        [ ! -s "$RUNS_DIR/$s/metrics.jsonl" ] ||
            done_epochs="$(tail -n 1 "$RUNS_DIR/$s/metrics.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin)["epoch"])')"
        if { [ "$done_epochs" -lt "$want" ] || [[ " ${KEEP_CKPT:-} " == *" $s "* ]]; } &&
            [ -f "$RUNS_DIR/$s/last.ckpt" ]; then
            cp "$RUNS_DIR/$s/last.ckpt" "$logs/$s/"
            [ ! -f "$RUNS_DIR/$s/swa.ckpt" ] || cp "$RUNS_DIR/$s/swa.ckpt" "$logs/$s/"
            echo "== $s: $done_epochs of $want epochs: $logs/$s/last.ckpt carries it over" >&2
        else
            rm -f "$logs/$s/last.ckpt" "$logs/$s/swa.ckpt"
        fi
    fi
done
python3 - "$logs" experiments/results/cifar10.md $stages >experiments/results/cifar10.md.tmp <<'PY'
import json, os, platform, sys
logs, page, stages = sys.argv[1], sys.argv[2], sys.argv[3:]
old = {}
if os.path.exists(page):
    for l in open(page):
        if l.startswith("| ") and not l.startswith("| run ") and l.count("|") >= 8:
            old[l.split("|")[1].strip()] = l.rstrip("\n")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# CIFAR-10 results (issue 5)\n")
print("Written by `experiments/cifar/run.sh` from each run's metrics.jsonl (copied into "
      "`experiments/results/cifar10/<run>/` with its command.txt; the rows marked * are kept from "
      "an earlier page, their logs having been lost with an earlier machine). Machine: "
      f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {platform.platform()}.\n")
print("Data: the JPEG CIFAR-10 copy (`--data cifar10`), 50,000 training and 10,000 test "
      "images; random crop (4 px padding) and horizontal flip.\n")
print("| run | epochs | test acc (last epoch) | best epoch acc | train time | img/s (median) | command |")
print("|---|---|---|---|---|---|---|")
for s in stages:
    d = os.path.join(logs, s)
    try:
        rows = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    except FileNotFoundError:
        rows = []
    if not rows:
        if s in old or s + " *" in old:
            row = old.get(s) or old[s + " *"]
            print(row if s + " *" in old else row.replace(f"| {s} |", f"| {s} * |", 1))
        continue
    cmd = open(os.path.join(d, "command.txt")).readline().strip()
    secs = sum(r["seconds"] for r in rows)
    swa = [r for r in rows if "swa_models" in r]  # --swa-start: the average's evaluation
    rows = [r for r in rows if "swa_models" not in r]
    ips = sorted(r["images_per_s"] for r in rows)[len(rows) // 2]
    best = max(rows, key=lambda r: r["test_acc"])
    last = (f"{100*swa[-1]['test_acc']:.2f}% (weight average of epochs {swa[-1]['swa_start']}-"
            f"{swa[-1]['epoch']}; last iterate {100*rows[-1]['test_acc']:.2f}%)" if swa
            else f"{100*rows[-1]['test_acc']:.2f}%")
    print(f"| {s} | {rows[-1]['epoch']} | {last} | "
          f"{100*best['test_acc']:.2f}% (epoch {best['epoch']}) | {secs/3600:.2f} h | {ips:.0f} | `{cmd}` |")
PY
mv experiments/results/cifar10.md.tmp experiments/results/cifar10.md
# notes written by hand about the runs (resumes, binaries, machine load)
[ ! -f experiments/cifar/notes.md ] || { echo; cat experiments/cifar/notes.md; } >>experiments/results/cifar10.md
cat experiments/results/cifar10.md
