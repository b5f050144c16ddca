#!/usr/bin/env bash
# run.sh: the main job on a fresh machine: install dependencies, build, and train LeNet-5 on
# MNIST (Fashion-MNIST from Debian's package when MNIST is not found), printing the result.
# Extra arguments are passed to `lowbit train`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh"
cd "$root"
exec "$root/build/lowbit" train "$@"
