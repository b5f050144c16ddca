#!/usr/bin/env bash
# experiments/ablate/run.sh: the bit-width ablations of experiments/results/ablation_*.md.
# For each grid named (mnist, mnist_fc, mnist_gran, fashion, cifar; default: all) it runs
#     nice build/lowbit ablate experiments/ablate/NAME.abl -j $JOBS --threads 1
# (finished runs are skipped, so a rerun only completes what is missing), then writes
# experiments/results/ablation_NAME.md (machine, commands, wall time, the tables) and copies
# the plots and one weight histogram into experiments/results/ablation/.
# Usage: experiments/ablate/run.sh [NAME ...]   JOBS=2 by default; LB_BUILD_DIR=DIR uses
# that build (LB_NO_BUILD=1: as it is, without rebuilding); COLLECT_ONLY=1 runs nothing and
# only remakes the tables, plots and result pages from the runs already there. MACHINE_NOTE=TEXT
# replaces the line on the page saying what else ran on the machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${LB_BUILD_DIR:-build}"
[ -n "${LB_NO_BUILD:-}" ] || LB_BUILD_DIR="$build" tools/build.sh >/dev/null
jobs="${JOBS:-2}"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mnist mnist_fc mnist_gran fashion cifar)
mkdir -p experiments/results/ablation
for name in "${names[@]}"; do
    abl="experiments/ablate/$name.abl"
    out=$(awk '$1 == "out" { print $2 }' "$abl")
    cmd="nice -n 10 $build/lowbit ablate $abl -j $jobs --threads 1"
    if [ -n "${COLLECT_ONLY:-}" ]; then
        "$build/lowbit" ablate "$abl" --collect
    else
        echo "== $cmd"
        t0=$(date +%s)
        status=0
        $cmd || status=$?
        t1=$(date +%s)
        # the wall time of every sweep invocation (a resumed sweep has several lines)
        echo "$name $((t1 - t0)) $status $(date -u +%Y-%m-%dT%H:%MZ)" >> "$out/walltime.txt"
    fi
    res="experiments/results/ablation_$name.md"
    {
        echo "# Ablation: $name"
        echo
        echo "Machine: $(uname -sr), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
        echo "${MACHINE_NOTE:-shared with other jobs (a nice'd CIFAR-10 ResNet-20 training on both cores, another helper's runs).}"
        echo "lowbit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)."
        echo
        echo "Grid: [\`$abl\`](../ablate/$name.abl). Command (from the repository root):"
        echo
        echo '```'
        echo "$cmd"
        echo '```'
        echo
        echo "Wall time of the sweep invocations (seconds, exit status, end time):"
        echo
        echo '```'
        cat "$out/walltime.txt"
        echo '```'
        echo
        sed -n '3,$p' "$out/results.md"
        echo "The runs' command lines (\`lowbit ablate $abl --list\`):"
        echo
        echo '```'
        "$build/lowbit" ablate "$abl" --list --threads 1 | sed "s|^$build/lowbit|lowbit|"
        echo '```'
    } > "$res"
    for png in "$out"/*.png; do
        cp "$png" "experiments/results/ablation/${name}_$(basename "$png")"
    done
    # the weight histograms of the first seed's QAT LSQ run at 4 (else 2) bits, when there is one
    for h in "$out"/*/s*/qat-lsq-w4a4-*/hist.png "$out"/*/s*/qat-lsq-w2a2-*/hist.png; do
        if [ -f "$h" ]; then
            cp "$h" "experiments/results/ablation/${name}_hist_$(basename "$(dirname "$h")").png"
            break
        fi
    done
    echo "wrote $res"
done
