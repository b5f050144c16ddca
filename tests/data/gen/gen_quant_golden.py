#!/usr/bin/python3
"""gen_quant_golden.py: PyTorch reference outputs of fake quantization for tests/test_quant_ops.c.

Runs torch.fake_quantize_per_tensor_affine and torch.fake_quantize_per_channel_affine (axis 0)
on a few small float32 tensors and writes inputs and outputs to tests/data/fake_quant_golden.txt.
A per-group case (x of shape (N, K), groups of G | K) is per-channel quantization of x reshaped
to (N * K / G, G), which is how lowbit's LB_QG_GROUP layout lays out its scales.

The C op divides x / s while PyTorch's CPU kernel multiplies by a float 1 / s; the two can round
differently exactly at ties when s is not a power of two. The script asserts that no element of
these cases is affected, so the C test can demand a bit-exact match.

Line format (one case per line, float32 values as %.9g):
  name layout qmin qmax n_dims d0 .. n_scales scale.. zero.. x.. y..
  layout: tensor | channel | group:G

Needs PyTorch 1.13 (Debian: /usr/bin/python3 with python3-torch). Not run by the build:
run it by hand from the repository root and commit its output.
    /usr/bin/python3 tests/data/gen/gen_quant_golden.py
"""
import os
import sys

import numpy as np
import torch


def f32(v):
    return float(np.float32(v))


def cases():
    g = torch.Generator().manual_seed(20240611)
    randn = lambda *shape, k=1.0: (torch.randn(*shape, generator=g) * k).float()
    # name, layout, qmin, qmax, x, scales, zeros
    yield ("tensor_u4_asym", "tensor", 0, 15, randn(4, 8, k=1.5), [f32(0.1)], [7])
    yield ("tensor_s8", "tensor", -128, 127, randn(32), [f32(0.0123)], [0])
    ties = torch.tensor([0.25 * (k + 0.5) for k in range(-10, 10)], dtype=torch.float32)
    yield ("tensor_s4_ties", "tensor", -8, 7, ties, [0.25], [0])
    yield ("channel_s4", "channel", -8, 7, randn(3, 2, 5),
           [f32(0.05), f32(0.2), f32(0.3)], [0, 2, -1])
    yield ("channel_u8", "channel", 0, 255, randn(4, 6, k=3.0),
           [f32(0.01), f32(0.03), f32(0.02), f32(0.05)], [128, 100, 0, 255])
    yield ("channel_s2", "channel", -2, 1, randn(2, 8), [f32(0.5), f32(0.35)], [0, 0])
    yield ("group4_s4", "group:4", -8, 7, randn(2, 12),
           [f32(0.1 * (k + 1)) for k in range(6)], [0, 1, -1, 0, 2, -2])


def quantize(layout, qmin, qmax, x, scales, zeros):
    if layout == "tensor":
        return torch.fake_quantize_per_tensor_affine(x, scales[0], zeros[0], qmin, qmax)
    s = torch.tensor(scales, dtype=torch.float32)
    z = torch.tensor(zeros, dtype=torch.int32)
    if layout == "channel":
        return torch.fake_quantize_per_channel_affine(x, s, z, 0, qmin, qmax)
    G = int(layout.split(":")[1])
    rows = x.reshape(-1, G)  # (N * K / G, G): one row per group
    return torch.fake_quantize_per_channel_affine(rows, s, z, 0, qmin, qmax).reshape(x.shape)


def check_division_agrees(name, layout, x, scales):
    """True division (lowbit) and multiplication by 1/s (PyTorch) must round alike."""
    n = len(scales)
    xs = x.numpy().reshape(n, -1) if layout != "tensor" else x.numpy().reshape(1, -1)
    for r in range(n):
        s = np.float32(scales[r])
        div = np.rint(xs[r] / s)
        mul = np.rint(xs[r] * (np.float32(1.0) / s))
        assert (div == mul).all(), "%s: x/s and x*(1/s) round differently; change the seed" % name


def fmt(vals):
    return " ".join("%.9g" % v for v in vals)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    path = os.path.join(root, "fake_quant_golden.txt")
    lines = [
        "# lowbit fake-quant golden v1: written by tests/data/gen/gen_quant_golden.py",
        "# torch %s; torch.fake_quantize_per_{tensor,channel}_affine, axis 0" % torch.__version__,
        "# name layout qmin qmax n_dims dims.. n_scales scales.. zeros.. x.. y..",
    ]
    for name, layout, qmin, qmax, x, scales, zeros in cases():
        check_division_agrees(name, layout, x, scales)
        y = quantize(layout, qmin, qmax, x, scales, zeros)
        fields = [name, layout, str(qmin), str(qmax), str(x.dim())]
        fields += [str(d) for d in x.shape]
        fields += [str(len(scales)), fmt(scales), fmt(zeros), fmt(x.flatten().tolist()),
                   fmt(y.flatten().tolist())]
        lines.append(" ".join(fields))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.normpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
