#!/usr/bin/python3
"""PyTorch reference for `lowbit train --model lenet5 --data mnist`: same network, optimizer,
schedule, batch and normalisation, timed the same way, one JSON summary line at the end.

Run with Debian's interpreter (python3-torch, PyTorch 1.13):
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2 /usr/bin/python3 torch_lenet5.py --threads 2

What matches lowbit (cli/main.c, train/loop.c, layers/zoo.c):
  * LeNet-5: conv(1->6, k5, pad 2)+bias, relu, maxpool 2, conv(6->16, k5)+bias, relu,
    maxpool 2, flatten (400), linear 120, relu, linear 84, relu, linear 10.
  * Init: Kaiming normal (std = sqrt(2 / fan_in)) for conv and linear weights, zero biases.
  * SGD momentum 0.9, Nesterov, weight decay 5e-4 on weights only (lowbit flags biases
    NO_DECAY), lr 0.05 cosine to 0 over steps_per_epoch * epochs, lr(step) set before each
    optimizer step exactly like lb_schedule_lr.
  * Batch 64 with drop_last; a fresh seeded permutation each epoch; eval batch 500.
  * Inputs (x/255 - 0.1307) / 0.3081.
  * Timing: train_seconds sums the wall time of each training step (batch gather, forward,
    loss, backward, optimizer step, running loss/accuracy), nothing else; evaluation and data
    loading are excluded. train_images_per_s = steps * batch / train_seconds. `seconds` runs
    from the start of training to the end of the last evaluation (lowbit's t0 is also taken
    after loading data and building the model).
What differs: batches are gathered from a pre-normalised float tensor (lowbit normalises the
uint8 pixels of each batch inside the timed step), and the random streams differ, so the
test accuracy agrees only approximately.
"""
import argparse
import gzip
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_lenet5.py: this interpreter (%s) has no torch; use /usr/bin/python3 "
             "after `apt-get install python3-torch`" % sys.executable)

MEAN, STD = 0.1307, 0.3081
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", ".."))
    cands = [os.environ.get("LOWBIT_DATA", ""),
             os.path.join(repo, "..", "shared", "datasets"),
             "/work/shared/datasets", "/usr/share/datasets"]
    for c in cands:
        if c and find_split_dir(c):
            return find_split_dir(c)
    return None


def find_split_dir(root):
    """root itself or root/mnist, whichever holds the four files (plain or .gz)."""
    for d in (os.path.join(root, "mnist"), root):
        if all(find_file(d, f) for pair in FILES.values() for f in pair):
            return d
    return None


def find_file(d, name):
    for p in (os.path.join(d, name), os.path.join(d, name + ".gz")):
        if os.path.isfile(p):
            return p
    return None


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError("%s: %d bytes of data, header says %s" % (path, data.size, shape))
    return data.reshape(shape)


def load_split(d, split):
    img_name, lab_name = FILES[split]
    x = read_idx(find_file(d, img_name))
    y = read_idx(find_file(d, lab_name))
    # In place, in float32 like lowbit's ((float)pix / 255.0f - mean) / std; no temporaries
    # (they would dominate peak RSS).
    x = x.astype(np.float32)
    x /= np.float32(255.0)
    x -= np.float32(MEAN)
    x /= np.float32(STD)
    x = torch.from_numpy(x).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def lenet5():
    m = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(mod.bias)
    return m


def cosine_lr(step, total, lr_max, lr_min=0.0):
    """lb_schedule_lr for the cosine schedule without warm-up."""
    if total <= 0:
        return lr_max
    step = min(max(step, 0), total)
    p = step / total
    if p >= 1.0:
        return lr_min
    return lr_min + (lr_max - lr_min) * (1.0 + math.cos(math.pi * p)) / 2.0


@torch.no_grad()
def evaluate(model, x, y, batch):
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        out = model(xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    model.train()
    n = x.shape[0]
    return correct / n, loss_sum / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch.set_num_threads (intra-op); inter-op is always 1")
    ap.add_argument("--data-dir", default=None,
                    help="folder with the MNIST IDX files (or its parent)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.epochs < 1 or a.batch < 1 or a.threads < 1 or a.max_steps < 0:
        ap.error("epochs, batch and threads must be >= 1, max-steps >= 0")

    # Must come before any parallel work, or set_num_interop_threads raises.
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)

    d = find_split_dir(a.data_dir) if a.data_dir else default_data_dir()
    if not d:
        sys.exit("torch_lenet5.py: MNIST IDX files not found (%s); pass --data-dir"
                 % (a.data_dir or "default locations"))
    xtr, ytr = load_split(d, "train")
    xte, yte = load_split(d, "test")

    model = lenet5()
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)

    n = xtr.shape[0]
    per_epoch = n // a.batch                      # drop_last
    if a.max_steps and a.max_steps < per_epoch:
        per_epoch = a.max_steps
    total = per_epoch * a.epochs
    gen = torch.Generator().manual_seed(a.seed)

    t0 = time.perf_counter()
    step, train_seconds = 0, 0.0
    train_loss = train_acc = test_acc = test_loss = 0.0
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct, seen, t_ep = 0.0, 0, 0, 0.0
        for i in range(per_epoch):
            ts = time.perf_counter()
            idx = perm[i * a.batch:(i + 1) * a.batch]
            xb, yb = xtr.index_select(0, idx), ytr.index_select(0, idx)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = cosine_lr(step, total, a.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            step += 1
            loss_sum += loss.item() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
            seen += xb.shape[0]
            t_ep += time.perf_counter() - ts
        train_seconds += t_ep
        train_loss, train_acc = loss_sum / seen, correct / seen
        test_acc, test_loss = evaluate(model, xte, yte, a.eval_batch)
        print("epoch %d/%d  loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  "
              "%.0f img/s" % (epoch, a.epochs, train_loss, 100 * train_acc, test_loss,
                              100 * test_acc, seen / t_ep), flush=True)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    print(json.dumps({
        "framework": "pytorch", "model": "lenet5", "dataset": "mnist", "data_dir": d,
        "test_acc": round(test_acc, 6), "test_loss": round(test_loss, 6),
        "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
        "epochs": a.epochs, "steps": step, "batch": a.batch, "threads": a.threads,
        "interop_threads": torch.get_num_interop_threads(),
        "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(step * a.batch / train_seconds, 1) if train_seconds else 0,
        "peak_rss_mb": round(rss_mb, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }))


if __name__ == "__main__":
    main()
