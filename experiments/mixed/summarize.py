#!/usr/bin/env python3
"""experiments/mixed/summarize.py RUNS_DIR: the table of experiments/results/mixed_precision.md
from what experiments/mixed/run.sh left in RUNS_DIR (rows.tsv, */fp32.log, */mixed*.json)."""
import json
import os
import statistics
import sys

runs = sys.argv[1]
rows = {}
for line in open(os.path.join(runs, "rows.tsv")):
    data, cfg, seed, js = line.rstrip("\n").split("\t", 3)
    rows.setdefault((data, cfg), []).append((int(seed), json.loads(js)))

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def mixed_json(data, cfg):
    path = os.path.join(runs, data, cfg + ".json")
    return json.loads(open(path).read().splitlines()[-1]) if os.path.exists(path) else None


print("| pair | weight memory | configuration | bits conv1/conv2/fc1/fc2/fc3 | weights KiB "
      "| test acc per seed (%) | mean ± std (%) | vs uniform |")
print("|---|---|---|---|---:|---|---|---:|")
for data in ("mnist", "fashion-mnist"):
    fp = os.path.join(runs, data, "fp32.log")
    if os.path.exists(fp):
        r = json.loads(open(fp).read().splitlines()[-1])
        print(f"| LeNet-5 / {data} | FP32 | float (the checkpoint every row starts from) | "
              f"32/32/32/32/32 | {r['weight_bytes'] / 1024:.2f} | seed 42: {100 * r['test_acc']:.2f} "
              f"| | |")
    for size, uni, mixes in (("uniform 3-bit", "w3a8", ("mixed3", "mixed3l")),
                             ("uniform 2-bit", "w2a8", ("mixed2", "mixed2l"))):
        base = None
        for cfg in (uni,) + mixes:
            rs = sorted(rows.get((data, cfg), []))
            mj = mixed_json(data, cfg) if cfg != uni else None
            if cfg == uni:
                bits, name = "/".join([cfg[1]] * 5), f"uniform {cfg}"
            elif mj:
                bits = "/".join(str(mj["bits"][k]) for k in LAYERS)
                name = f"mixed, objective {mj['objective']} ({mj['avg_bits']:.2f} bits/weight), a8"
            else:
                continue
            if not rs:
                hawq = mixed_json(data, mixes[0])
                same = mj and hawq and cfg != mixes[0] and mj["bits"] == hawq["bits"]
                print(f"| LeNet-5 / {data} | {size} | {name} | {bits} | "
                      f"{mj['weight_bytes'] / 1024:.2f} | "
                      f"{'same bits as objective hawq: not trained again' if same else 'not run'}"
                      f" | | |")
                continue
            accs = [100 * r["test_acc"] for _, r in rs]
            mean = statistics.mean(accs)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            if cfg == uni:
                base = mean
            per_seed = ", ".join(f"s{s}: {100 * r['test_acc']:.2f}" for s, r in rs)
            kib = rs[0][1]["weight_bytes"] / 1024
            diff = f"{mean - base:+.2f}" if cfg != uni and base is not None else ""
            print(f"| LeNet-5 / {data} | {size} | {name} | {bits} | {kib:.2f} | {per_seed} "
                  f"| {mean:.2f} ± {std:.2f} | {diff} |")
