#!/usr/bin/env python3
"""torch_resnet20.py: the PyTorch reference for experiments/cifar/run.sh's FP32 stages.

Trains the zoo's ResNet-20 (or vgg-small) on the JPEG CIFAR-10 copy with lowbit's recipe:
batch 128, SGD momentum 0.9 without Nesterov, weight decay on conv/linear weights only (as
lowbit: BN parameters and biases are not decayed; --wd-all decays every parameter, as
lowbit's --wd-all and torch.optim.SGD(model.parameters()) do), one-cycle = linear warm-up over 30% of the
steps to --lr then cosine to 0 (train/schedule.c), random crop with 4 zero pixels of padding
and horizontal flip on the raw image, then normalisation; --cutout N then zeroes one random
N x N square per image (lowbit's --cutout) and --label-smoothing F smooths the training loss
(CrossEntropyLoss(label_smoothing=F), lowbit's --label-smoothing). Evaluates the test set after every
epoch and prints one JSON line per epoch (the keys of lowbit's metrics.jsonl that apply).
The model, data loading and schedule come from experiments/bench/torch_models.py.

Usage: /usr/bin/python3 experiments/cifar/torch_resnet20.py --epochs 64 --threads 2 \\
           [--model resnet20] [--wd-all] [--cutout N] [--label-smoothing F] [--max-steps N] [--ckpt FILE] >> torch-resnet20-64ep.jsonl
--ckpt FILE saves the model, optimizer and random state after every epoch (atomically: a
temporary file, then a rename) and, when FILE exists, resumes after its last epoch with the
same arguments, so a run can span sessions (append to the log when resuming).
(OPENBLAS_NUM_THREADS=1 is set here, PyTorch's fastest setting on this machine.)
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import torch_models as tm  # noqa: E402


def augment(xb, gen):
    """Random crop (4 zero pixels of padding) and horizontal flip of uint8 (B, C, H, W)."""
    b, _, h, w = xb.shape
    padded = F.pad(xb, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (b,), generator=gen)
    dx = torch.randint(0, 9, (b,), generator=gen)
    flip = torch.randint(0, 2, (b,), generator=gen).bool()
    out = torch.empty_like(xb)
    for i in range(b):
        img = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = img.flip(-1) if flip[i] else img
    return out


def cutout(xb, size, gen):
    """Zeroes one size x size square per normalised image, centre uniform over the image and
    clipped at the border (DeVries and Taylor's Cutout; lowbit's lb_cutout_pixels)."""
    b, _, h, w = xb.shape
    cy = torch.randint(0, h, (b,), generator=gen)
    cx = torch.randint(0, w, (b,), generator=gen)
    for i in range(b):
        y0, x0 = int(cy[i]) - size // 2, int(cx[i]) - size // 2
        xb[i, :, max(y0, 0):max(y0 + size, 0), max(x0, 0):max(x0 + size, 0)] = 0.0
    return xb


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet20", choices=["resnet20", "vgg-small"])
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--wd-all", action="store_true", help="decay BN parameters and biases too")
    ap.add_argument("--cutout", type=int, default=0, help="cutout square side (0: off)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--ckpt", default=None, help="checkpoint file: saved every epoch, resumed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (a smoke test)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    if a.epochs < 1 or a.batch < 1 or a.threads < 1:
        ap.error("epochs, batch and threads must be >= 1")
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    cache = a.cache_dir or os.environ.get("LOWBIT_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "lowbit")
    splits, source = tm.load_cifar(a.data_dir, cache)
    xtr, ytr = (torch.from_numpy(t) for t in splits["train"])
    xte, yte = (torch.from_numpy(t) for t in splits["test"])
    ytr, yte = ytr.long(), yte.long()

    model, _ = tm.build_model(a.model)
    tm.init_weights(model)
    model = model.to(memory_format=torch.channels_last)
    norm = tm.normalizer(*tm.NORM["cifar10"], True)
    decay = [p for n, p in model.named_parameters()
             if a.wd_all or (n.endswith("weight") and p.dim() > 1)]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=False)

    n = xtr.shape[0]
    per_epoch = n // a.batch          # lowbit drops the last partial batch too
    total = per_epoch * a.epochs
    warmup = total * 3 // 10
    step, first = 0, 1
    if a.ckpt and os.path.exists(a.ckpt):
        st = torch.load(a.ckpt)
        if st["args"] != {k: v for k, v in vars(a).items() if k not in ("ckpt", "threads")}:
            sys.exit(f"{a.ckpt}: saved with other arguments {st['args']}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        step, first = st["step"], st["epoch"] + 1
        print(f"resuming {a.ckpt} after epoch {st['epoch']}", file=sys.stderr)
    for epoch in range(first, a.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(per_epoch):
            idx = perm[i * a.batch:(i + 1) * a.batch]
            xb, yb = norm(augment(xtr.index_select(0, idx), gen)), ytr.index_select(0, idx)
            if a.cutout > 0:
                xb = cutout(xb, a.cutout, gen)
            lr = tm.lowbit_lr(step, total, warmup, a.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * yb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
            seen += yb.shape[0]
            step += 1
            if a.max_steps and step >= a.max_steps:
                break
        train_s = time.perf_counter() - t0
        acc, tloss = tm.evaluate(model, xte, yte, 500, norm)
        print(json.dumps({"framework": "pytorch " + torch.__version__, "model": a.model,
                          "epoch": epoch, "step": step, "lr": lr,
                          "train_loss": loss_sum / seen, "train_acc": correct / seen,
                          "test_loss": tloss, "test_acc": acc,
                          "images_per_s": seen / train_s,
                          "seconds": time.perf_counter() - t0, "source": source}), flush=True)
        if a.ckpt:
            torch.save({"args": {k: v for k, v in vars(a).items() if k not in ("ckpt", "threads")},
                        "model": model.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "rng": torch.get_rng_state(),
                        "step": step, "epoch": epoch}, a.ckpt + ".tmp")
            os.replace(a.ckpt + ".tmp", a.ckpt)
        if a.max_steps and step >= a.max_steps:
            break


if __name__ == "__main__":
    main()
