#!/usr/bin/env bash
# setup.sh: installs lowbit's build and test dependencies from Debian's packages (Debian 12).
# Does nothing when they are already installed. Needs root or sudo for apt-get.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libopenblas-dev libpng-dev zlib1g-dev check
      dataset-fashion-mnist)

# 32-bit C library for the runtime's -m32 portability test (amd64 hosts)
[ "$(dpkg --print-architecture)" = amd64 ] && pkgs+=(gcc-multilib)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
