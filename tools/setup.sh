#!/usr/bin/env bash
# setup.sh: installs lowbit's build and test dependencies (Debian 12): Debian's packages, and
# ONNX Runtime for the ONNX export test (npm onnxruntime-node, at the version pinned by
# tests/onnx/package-lock.json, into tests/onnx/node_modules). Does nothing when everything is
# already installed. Needs root or sudo for apt-get, and the npm registry for the first run.
# Optional group: the Arm cross compiler, newlib and QEMU for the Cortex-M4 check (runtime/mcu,
# tests/test_mcu.c; about 100 MB to download). LB_NO_MCU=1 skips it; when it cannot be
# installed, setup warns and that test is left out of the build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# protobuf-c and libonnx-dev: the ONNX exporter's messages are generated at build time by
# protoc-c from Debian's onnx.proto (runtime/export/CMakeLists.txt).
# libjpeg-dev and libarchive-dev: JPEG image folders (CIFAR-10) and the dataset archives.
# clang and libclang-rt-dev (libFuzzer and the sanitizer runtimes): tools/fuzz.sh, which CI
# runs, fuzzes every parser.
# gnuplot-nox and fonts-dejavu-core: the PNG charts of sensitivity, mixed and ablate
# (pngcairo terminal; cli/plot.c).
pkgs=(build-essential cmake pkg-config libopenblas-dev libpng-dev zlib1g-dev check
      libjpeg-dev libarchive-dev
      dataset-fashion-mnist libprotobuf-c-dev protobuf-c-compiler libonnx-dev
      clang libclang-rt-dev gnuplot-nox fonts-dejavu-core)

# 32-bit C library for the runtime's -m32 portability test (amd64 hosts)
[ "$(dpkg --print-architecture)" = amd64 ] && pkgs+=(gcc-multilib)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run ONNX Runtime in tests/onnx; any installed node will do (Debian's
# nodejs and npm when there is none).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
mcu_missing=()
if [ -z "${LB_NO_MCU:-}" ]; then
    for p in gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || mcu_missing+=("$p")
    done
fi
if [ ${#missing[@]} -gt 0 ] || [ ${#mcu_missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to apt-get install ${missing[*]} ${mcu_missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    if [ ${#mcu_missing[@]} -gt 0 ]; then
        echo "setup: installing ${mcu_missing[*]} (optional: the Cortex-M4 check)"
        $SUDO apt-get install -y -qq --no-install-recommends "${mcu_missing[@]}" ||
            echo "setup: warning: could not install ${mcu_missing[*]}; the Cortex-M4 test is skipped" >&2
    fi
fi

# onnxruntime-node ships its CPU binaries in the npm package; ONNXRUNTIME_NODE_INSTALL=skip
# stops its install script from downloading anything else (the CUDA provider).
ort_dir="$root/tests/onnx"
want=$(sed -n 's/.*"onnxruntime-node": "\([0-9.]*\)".*/\1/p' "$ort_dir/package.json")
have=$(sed -n 's/^  "version": "\([0-9.]*\)".*/\1/p' \
       "$ort_dir/node_modules/onnxruntime-node/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    echo "setup: npm ci --prefix tests/onnx (onnxruntime-node $want)"
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix "$ort_dir" --no-audit --no-fund --loglevel=error
fi
