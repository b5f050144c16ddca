#!/usr/bin/python3
"""gen_optim_golden.py: PyTorch reference trajectories for tests/test_train_optim.c.

Runs 5 steps of torch.optim.SGD (momentum 0.9, weight_decay 1e-2, Nesterov off and on),
torch.optim.Adam (weight_decay 1e-2) and torch.optim.AdamW (weight_decay 1e-2) on two small
float32 tensors and writes the final values to tests/data/optim_golden.txt. The C test rebuilds
the same inputs (keep the formulas below and test_train_optim.c in sync):

  w: 4 values, weight decay applied;  b: 2 values, no weight decay (LB_PARAM_NO_DECAY)
  initial values p_k (k = 0..5 over w then b): P0 below, exact in float32
  gradient at step s (0-based):  grad_k(s) = (float) sin(k + s)
  learning rate at step s:       lr(s) = LR[kind] * (8 - s) / 8   (exact in float32)

Needs PyTorch 1.13 (Debian: /usr/bin/python3 with python3-torch). Not run by the build:
run it by hand from the repository root and commit its output.
    /usr/bin/python3 tests/data/gen/gen_optim_golden.py
"""
import math
import os
import sys

import torch

P0 = [0.5, -1.25, 2.0, -0.75, 0.125, 1.5]
N_W = 4            # w = P0[:4], b = P0[4:]
STEPS = 5
WD = 1e-2
LR = {"sgd": 0.125, "sgd_nesterov": 0.125, "adam": 0.0625, "adamw": 0.0625}


def make_opt(kind, w, b):
    groups = [{"params": [w]}, {"params": [b], "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=LR[kind], momentum=0.9, weight_decay=WD)
    if kind == "sgd_nesterov":
        return torch.optim.SGD(groups, lr=LR[kind], momentum=0.9, weight_decay=WD,
                               nesterov=True)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=LR[kind], weight_decay=WD, foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=LR[kind], weight_decay=WD, foreach=False)
    raise ValueError(kind)


def run(kind):
    w = torch.tensor(P0[:N_W], dtype=torch.float32, requires_grad=True)
    b = torch.tensor(P0[N_W:], dtype=torch.float32, requires_grad=True)
    opt = make_opt(kind, w, b)
    for s in range(STEPS):
        g = torch.tensor([math.sin(k + s) for k in range(len(P0))], dtype=torch.float32)
        w.grad = g[:N_W].clone()
        b.grad = g[N_W:].clone()
        for group in opt.param_groups:
            group["lr"] = LR[kind] * (8 - s) / 8
        opt.step()
    return torch.cat([w.detach(), b.detach()]).tolist()


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    path = os.path.join(root, "optim_golden.txt")
    lines = [
        "# lowbit optimizer golden v1: written by tests/data/gen/gen_optim_golden.py",
        "# torch %s; %d steps; w = p[0:4] decays, b = p[4:6] does not; wd %g, momentum 0.9"
        % (torch.__version__, STEPS, WD),
        "# name n values (float32, %.9g)",
    ]
    for kind in ["sgd", "sgd_nesterov", "adam", "adamw"]:
        vals = run(kind)
        lines.append("%s %d %s" % (kind, len(vals), " ".join("%.9g" % v for v in vals)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.normpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
