#!/usr/bin/python3
"""Training FLOPs per image of the zoo models, from the geometry layers/zoo.c builds.

    flops.py                 table: forward MACs per conv/linear layer and the totals
    flops.py --json          {"mlp": {"macs": ..., "train_flops": ...}, ...}
    flops.py --check         the totals against the hand counts below, and (when PyTorch is
                             installed) against torch_models.py's forward hooks

Convention (the issue's): training FLOPs per image = forward MACs x 2 (a multiply-add is two
FLOPs) x 3 (forward, input gradient, weight gradient: each the same GEMM size). Only conv and
linear layers count; batch-norm, ReLU, pooling, the loss, fake quantization and the optimizer
are left out (they are memory-bound and small next to the GEMMs), and so is the fact that the
first layer needs no input gradient. Conv MACs = C_out * H_out * W_out * C_in * k * k; linear
MACs = in * out.
"""
import json
import subprocess
import sys
import os

# Hand counts (forward MACs per image), written out independently of the code below.
HAND = {
    # 784*256 + 256*256 + 256*10
    "mlp": 200704 + 65536 + 2560,
    # conv1 6*28*28*1*25, conv2 16*10*10*6*25, fc 400*120 + 120*84 + 84*10
    "lenet5": 117600 + 240000 + 48000 + 10080 + 840,
    # 3x3 convs at 32x32 (3->64, 64->64), 16x16 (64->128, 128->128), 8x8 (128->256, 256->256),
    # fc 4096*256 + 256*10
    "vgg-small": (64 * 1024 * 3 * 9 + 64 * 1024 * 64 * 9 + 128 * 256 * 64 * 9
                  + 128 * 256 * 128 * 9 + 256 * 64 * 128 * 9 + 256 * 64 * 256 * 9
                  + 4096 * 256 + 2560),
    # stem 16*1024*3*9; stage 1: 6 convs 16*1024*16*9; stage 2: 32*256*16*9 (stride 2) +
    # 5 * 32*256*32*9 + 1x1 shortcut 32*256*16; stage 3: 64*64*32*9 + 5 * 64*64*64*9 +
    # 64*64*32; fc 64*10  (about 41 M, the usual ResNet-20 figure)
    "resnet20": (16 * 1024 * 3 * 9 + 6 * 16 * 1024 * 16 * 9
                 + 32 * 256 * 16 * 9 + 5 * 32 * 256 * 32 * 9 + 32 * 256 * 16
                 + 64 * 64 * 32 * 9 + 5 * 64 * 64 * 64 * 9 + 64 * 64 * 32 + 640),
}


def conv(layers, name, c, h, w, out, k, stride=1, pad=0):
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    layers.append((name, out * ho * wo * c * k * k))
    return out, ho, wo


def linear(layers, name, n_in, out):
    layers.append((name, n_in * out))
    return out


def zoo_layers(model, n_classes=10):
    """(name, forward MACs per image) of each conv/linear, in zoo.c's order."""
    L = []
    if model == "mlp":
        n = linear(L, "fc1", 784, 256)
        n = linear(L, "fc2", n, 256)
        linear(L, "fc3", n, n_classes)
    elif model == "lenet5":                       # 28x28: pad 2 on conv1
        c, h, w = conv(L, "conv1", 1, 28, 28, 6, 5, pad=2)
        h, w = h // 2, w // 2
        c, h, w = conv(L, "conv2", c, h, w, 16, 5)
        h, w = h // 2, w // 2
        n = linear(L, "fc1", c * h * w, 120)
        n = linear(L, "fc2", n, 84)
        linear(L, "fc3", n, n_classes)
    elif model == "vgg-small":
        c, h, w = 3, 32, 32
        for s, ch in enumerate((64, 128, 256), 1):
            for j in (1, 2):
                c, h, w = conv(L, "conv%d_%d" % (s, j), c, h, w, ch, 3, pad=1)
            h, w = h // 2, w // 2
        n = linear(L, "fc1", c * h * w, 256)
        linear(L, "fc2", n, n_classes)
    elif model == "resnet20":
        c, h, w = conv(L, "stem.conv", 3, 32, 32, 16, 3, pad=1)
        for s in (1, 2, 3):
            ch = 16 << (s - 1)
            for k in (1, 2, 3):
                stride = 2 if s > 1 and k == 1 else 1
                cid = "s%db%d" % (s, k)
                c1, h1, w1 = conv(L, cid + ".conv1", c, h, w, ch, 3, stride, 1)
                conv(L, cid + ".conv2", c1, h1, w1, ch, 3, 1, 1)
                if stride != 1 or ch != c:
                    conv(L, cid + ".down", c, h, w, ch, 1, stride, 0)
                c, h, w = c1, h1, w1
        linear(L, "fc", c, n_classes)              # after global average pooling
    else:
        raise ValueError("unknown model %s" % model)
    return L


def train_flops(model):
    return 6 * sum(m for _, m in zoo_layers(model))


def main():
    models = ("mlp", "lenet5", "vgg-small", "resnet20")
    args = sys.argv[1:]
    if "--json" in args:
        print(json.dumps({m: {"macs": sum(x for _, x in zoo_layers(m)),
                              "train_flops": train_flops(m)} for m in models}))
        return 0
    if "--check" in args:
        bad = 0
        here = os.path.dirname(os.path.abspath(__file__))
        for m in models:
            macs = sum(x for _, x in zoo_layers(m))
            line = "%-10s geometry %11d  hand %11d" % (m, macs, HAND[m])
            bad += macs != HAND[m]
            try:
                r = subprocess.run([sys.executable, os.path.join(here, "torch_models.py"),
                                    "--model", m, "--count-macs"], capture_output=True,
                                   text=True, check=True)
                t = json.loads(r.stdout.strip().splitlines()[-1])["macs"]
                line += "  torch hooks %11d" % t
                bad += t != macs
            except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
                line += "  torch hooks: not run (no PyTorch?)"
            print(line + ("  ok" if macs == HAND[m] else "  MISMATCH"))
        return 1 if bad else 0
    print("| model | layer | forward MACs / image |\n|---|---|---:|")
    for m in models:
        for name, x in zoo_layers(m):
            print("| %s | %s | %d |" % (m, name, x))
        tot = sum(x for _, x in zoo_layers(m))
        print("| **%s** | total (training FLOPs = 6 x MACs = %.4g M) | **%d** |"
              % (m, 6 * tot / 1e6, tot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
