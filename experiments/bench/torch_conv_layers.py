#!/usr/bin/python3
"""torch_conv_layers.py: PyTorch's convolution on the layer shapes of conv_layers.c.

Same shapes, batch and measure as build/bench_conv (forward; backward = dW and dx, no dx for
the image input; best of REPS after a warm-up; one thread timed in process CPU time). Run
with OPENBLAS_NUM_THREADS=1 (PyTorch's own threads and OpenBLAS's otherwise fight, see
issue 6). Usage: torch_conv_layers.py [B [THREADS [REPS]]]; needs python3-torch.
"""
import sys
import time

import torch

LAYERS = [
    ("resnet20 conv0   3->16 32x32", 3, 32, 16, 3, 1, 1),
    ("resnet20 s1     16->16 32x32", 16, 32, 16, 3, 1, 1),
    ("resnet20 s2 in  16->32 /2   ", 16, 32, 32, 3, 2, 1),
    ("resnet20 s2     32->32 16x16", 32, 16, 32, 3, 1, 1),
    ("resnet20 s3     64->64 8x8  ", 64, 8, 64, 3, 1, 1),
    ("vgg-small      64->64 32x32", 64, 32, 64, 3, 1, 1),
    ("vgg-small   128->128 16x16  ", 128, 16, 128, 3, 1, 1),
    ("vgg-small   256->256 8x8    ", 256, 8, 256, 3, 1, 1),
    ("lenet5 conv1     1->6 28x28 ", 1, 28, 6, 5, 1, 2),
    ("lenet5 conv2    6->16 14x14 ", 6, 14, 16, 5, 1, 0),
]


def main():
    B = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    torch.set_num_threads(threads)
    clock = time.process_time if threads == 1 else time.perf_counter
    torch.manual_seed(1)
    print(f"batch {B}, {threads} thread(s), best of {reps}, "
          f"{'CPU' if threads == 1 else 'wall-clock'} time, torch {torch.__version__}")
    print(f"{'layer':<30} {'fwd ms':>10} {'fwd GF/s':>10} {'bwd ms':>10} {'bwd GF/s':>10}")
    for name, C, H, O, k, s, p in LAYERS:
        Ho = (H + 2 * p - k) // s + 1
        macs = B * O * Ho * Ho * C * k * k
        conv = torch.nn.Conv2d(C, O, k, s, p, bias=False)
        bf = bb = float("inf")
        for r in range(reps + 1):
            x = torch.randn(B, C, H, H, requires_grad=C > 3)
            t0 = clock()
            y = conv(x)
            t1 = clock()
            loss = y.sum()
            t2 = clock()
            loss.backward()
            t3 = clock()
            if r > 0:
                bf, bb = min(bf, t1 - t0), min(bb, t3 - t2)
        bw = 2.0 if C > 3 else 1.0
        print(f"{name:<30} {bf * 1e3:10.2f} {2 * macs / bf / 1e9:10.1f} {bb * 1e3:10.2f} "
              f"{bw * 2 * macs / bb / 1e9:10.1f}")


if __name__ == "__main__":
    main()
