#!/usr/bin/python3
"""PyTorch reference for `lowbit train --model M [--quant w4a4]`: the four zoo models, FP32 or
W4A4 (LSQ), trained for a few timed steps; one JSON summary line at the end.

Run with Debian's interpreter (python3-torch, PyTorch 1.13), OpenBLAS single-threaded:
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2 /usr/bin/python3 torch_models.py \
        --model resnet20 --batch 128 --threads 2 --quant w4a4 --steps 50 --warmup-steps 5

What matches lowbit (layers/zoo.c, layers/*.c, quant/quantizer.c, quant/fake_quant.c,
train/loop.c, train/schedule.c):
  * Models, layer for layer as zoo.c generates them (see build_model below): mlp 784-256-256-10;
    lenet5 (conv 6 k5 pad 2 on 28x28, relu, maxpool, conv 16 k5, relu, maxpool, fc 120-84-10);
    vgg-small (2x conv3x3+BN+relu per stage at 64/128/256 channels, maxpool after each stage,
    fc 256, fc 10; convs without bias); resnet20 (16-channel stem, 3x3 basic blocks at 16/32/64
    channels, stride 2 at the start of stages 2 and 3 with a 1x1 stride-2 conv + BN shortcut
    (option B), global average pooling, fc 10).
  * Kaiming-normal weights (std sqrt(2 / fan_in)), zero biases; BN gamma 1, beta 0, eps 1e-5,
    momentum 0.1 (PyTorch's defaults, which are lowbit's).
  * SGD momentum 0.9 Nesterov, weight decay 5e-4 on conv/linear weights only (biases, BN
    affine and LSQ steps are lowbit's LB_PARAM_NO_DECAY); lr 0.05 with lowbit's default
    schedule: linear warm-up over half the run's steps, then cosine to 0, set before every step.
  * W4A4 = lowbit's `--quant w4a4`: every conv and linear layer quantizes its weights (LSQ,
    per output channel, signed 4-bit [-8, 7]) and its input (LSQ, one step per tensor,
    unsigned [0, 15] when the input comes from a ReLU through pooling/flatten/GAP, signed
    [-8, 7] otherwise: the image input of the first layer). LSQ forward
    y = clamp(round_half_even(x / s), qmin, qmax) * s with a true division; backward
    dx = dy where qmin <= x/s <= qmax (clipped STE), ds = g * sum dy * (round(v) - v inside,
    qmin below, qmax above) with g = 1 / sqrt(per_scale * qmax), per_scale = elements per step
    (weights: fan_in; activations: one sample's C*H*W, batch excluded). Steps start at the
    first training batch as 2 * mean|x| / sqrt(qmax) (per channel for weights), are floored at
    1e-8 before every use, and are trained by the same SGD.
  * Inputs: uint8 pixels kept as uint8; each batch is gathered and normalised
    ((x/255 - mean) / std per channel) inside the timed step, as lowbit does. MNIST
    0.1307/0.3081, Fashion-MNIST 0.2860/0.3530, CIFAR-10 0.4914,0.4822,0.4465 /
    0.2470,0.2435,0.2616. No augmentation.
  * After training, one evaluation of the test set at batch 500 (lowbit always does it; it is
    excluded from img/s but counts in peak RSS on both sides).
Timing: each step (gather + normalise, forward, loss, backward, optimizer step, running
loss/accuracy) is timed with perf_counter; the first --warmup-steps are not counted.
train_images_per_s = timed steps * batch / their summed time; train_images_per_s_all counts
every step (lowbit's own definition). peak_rss_mb is getrusage ru_maxrss.
"""
import argparse
import io
import json
import math
import os
import resource
import sys
import tarfile
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_models.py: this interpreter (%s) has no torch; use /usr/bin/python3 "
             "after `apt-get install python3-torch`" % sys.executable)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lenet5 import FILES, find_file, read_idx  # noqa: E402  (the IDX reader)

MODELS = ("mlp", "lenet5", "vgg-small", "resnet20")
NORM = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")

# ---- data --------------------------------------------------------------------------------


def data_roots(data_dir):
    """lowbit's lookup order: --data-dir, $LOWBIT_DATA, ../shared/datasets, /usr/share/datasets."""
    if data_dir:
        return [data_dir]
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.normpath(os.path.join(here, "..", ".."))
    return [r for r in (os.environ.get("LOWBIT_DATA", ""),
                        os.path.join(repo, "..", "shared", "datasets"),
                        "/work/shared/datasets", "/usr/share/datasets") if r]


def find_idx_dir(name, data_dir):
    for root in data_roots(data_dir):
        # an explicit --data-dir may be the folder itself; default roots hold <name>/
        for d in (os.path.join(root, name),) + ((root,) if data_dir else ()):
            if all(find_file(d, f) for pair in FILES.values() for f in pair):
                return os.path.realpath(d)
    return None


def load_idx(name, data_dir):
    d = find_idx_dir(name, data_dir)
    if not d:
        sys.exit("torch_models.py: %s IDX files not found under %s; pass --data-dir"
                 % (name, ", ".join(data_roots(data_dir))))
    out = {}
    for split, (img, lab) in FILES.items():
        x = read_idx(find_file(d, img))
        out[split] = (x.reshape(-1, 1, 28, 28).copy(),   # writable, frees the file buffer
                      read_idx(find_file(d, lab)).astype(np.int64))
    return out, d


def find_cifar_tar(data_dir):
    for root in data_roots(data_dir):
        p = os.path.join(root, "cifar10-jpeg.tar.gz")
        if os.path.isfile(p):
            return os.path.realpath(p)
    return None


def decode_cifar_tar(path):
    """train/<class>/NNNN.jpg and test/<class>/NNNN.jpg -> uint8 (N, 3, 32, 32) + labels,
    classes in CIFAR-10 order and files sorted by name (lowbit's image-folder order)."""
    try:
        from PIL import Image
    except ImportError:
        sys.exit("torch_models.py: CIFAR-10 JPEGs need PIL: apt-get install python3-pil")
    files = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 3 or parts[0] not in files:
                continue
            if parts[1] not in CIFAR_CLASSES or not parts[2].lower().endswith(".jpg"):
                continue
            files[parts[0]].append((CIFAR_CLASSES.index(parts[1]), parts[2],
                                    tf.extractfile(m).read()))
    out = {}
    for split, lst in files.items():
        lst.sort(key=lambda t: (t[0], t[1]))
        x = np.empty((len(lst), 3, 32, 32), dtype=np.uint8)
        y = np.empty(len(lst), dtype=np.int64)
        for i, (label, name, raw) in enumerate(lst):
            im = Image.open(io.BytesIO(raw)).convert("RGB")
            if im.size != (32, 32):
                sys.exit("torch_models.py: %s: %s/%s is %dx%d, expected 32x32"
                         % (path, split, name, im.size[0], im.size[1]))
            x[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
            y[i] = label
        out[split] = (x, y)
    return out


def load_cifar(data_dir, cache_dir):
    """Decodes the JPEG archive once (tarfile + PIL) and keeps the pixels in cache_dir as
    .npy, keyed by the archive's size and mtime."""
    path = find_cifar_tar(data_dir)
    if not path:
        sys.exit("torch_models.py: cifar10-jpeg.tar.gz not found under %s; pass --data-dir"
                 % ", ".join(data_roots(data_dir)))
    st = os.stat(path)
    key = "torch-cifar10-jpeg-%d-%d" % (st.st_size, int(st.st_mtime))
    names = {s: [os.path.join(cache_dir, "%s-%s-%s.npy" % (key, s, k)) for k in ("x", "y")]
             for s in ("train", "test")} if cache_dir else None
    if names and all(os.path.isfile(p) for v in names.values() for p in v):
        return {s: (np.load(v[0]), np.load(v[1])) for s, v in names.items()}, path
    out = decode_cifar_tar(path)
    if names:
        os.makedirs(cache_dir, exist_ok=True)
        for s, v in names.items():
            for arr, p in zip(out[s], v):
                tmp = p + ".tmp%d.npy" % os.getpid()
                np.save(tmp, arr)
                os.replace(tmp, p)
    return out, path


# ---- LSQ fake quantization ---------------------------------------------------------------


class LSQFunction(torch.autograd.Function):
    """y = clamp(round_half_even(x / s), qmin, qmax) * s, lowbit's lb_fake_quant_lsq.
    s broadcasts against x (a 0-d tensor per tensor, or (C, 1, ...) per channel); dims are
    the dimensions summed for the step gradient."""

    @staticmethod
    def forward(ctx, x, s, qmin, qmax, gs, dims):
        ctx.save_for_backward(x, s)
        ctx.q = (qmin, qmax, gs, dims)
        return torch.round(x / s).clamp_(qmin, qmax).mul_(s)   # torch.round: ties to even

    @staticmethod
    def backward(ctx, dy):
        x, s = ctx.saved_tensors
        qmin, qmax, gs, dims = ctx.q
        v = x / s
        inside = (v >= qmin) & (v <= qmax)
        dx = dy * inside
        # per element: round(v) - v inside, qmin below, qmax above (= clamp(round(v)) - inside*v)
        term = torch.round(v).clamp_(qmin, qmax).sub_(v * inside).mul_(dy)
        ds = term.sum(dim=dims, keepdim=True) if dims else term.sum()
        return dx, ds.reshape(s.shape).mul_(gs), None, None, None, None


class LSQ(nn.Module):
    """One LSQ quantizer: weights (per output channel, signed) or an input activation (per
    tensor, signed or unsigned). per_scale: elements per step, as lowbit's q->per_scale."""

    def __init__(self, bits, weight, unsigned, n_scales, per_scale):
        super().__init__()
        self.qmin, self.qmax = (0, 2 ** bits - 1) if unsigned else (-2 ** (bits - 1),
                                                                   2 ** (bits - 1) - 1)
        self.weight = weight
        self.step = nn.Parameter(torch.ones(n_scales))
        self.gs = 1.0 / math.sqrt(per_scale * self.qmax)
        self.initialized = False      # lowbit: the quantizer's count, 0 until first use

    def forward(self, x):
        if self.weight:
            shape, dims = (-1,) + (1,) * (x.dim() - 1), tuple(range(1, x.dim()))
        else:
            shape, dims = (), None
        with torch.no_grad():
            if self.training and not self.initialized:
                # 2 * mean|x| / sqrt(qmax): per output channel for weights, whole batch else
                m = x.abs().mean(dim=dims) if self.weight else x.abs().mean().reshape(1)
                self.step.copy_(2.0 * m / math.sqrt(self.qmax))
                self.initialized = True
            self.step.clamp_(min=1e-8)    # lowbit's floor_steps (projected descent)
        return LSQFunction.apply(x, self.step.reshape(shape), self.qmin, self.qmax, self.gs, dims)


class QConv2d(nn.Conv2d):
    """Conv2d with optional LSQ weight and input quantizers (lowbit's conv node)."""

    def setup_quant(self, bits, in_unsigned, in_numel):
        self.wq = LSQ(bits, True, False, self.out_channels, self.weight[0].numel())
        self.aq = LSQ(bits, False, in_unsigned, 1, in_numel)

    def forward(self, x):
        if getattr(self, "wq", None) is None:
            return super().forward(x)
        return self._conv_forward(self.aq(x), self.wq(self.weight), self.bias)


class QLinear(nn.Linear):
    def setup_quant(self, bits, in_unsigned, in_numel):
        self.wq = LSQ(bits, True, False, self.out_features, self.in_features)
        self.aq = LSQ(bits, False, in_unsigned, 1, in_numel)

    def forward(self, x):
        if getattr(self, "wq", None) is None:
            return super().forward(x)
        return F.linear(self.aq(x), self.wq(self.weight), self.bias)


# ---- models (layers/zoo.c) ---------------------------------------------------------------


class BasicBlock(nn.Module):
    """conv3x3(stride)-bn-relu-conv3x3-bn, + identity or (1x1 stride-s conv + bn), relu."""

    def __init__(self, c_in, c, stride):
        super().__init__()
        self.conv1 = QConv2d(c_in, c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = QConv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = None
        if stride != 1 or c != c_in:
            self.down = QConv2d(c_in, c, 1, stride=stride, bias=False)
            self.downbn = nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.downbn(self.down(x)) if self.down is not None else x))


class ResNet20(nn.Module):
    def __init__(self, n_classes=10):
        super().__init__()
        self.conv = QConv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for s in range(3):
            c = 16 << s
            for k in range(3):
                blocks.append(BasicBlock(c_in, c, 2 if s > 0 and k == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = QLinear(64, n_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(name, n_classes=10):
    """The zoo model and its input shape (c, h, w)."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), QLinear(784, 256), nn.ReLU(), QLinear(256, 256),
                             nn.ReLU(), QLinear(256, n_classes)), (1, 28, 28)
    if name == "lenet5":
        return nn.Sequential(
            QConv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            QConv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            QLinear(400, 120), nn.ReLU(), QLinear(120, 84), nn.ReLU(),
            QLinear(84, n_classes)), (1, 28, 28)
    if name == "vgg-small":
        layers, c_in = [], 3
        for c in (64, 128, 256):
            for _ in range(2):
                layers += [QConv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU()]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), QLinear(256 * 4 * 4, 256), nn.ReLU(), QLinear(256, n_classes)]
        return nn.Sequential(*layers), (3, 32, 32)
    if name == "resnet20":
        return ResNet20(n_classes), (3, 32, 32)
    raise ValueError("unknown model %s (zoo: %s)" % (name, ", ".join(MODELS)))


def init_weights(model):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def setup_quant(model, in_shape, bits):
    """Gives every conv/linear an LSQ weight and input quantizer. Each layer's input numel
    (one sample) and whether it is non-negative are read off a forward pass with hooks: an
    input is unsigned when it came from a ReLU through pooling/flatten/GAP, which in these
    four models is every conv/linear input except the image (checked: min >= 0)."""
    layers = [m for m in model.modules() if isinstance(m, (QConv2d, QLinear))]
    seen = {}

    def hook(mod, inp):      # returns None: the input is left as it is
        seen[mod] = (inp[0][0].numel(), bool((inp[0] >= 0).all()))
    hooks = [m.register_forward_pre_hook(hook) for m in layers]
    with torch.no_grad():
        model.eval()
        x = torch.randn((2,) + in_shape)  # signed: the image input is never unsigned
        model(x)
        model.train()
    for h in hooks:
        h.remove()
    for m in layers:
        numel, nonneg = seen[m]
        m.setup_quant(bits, nonneg and m is not layers[0], numel)
    return layers


def count_macs(model, in_shape):
    """Forward multiply-accumulates per image of every conv and linear layer, by name."""
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            macs.append((mod.name, out[0].numel() * k))
        else:
            macs.append((mod.name, mod.in_features * mod.out_features))
    hs = []
    for n, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.name = n
            hs.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()
        model(torch.zeros((1,) + in_shape))
    for h in hs:
        h.remove()
    return macs


# ---- training ----------------------------------------------------------------------------


def lowbit_lr(step, total, warmup, lr_max, lr_min=0.0):
    """lb_schedule_lr for the cosine schedule with linear warm-up (train/schedule.c)."""
    step = max(step, 0)
    if step < warmup:
        return lr_max * (step + 1) / warmup
    if total <= warmup:
        return lr_max
    step = min(step, total)
    p = (step - warmup) / (total - warmup)
    if p >= 1.0:
        return lr_min
    return lr_min + (lr_max - lr_min) * (1.0 + math.cos(math.pi * p)) / 2.0


def normalizer(mean, std, channels_last):
    """uint8 (B, C, H, W) -> float32 ((x/255 - mean) / std), the same float ops as lowbit."""
    m = torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def norm(xb):
        x = xb.to(torch.float32).div_(255.0).sub_(m).div_(s)
        return x.contiguous(memory_format=fmt) if channels_last else x
    return norm


@torch.no_grad()
def evaluate(model, x, y, batch, norm):
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, x.shape[0], batch):
        out = model(norm(x[i:i + batch]))
        yb = y[i:i + batch]
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    model.train()
    return correct / x.shape[0], loss_sum / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--data", default=None,
                    help="mnist, fashion-mnist or cifar10 [fashion-mnist for mlp/lenet5, "
                         "cifar10 for vgg-small/resnet20]")
    ap.add_argument("--data-dir", default=None, help="look for the data set only here")
    ap.add_argument("--cache-dir", default=None,
                    help="keep decoded CIFAR-10 pixels here (.npy) [$LOWBIT_CACHE or "
                         "~/.cache/lowbit]")
    ap.add_argument("--quant", default="fp32", choices=("fp32", "w4a4"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch.set_num_threads (intra-op); inter-op is always 1")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps")
    ap.add_argument("--warmup-steps", type=int, default=5,
                    help="untimed training steps before the timed ones")
    ap.add_argument("--channels-last", action="store_true",
                    help="channels-last memory format for model and inputs (CNNs)")
    ap.add_argument("--foreach", action="store_true", help="SGD with foreach=True")
    ap.add_argument("--no-eval", action="store_true",
                    help="skip the test-set evaluation (lowbit always does it)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prepare-data", action="store_true",
                    help="load the data set (decoding CIFAR-10 into --cache-dir once), exit")
    ap.add_argument("--count-macs", action="store_true",
                    help="print the forward MACs per image of each conv/linear as JSON, exit")
    a = ap.parse_args()
    if a.batch < 1 or a.threads < 1 or a.steps < 1 or a.warmup_steps < 0:
        ap.error("batch, threads and steps must be >= 1, warmup-steps >= 0")

    torch.set_num_threads(a.threads)     # before any parallel work
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)

    model, in_shape = build_model(a.model)
    if a.count_macs:
        macs = count_macs(model, in_shape)
        print(json.dumps({"model": a.model, "layers": macs, "macs": sum(m for _, m in macs)}))
        return
    data = a.data or ("cifar10" if in_shape[0] == 3 else "fashion-mnist")
    if data not in NORM:
        ap.error("--data %s: expected mnist, fashion-mnist or cifar10" % data)
    if data == "cifar10":
        cache = a.cache_dir or os.environ.get("LOWBIT_CACHE") or \
            os.path.join(os.path.expanduser("~"), ".cache", "lowbit")
        splits, source = load_cifar(a.data_dir, cache)
    else:
        splits, source = load_idx(data, a.data_dir)
    if a.prepare_data:
        print(json.dumps({"dataset": data, "source": source,
                          "train": len(splits["train"][1]), "test": len(splits["test"][1])}))
        return
    xtr, ytr = (torch.from_numpy(t) for t in splits["train"])
    xte, yte = (torch.from_numpy(t) for t in splits["test"])
    if tuple(xtr.shape[1:]) != in_shape:
        sys.exit("torch_models.py: %s has %s images, %s needs %s"
                 % (data, tuple(xtr.shape[1:]), a.model, in_shape))

    init_weights(model)
    if a.quant == "w4a4":
        setup_quant(model, in_shape, 4)
    cl = a.channels_last and a.model != "mlp"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    norm = normalizer(*NORM[data], cl)

    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True, foreach=a.foreach or None)

    n = xtr.shape[0]
    total = a.warmup_steps + a.steps
    if total > n // a.batch:
        sys.exit("torch_models.py: %d steps of %d need more than one epoch (%d images)"
                 % (total, a.batch, n))
    warm_lr = int(0.5 * total)           # lowbit: --warmup 0.5 epochs, the run is one epoch
    gen = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(n, generator=gen)

    t0 = time.perf_counter()
    t_timed = t_all = 0.0
    loss_sum, correct, seen = 0.0, 0, 0
    for step in range(total):
        ts = time.perf_counter()
        idx = perm[step * a.batch:(step + 1) * a.batch]
        xb, yb = norm(xtr.index_select(0, idx)), ytr.index_select(0, idx)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = lowbit_lr(step, total, warm_lr, a.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        loss_sum += loss.item() * a.batch
        correct += (out.argmax(1) == yb).sum().item()
        seen += a.batch
        dt = time.perf_counter() - ts
        t_all += dt
        if step >= a.warmup_steps:
            t_timed += dt
    test_acc = test_loss = -1.0
    if not a.no_eval:
        test_acc, test_loss = evaluate(model, xte, yte, a.eval_batch, norm)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    print(json.dumps({
        "framework": "pytorch", "model": a.model, "dataset": data, "data_source": source,
        "quant": a.quant, "batch": a.batch, "threads": a.threads,
        "interop_threads": torch.get_num_interop_threads(),
        "steps": total, "warmup_steps": a.warmup_steps, "timed_steps": a.steps,
        "train_loss": round(loss_sum / seen, 6), "train_acc": round(correct / seen, 6),
        "test_acc": round(test_acc, 6), "test_loss": round(test_loss, 6),
        "seconds": round(seconds, 3), "train_seconds": round(t_timed, 3),
        "train_images_per_s": round(a.steps * a.batch / t_timed, 1),
        "train_images_per_s_all": round(total * a.batch / t_all, 1),
        "peak_rss_mb": round(rss_mb, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "channels_last": cl, "sgd_foreach": bool(a.foreach),
        "torch_version": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }))


if __name__ == "__main__":
    main()
