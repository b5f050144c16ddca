#!/usr/bin/env python3
"""experiments/mixed/summarize.py RUNS_DIR: the table of experiments/results/mixed_precision.md
from what experiments/mixed/run.sh left in RUNS_DIR (rows.tsv, */mixed*.json)."""
import json
import os
import statistics
import sys

runs = sys.argv[1]
rows = {}
for line in open(os.path.join(runs, "rows.tsv")):
    data, cfg, seed, js = line.rstrip("\n").split("\t", 3)
    rows.setdefault((data, cfg), []).append((int(seed), json.loads(js)))

print("| pair | weight memory | configuration | bits conv1/conv2/fc1/fc2/fc3 | weights KiB "
      "| test acc per seed | mean ± std | mixed − uniform |")
print("|---|---|---|---|---:|---|---|---:|")
for data in ("mnist", "fashion-mnist"):
    for size, uni, mix in (("uniform 3-bit", "w3a8", "mixed3"), ("uniform 2-bit", "w2a8", "mixed2")):
        means = {}
        for cfg in (uni, mix):
            rs = sorted(rows.get((data, cfg), []))
            if not rs:
                continue
            accs = [100 * r["test_acc"] for _, r in rs]
            mean = statistics.mean(accs)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            means[cfg] = mean
            if cfg == uni:
                bits = "/".join([cfg[1]] * 5)
                name = f"uniform {cfg}"
            else:
                mj = json.loads(open(os.path.join(runs, data, cfg + ".json")).read().splitlines()[-1])
                bits = "/".join(str(mj["bits"][k]) for k in ("conv1", "conv2", "fc1", "fc2", "fc3"))
                name = f"mixed (hawq, {mj['avg_bits']:.2f} avg bits) a8"
            per_seed = ", ".join(f"s{s}: {100 * r['test_acc']:.2f}" for s, r in rs)
            kib = rs[0][1]["weight_bytes"] / 1024
            diff = ""
            if cfg == mix and uni in means:
                diff = f"{mean - means[uni]:+.2f}"
            print(f"| LeNet-5 / {data} | {size} | {name} | {bits} | {kib:.2f} | {per_seed} "
                  f"| {mean:.2f} ± {std:.2f} | {diff} |")
