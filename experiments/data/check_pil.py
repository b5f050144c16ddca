#!/usr/bin/env python3
"""check_pil.py: compares the pixels lowbit decoded into a .lbds cache with PIL's decoding of
the same image folder (what a PyTorch ImageFolder with the default loader would see).

    /usr/bin/python3 experiments/data/check_pil.py ~/.cache/lowbit/cifar10-test.lbds \
        ~/.cache/lowbit/cifar10-jpeg/test

Reads the .lbds layout of datasets/cache.c (version 1), lists the folder in the same order
(classes, then files, sorted bytewise like strcmp; .png/.jpg/.jpeg only), converts each image
with PIL's convert("RGB") (or "L" for one channel) and counts the images whose pixels or label
differ. Needs Python's PIL (Debian: python3-pil); does not need lowbit.
"""
import os
import struct
import sys

from PIL import Image


def read_lbds(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:4] == b"LBDS" and struct.unpack_from("<I", b, 4)[0] == 1, "not an .lbds v1 file"
    n, c, h, w, k = struct.unpack_from("<QIIII", b, 8)
    slen = struct.unpack_from("<I", b, 68)[0]
    pos = 72 + slen
    names = []
    for _ in range(k):
        ln = struct.unpack_from("<H", b, pos)[0]
        names.append(b[pos + 2:pos + 2 + ln].decode())
        pos += 2 + ln
    pix = b[pos:pos + n * c * h * w]
    labels = struct.unpack_from("<%dI" % n, b, pos + n * c * h * w)
    return n, c, h, w, names, pix, labels


def main():
    cache, root = sys.argv[1], sys.argv[2]
    n, c, h, w, names, pix, labels = read_lbds(cache)
    classes = sorted(d for d in os.listdir(root) if not d.startswith(".")
                     and os.path.isdir(os.path.join(root, d)))
    assert classes == names, (classes, names)
    files = []
    for label, cl in enumerate(classes):
        for fn in sorted(os.listdir(os.path.join(root, cl))):
            if not fn.startswith(".") and fn.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg"):
                files.append((os.path.join(root, cl, fn), label))
    assert len(files) == n, (len(files), n)
    chw, bad, maxdiff = c * h * w, 0, 0
    for i, (path, label) in enumerate(files):
        im = Image.open(path).convert("RGB" if c == 3 else "L")
        data = im.tobytes()  # interleaved (h, w, c)
        planar = bytes(data[k * c + ch] for ch in range(c) for k in range(h * w))
        mine = pix[i * chw:(i + 1) * chw]
        if planar != mine or labels[i] != label:
            bad += 1
            maxdiff = max(maxdiff, max(abs(x - y) for x, y in zip(planar, mine)))
    print("%s: %d images, %d differ from PIL (largest pixel difference %d), PIL %s"
          % (cache, n, bad, maxdiff, Image.__version__))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
