#!/usr/bin/env python3
"""fp32_weights.py CKPT OUT.c: the float weights of a LeNet-5 checkpoint (lowbit train --model
lenet5, FP32) as C arrays for runtime/mcu/lenet5_f32.c, the float reference of the Cortex-M4
benchmark. Reads the checkpoint layout of train/checkpoint.h (version 1) and checks its CRC;
refuses a checkpoint of another architecture or with quantizers."""
import re
import struct
import sys
import zlib

NORM = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
SHAPES = {
    "conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
    "fc1.weight": (120, 400), "fc1.bias": (120,),
    "fc2.weight": (84, 120), "fc2.bias": (84,),
    "fc3.weight": (10, 84), "fc3.bias": (10,),
}


def fail(msg):
    sys.exit(f"fp32_weights.py: {msg}")


def main():
    if len(sys.argv) != 3:
        fail("usage: fp32_weights.py CKPT OUT.c")
    data = open(sys.argv[1], "rb").read()
    if len(data) < 12 or data[:4] != b"LBCK":
        fail(f"{sys.argv[1]}: not a lowbit checkpoint")
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        fail(f"{sys.argv[1]}: CRC mismatch")
    pos = 4
    def u32():
        nonlocal pos
        v = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        return v
    def text():
        nonlocal pos
        n = u32()
        s = data[pos:pos + n].decode()
        pos += n
        return s
    if u32() != 1:
        fail("checkpoint version is not 1")
    spec, meta, qcfg = text(), text(), text()
    if "input 1 28 28" not in spec or "conv name=conv1 out=6 k=5 pad=2" not in spec:
        fail("not a LeNet-5 on 1x28x28 inputs (lowbit train --model lenet5)")
    if re.search(r"\bw=[1-9]|bits", qcfg):
        fail("the checkpoint has quantizers: use the FP32 checkpoint")
    dataset = dict(l.split("=", 1) for l in meta.splitlines() if "=" in l).get("dataset", "mnist")
    if dataset not in NORM:
        fail(f"unknown dataset {dataset}")
    tensors = []
    for _ in range(u32()):
        nl = struct.unpack_from("<H", data, pos)[0]
        pos += 2
        name = data[pos:pos + nl].decode()
        pos += nl
        u32()  # flags
        nd = u32()
        shape = struct.unpack_from(f"<{nd}q", data, pos)
        pos += 8 * nd
        tensors.append((name, shape))
    pos += 1  # has_moments
    values = {}
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        values[name] = (shape, struct.unpack_from(f"<{n}f", data, pos))
        pos += 4 * n
    mean, std = NORM[dataset]
    with open(sys.argv[2], "w") as out:
        out.write(f"/* {sys.argv[2].split('/')[-1]}: float LeNet-5 weights for runtime/mcu/lenet5_f32.c, "
                  f"from {sys.argv[1].split('/')[-1]}\n * by experiments/mcu/fp32_weights.py; "
                  f"dataset {dataset}. Exact float values (hex literals). */\n")
        out.write(f"const float lenet5_mean = {mean}f, lenet5_std = {std}f;\n")
        total = 0
        for name, want in SHAPES.items():
            if name not in values or tuple(values[name][0]) != want:
                fail(f"{name}: missing or not of shape {want}")
            vals = values[name][1]
            total += len(vals)
            cname = "lenet5_" + name.replace(".weight", "_w").replace(".bias", "_b")
            out.write(f"const float {cname}[{len(vals)}] = {{\n")
            for k in range(0, len(vals), 6):
                out.write("    " + ", ".join(f"{float(v).hex()}f" for v in vals[k:k + 6]) + ",\n")
            out.write("};\n")
        out.write(f"const unsigned lenet5_n_params = {total};\n")


if __name__ == "__main__":
    main()
